//! Simulated PBXes: realistic billing records and the links that carry them.
//!
//! Layout:
//! - [`smdr`]: record generators for the formats in the field (Avaya IP Office
//!   CSV, Panasonic and NEC fixed width, Mitel, Oracle FIAS postings), each
//!   record unique by its call number so tests can find every one.
//! - [`pty`]: [`PtyPbx`], a real pseudo-terminal whose slave side billbox
//!   opens as a serial device while the simulator writes to the master side.
//! - [`tcp`]: PBXes on TCP, [`TcpPbx`] (connects to billbox) and
//!   [`ListeningPbx`] (billbox connects to it), and [`tcp::feed`], which
//!   sends numbered records of a format on any [`Link`] at a steady pace.
//! - [`http`]: a small HTTP/1.1 client (one-shot and keep-alive), for what
//!   a hotel portal or an AG says to billbox and what a probe asks of it.
//!
//! Used by `billbox demo` (no hardware needed) and, through
//! `billbox-testkit`, by the end-to-end tests and benches.
#![forbid(unsafe_code)]

pub mod http;
pub mod pty;
pub mod smdr;
pub mod tcp;

pub use pty::PtyPbx;
pub use tcp::{Link, ListeningPbx, TcpPbx};
