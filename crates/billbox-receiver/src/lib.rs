//! The reference billing server (`billbox receive`).
//!
//! Layout:
//! - [`ledger`]: [`Ledger`], which record ids a server has, per gateway and
//!   port: drops duplicates, finds gaps. Plain data, unit tested.
//! - [`server`]: the HTTP server: decodes each packet
//!   ([`billbox_wire::decode_packet`]), appends new records to
//!   `OUT/<gateway>/<port>.txt` (bytes exactly as billbox received them) and a
//!   line per record to `OUT/<gateway>/<port>.ids`, syncs, and only then
//!   acknowledges. At start it reads the `.ids` files back, so duplicates are
//!   dropped across its restarts too. [`serve_secure`] adds HTTPS
//!   ([`ReceiverTls`], optionally requiring client certificates) and
//!   signature checks ([`ReceiverSecurity::secret_key`]): a packet whose
//!   `X-Billbox-Signature` is missing or wrong is answered 403 with an
//!   ERROR ack ([`SIGNATURE_ERROR_CODE`]) and logged at WARN.
//! - [`transactions`]: the AG's `ADD_REC` transactions, filed per USG_ID and
//!   PROPERTY_ID as `OUT/transactions/<USG_ID>/<PROPERTY_ID>.txt` (one JSON
//!   line each, [`FiledTransaction`]) and `.packets` (the packets byte for
//!   byte, length-prefixed: [`read_packets`]). Duplicates are dropped by
//!   `REC_NUM` and gaps found with a [`Ledger`] of their own, rebuilt from
//!   the `.txt` files at start ([`Running::transaction_counts`],
//!   [`Running::transaction_gaps`]).
//!
//! `docs/wire-format.md` ("The reference receiver's files") documents the
//! layout of `OUT`.
#![forbid(unsafe_code)]

mod http;
pub mod ledger;
pub mod server;
pub mod transactions;

pub use ledger::{Accepted, Ledger};
pub use server::{
    held_ids, held_records, serve, serve_secure, tls_server_config, PortGaps, PropertyGaps,
    ReceiverOptions, ReceiverSecurity, ReceiverTls, Running, SIGNATURE_ERROR_CODE,
};
pub use transactions::{
    read_packets, read_transactions, transaction_files, FiledTransaction, TransactionFiles,
    TRANSACTIONS_DIR,
};
