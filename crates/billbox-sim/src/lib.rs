//! Simulated PBXes: realistic billing records and the links that carry them.
//!
//! Layout:
//! - [`smdr`]: record generators for the formats in the field (Avaya IP Office
//!   CSV, Panasonic and NEC fixed width, Mitel, Oracle FIAS postings), each
//!   record unique by its call number so tests can find every one.
//! - [`pty`]: [`PtyPbx`], a real pseudo-terminal whose slave side billbox
//!   opens as a serial device while the simulator writes to the master side.
//!
//! Used by `billbox demo` (no hardware needed) and by the end-to-end tests.
#![forbid(unsafe_code)]

pub mod pty;
pub mod smdr;

pub use pty::PtyPbx;
