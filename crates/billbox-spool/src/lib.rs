//! ACS-compatible billing files, one series per port, written from the store.
//!
//! Layout:
//! - [`naming`]: file names `cycXXXXX-YYMMDD.hhmmss.tmp` / `.txt` and the
//!   suffix used when two files of one prefix open in the same second.
//! - [`state`]: the rotator's durable state (kept in the store's metadata):
//!   the last sequence in a closed file, and the file being written.
//! - [`rotator`]: [`Rotator`], the rules: open a `.tmp` at a port's first
//!   record, append each record's bytes exactly as received, close it at
//!   `billing_records` records or when `billing_timeout` has passed since its
//!   first record arrived (fsync, rename to `.txt`, fsync the directory), and
//!   after a crash complete a leftover `.tmp` from the journal and close it.
//! - [`writer`]: [`StateWriter`], where the rotator's state changes go (the
//!   store actor in the daemon: the rotator never writes the store itself),
//!   and [`DirectState`] for a process that is the store's only writer.
//!
//! Every record lands in exactly one `.txt` file: the store's journal is the
//! source, the rotator's state says which records are in closed files, and a
//! file is marked closing (durably) before its rename, so a crash at any point
//! is resolved without loss or duplication. See the crate tests.
#![forbid(unsafe_code)]

pub mod naming;
pub mod rotator;
pub mod state;
pub mod writer;

pub use rotator::{ClosedFile, Rotator, RotatorSettings, SpoolError};
pub use writer::{DirectState, StateChange, StateError, StateWriter};
