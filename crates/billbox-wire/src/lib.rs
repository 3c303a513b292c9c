//! The XML wire format between billbox and billing servers, both ways.
//!
//! billbox POSTs packets (`Content-Type: text/xml; charset=utf-8`) and reads
//! the server's acknowledgement; billbox's reference receiver does the
//! opposite. `docs/wire-format.md` is the contract for server teams; the
//! tests check the encoders against its examples byte for byte.
//!
//! Layout:
//! - [`cdr`]: billbox's PBX record packets. [`encode_cdr`] (`ADD_CDR`, one
//!   [`Record`](billbox_record::Record)) and [`encode_cdr_batch`]
//!   (`ADD_CDR_BATCH`) append to a caller's buffer; [`data_encoding`] is the
//!   text-or-base64 rule for the record bytes; [`ReceivedCdr`] is a record
//!   as a receiver decodes it; [`format_received`] / [`parse_received`] are
//!   the `RECEIVED` time format.
//! - [`transaction`]: the AG 5500's `ADD_REC` packet for PMS and credit card
//!   records: [`Transaction`], [`Amount`], [`TransType`],
//!   [`encode_transaction`].
//! - [`packet`]: the receiver's side, [`decode_packet`] for any of the three
//!   packets into a [`Packet`], and [`decode_transaction`] for `ADD_REC` only.
//! - [`ack`]: the acknowledgement: [`parse_ack`] into an [`Ack`],
//!   [`delivery_verdict`] for one HTTP answer (delivered only on 2xx +
//!   `ACK_VALUE` OK + `ERROR_CODE` 1), and [`encode_ack`] for the receiver.
//! - [`signature`]: HMAC-SHA256 packet signatures (`docs/security.md`):
//!   [`signature_value`] for the [`SIGNATURE_HEADER`] of every POST,
//!   [`verify_signature`] for receivers, and [`sign_transaction_packet`] /
//!   [`verify_transaction_signature`] for the `SIGNATURE` element of `ADD_REC`.
//! - `xml` (private): escaping for the encoders, and the bounded pull parser
//!   over quick-xml that all decoders share; its [`XmlError`] is public.
//!
//! Encoders write XML by hand into a `Vec<u8>` (no allocation beyond the
//! buffer on the hot path). Decoders never panic, never recurse, limit body
//! size ([`MAX_ACK_BYTES`], [`MAX_PACKET_BYTES`]) and nesting ([`MAX_DEPTH`]),
//! refuse DTDs and never expand entities other than the predefined ones and
//! character references.
#![forbid(unsafe_code)]

pub mod ack;
pub mod cdr;
pub mod packet;
pub mod signature;
pub mod transaction;
mod xml;

pub use ack::{
    delivery_verdict, encode_ack, parse_ack, Ack, AckError, AckValue, Reason, Verdict,
    MAX_ACK_BYTES,
};
pub use cdr::{
    data_encoding, encode_cdr, encode_cdr_batch, format_received, parse_received, DataEncoding,
    ReceivedCdr, MAX_RECEIVED_US, MIN_RECEIVED_US,
};
pub use packet::{
    decode_packet, decode_packet_with_limit, decode_transaction, Packet, PacketError,
    MAX_PACKET_BYTES,
};
pub use signature::{
    hmac_sha256, is_transaction_packet, sign_transaction_packet, signature_value, verify_signature,
    verify_transaction_signature, SignatureError, SIGNATURE_HEADER, SIGNATURE_PREFIX,
};
pub use transaction::{encode_transaction, Amount, TransType, Transaction, TransactionError};
pub use xml::{XmlError, MAX_DEPTH};
