//! Hotel PMS and credit card transactions, the AG 5500's own billing records.
//!
//! billbox takes transactions from a local submit API (a hotspot portal, POS
//! or PMS interface posts one as JSON) and as an AG relay (an AG posts its
//! `ADD_REC` packets to billbox). Either way a full card number is never
//! kept: it is masked before anything is written, and card security codes
//! are refused outright.
//!
//! Layout:
//! - [`card`]: card numbers under PCI DSS. [`mask_card`] turns a full card
//!   number (checked with [`luhn_ok`]) or an already masked one into a
//!   [`MaskedCard`], which shows at most the first 6 and last 4 digits;
//!   [`mask_card_numbers`] masks every card number found in arbitrary bytes
//!   (relayed packets, log text) in one linear pass. [`CardError`] never
//!   carries or prints the digits it was given.
//! - [`submission`]: the submit API's body. [`parse_submission`] checks a
//!   JSON object (refusing security codes, unknown and duplicate keys) into
//!   a [`Submission`], whose [`Submission::digest`] tells a retry of the same
//!   transaction from a different one under the same id. Every
//!   [`SubmitError`] is a short sentence naming its field, ready for an HTTP
//!   400 answer, and never echoes a value.
//! - [`stored`]: transactions as store records: the two streams
//!   ([`SUBMIT_STREAM`], [`RELAY_STREAM`]) and their [`StreamKind`], the
//!   [`StoredTransaction`] a submission is kept as, and how a record
//!   becomes its `ADD_REC` [`packet`] and its journal-file line
//!   ([`file_line`]).
//!
//! Everything here is plain data and functions: no I/O, no async, so unit
//! and property tests reach it directly.
#![forbid(unsafe_code)]

pub mod card;
pub mod stored;
pub mod submission;

pub use card::{luhn_ok, mask_card, mask_card_numbers, CardError, MaskedCard};
pub use stored::{
    file_line, packet, rec_num, StoredError, StoredTransaction, StreamKind, RELAY_STREAM,
    SUBMIT_STREAM,
};
pub use submission::{parse_submission, Submission, SubmitError};
