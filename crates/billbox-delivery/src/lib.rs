//! Forwarding records to billing servers.
//!
//! Layout:
//! - [`policy`]: [`Retransmission`], the fail-over (A-A-B-B) and round-robin
//!   (A-B-A-B) rules that pick the server for each attempt.
//! - [`http`]: [`http::Pipeline`], one pipelined HTTP/1.1 connection:
//!   requests written as they come, answers read in order and parsed
//!   strictly.
//! - [`endpoint`]: [`Endpoint`], one server reached by HTTP POST over
//!   pipelined keep-alive connections (one per lane); an attempt counts as delivered only on a 2xx
//!   answer whose ack says OK with error code 1 ([`billbox_wire::delivery_verdict`]).
//!   `https://` servers are reached with rustls, trusting the server's
//!   `ca_file` (or the built-in roots) and presenting its client
//!   certificate, if any; a certificate that does not verify is a failed
//!   attempt ([`PostError::Tls`]). With a `secret_key` every body is signed
//!   (`X-Billbox-Signature`, and the `SIGNATURE` of `ADD_REC` packets). The
//!   settings are the server's [`billbox_config::ServerSecurity`].
//! - [`tls`]: the rustls client configuration built from a server's TLS
//!   files ([`tls::client_config`]).
//! - [`acks`]: [`Ack`] and [`AckSink`]: a loop hands each acknowledgement
//!   to the store's one writer and waits until it is recorded.
//! - [`window`]: [`PortWindow`], one port's packets in flight: the cursor
//!   moves over the contiguous acknowledged prefix only.
//! - [`cursor`]: [`CursorDestination`], delivery from the store by a durable
//!   cursor, several packets in flight, in order per port, retried until
//!   acknowledged: the primary/secondary exchange and reliable carbon
//!   copies.
//! - [`mirror`]: [`MirrorDestination`], a fire-once carbon copy fed with each
//!   new record on arrival and never retransmitting (the AG's behaviour).
//! - [`feed`]: [`feed::TcpFeed`], a raw TCP feed: billing software
//!   connects in and reads the records' bytes as the PBX sent them, from a
//!   durable cursor per port; one client at a time.
//! - [`replay`]: a range of stored records sent again with their original
//!   ids ([`replay::resolve`], [`replay::Replay`]), from a cursor of its
//!   own so it resumes where it stopped.
//! - [`events`]: the log-and-count structs of delivery.
//!
//! The loops are plain async functions; the runtime wraps each in an actor.
#![forbid(unsafe_code)]

pub mod acks;
pub mod cursor;
pub mod endpoint;
pub mod events;
pub mod feed;
pub mod http;
pub mod mirror;
pub mod policy;
pub mod replay;
pub mod tls;
pub mod window;

pub use acks::{Ack, AckError, AckFuture, AckSink, DirectAcks};
pub use cursor::CursorDestination;
pub use endpoint::{Endpoint, PostError};
pub use mirror::MirrorDestination;
pub use policy::{Retransmission, Server};
pub use window::PortWindow;

use std::sync::Arc;

use billbox_record::Record;
use billbox_transactions::StreamKind;

/// The body of one POST of `records` (all of one stream of `kind`), into
/// `body` (cleared first, reused between calls): call records as `ADD_CDR`
/// (one) or `ADD_CDR_BATCH`, a transaction as its `ADD_REC` packet.
pub fn encode_packet(gateway: &Arc<str>, kind: StreamKind, records: &[Record], body: &mut Vec<u8>) {
    let scratch = body;
    scratch.clear();
    match (kind, records) {
        (StreamKind::Calls, [one]) => billbox_wire::encode_cdr(gateway, one, scratch),
        (StreamKind::Calls, _) => billbox_wire::encode_cdr_batch(gateway, records, scratch),
        (_, [one, ..]) => match billbox_transactions::packet(kind, one) {
            Ok(p) => scratch.extend_from_slice(&p),
            Err(e) => {
                // Only a damaged store gets here: the raw record is sent,
                // the server refuses it, and it stays stored (never given up).
                tracing::error!(port = %one.port, seq = one.seq, error = %e,
                    "A stored transaction cannot be made into a packet; it stays stored and is retried.");
                scratch.extend_from_slice(&one.bytes);
            }
        },
        (_, []) => {}
    }
}
