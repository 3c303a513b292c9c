//! Billing records and how they are cut out of a byte stream.
//!
//! Layout:
//! - [`record`]: [`Record`] (the bytes of one billing record as received, with
//!   its [`RecordId`] and [`Epoch`], receive time and [`RecordFlags`]), and the compact binary
//!   encoding the store keeps on disk.
//! - [`framing`]: [`Framer`], which splits a stream of reads on a port's
//!   end-of-record string (`billing_eor`), keeps the terminator, and cuts
//!   over-long input at `max_record_bytes` into records flagged truncated.
//!
//! Everything here is plain data and functions: no I/O, no actors, so unit and
//! property tests reach it directly.
#![forbid(unsafe_code)]

pub mod framing;
pub mod record;

pub use framing::{Frame, Framer, FramerError, MAX_ROOM, MIN_ROOM};
pub use record::{DecodeError, Epoch, Record, RecordFlags, RecordId};
