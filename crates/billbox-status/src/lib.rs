//! What billbox is doing now, for people: the status page at `/` and
//! `billbox status`.
//!
//! Layout:
//! - [`board`]: the process-wide [`Board`]. The event structs of
//!   `billbox-runtime` and `billbox-delivery` write to it where they log
//!   and count (a port's link came up, records were received, a file
//!   closed, a server failed or answered). Writing is a short lock or an
//!   atomic store; nothing on it reads the store.
//! - [`snapshot`]: the [`Snapshot`] the monitoring listener builds from the
//!   board, its once-a-second store sample and the alarms: what
//!   `/status.json` answers, what the HTML page and `billbox status` show.
//!   Plain data (serde), with the words for an alarm and the aligned table.
//!
//! Shared: the board is global, like the `metrics` recorder, because the
//! events that write it are global too. Nothing on it holds record
//! contents: counts, times, link states, file names and server URLs only
//! (URLs with credentials are refused by the config).
#![forbid(unsafe_code)]

pub mod board;
pub mod snapshot;

pub use board::{board, Board, Change, DestinationFacts, FileFacts, Link, PortFacts};
pub use snapshot::Snapshot;
