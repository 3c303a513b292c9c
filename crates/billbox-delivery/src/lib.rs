//! Forwarding records to billing servers.
//!
//! Layout:
//! - [`policy`]: [`Retransmission`], the fail-over (A-A-B-B) and round-robin
//!   (A-B-A-B) rules that pick the server for each attempt.
//! - [`endpoint`]: [`Endpoint`], one server reached by HTTP POST over
//!   keep-alive connections; an attempt counts as delivered only on a 2xx
//!   answer whose ack says OK with error code 1 ([`billbox_wire::delivery_verdict`]).
//!   `https://` servers are reached with rustls, trusting the server's
//!   `ca_file` (or the built-in roots) and presenting its client
//!   certificate, if any; a certificate that does not verify is a failed
//!   attempt ([`PostError::Tls`]). With a `secret_key` every body is signed
//!   (`X-Billbox-Signature`, and the `SIGNATURE` of `ADD_REC` packets). The
//!   settings come with the server's [`billbox_config::ServerUrl`].
//! - [`cursor`]: [`CursorDestination`], delivery from the store by a durable
//!   cursor, in order per port, retried until acknowledged: the
//!   primary/secondary exchange and reliable carbon copies.
//! - [`mirror`]: [`MirrorDestination`], a fire-once carbon copy fed with each
//!   new record on arrival and never retransmitting (the AG's behaviour).
//! - [`events`]: the log-and-count structs of delivery.
//!
//! The loops are plain async functions; the runtime wraps each in an actor.
#![forbid(unsafe_code)]

pub mod cursor;
pub mod endpoint;
pub mod events;
pub mod mirror;
pub mod policy;

pub use cursor::CursorDestination;
pub use endpoint::{Endpoint, PostError};
pub use mirror::MirrorDestination;
pub use policy::{Retransmission, Server};
