//! The actors of billbox and how they are wired together.
//!
//! Layout:
//! - [`messages`]: the typed messages the actors exchange.
//! - [`store_actor`]: [`StoreActor`], the one code that writes or flushes
//!   the sled store: record appends, transaction ids, acknowledgements
//!   (cursor moves), the rotators' file state, removals and drops all ride
//!   its group commit. It answers each append after the flush, then tells
//!   the rotators and cursor destinations ([`messages::Committed`]) and
//!   hands the fire-once mirrors their copies ([`messages::CopyBatch`]).
//! - [`reader`]: [`PortReader`], one per port: opens the serial device, listens
//!   for or connects to the PBX over TCP, frames the bytes into records and
//!   appends them to the store, reopening with backoff when the link goes
//!   away; the link and framer survive a restart of the actor.
//! - [`rotator_actor`]: [`RotatorActor`], one per port, on its own arbiter (it
//!   does blocking file I/O): a thin wrapper over [`billbox_spool::Rotator`],
//!   whose state changes go to the store actor ([`messages::FilesChanged`]).
//! - [`destination_actor`]: [`destination_actor::DestinationActor`] (the
//!   primary/secondary sender, a reliable carbon copy: a cursor delivery
//!   loop of `billbox-delivery`) and [`destination_actor::MirrorActor`] (a
//!   fire-once carbon copy with its own queue).
//! - [`capacity`]: the store's admission and removal rules as plain types:
//!   [`capacity::Capacity`] (`max_records`, `when_full`),
//!   [`capacity::DiskReserve`], [`capacity::Latch`] (report a condition once
//!   when it starts and ends), [`capacity::done_through`] and
//!   [`capacity::plan_drops`].
//! - [`diff`]: [`diff::ConfigDiff`], what a reload changes, computed from
//!   the running and the new config before anything is applied.
//! - [`backoff`]: the reopen/reconnect delay policy.
//! - [`events`]: one struct per notable event; each logs and counts together.
//! - [`submit_api`]: the `[transactions]` listener: the submit API
//!   (`POST /v1/transactions`, answered after the flush, idempotent by the
//!   submitter's id) and the AG relay (`ADD_REC` packets posted as to an
//!   AG's server). Thin handlers over `billbox-transactions` and a
//!   [`messages::Submit`] to the store actor.
//! - [`admin`]: the admin socket (`data_dir/admin.sock`, billbox's own
//!   user only): JSON-line requests from `billbox replay`, answered with the
//!   replay's range, progress and end.
//! - [`stats`]: in-process figures (record-to-flush latency) for benchmarks.
//! - [`service`]: [`start`] builds the whole pipeline from a config under
//!   supervisors and returns a [`Running`] handle that reloads and shuts it
//!   down, by messages ([`messages::Reconfigure`], [`messages::Stop`],
//!   [`messages::Drain`], [`messages::Flush`]).
//! - [`supervise`]: panics in actor work become restarts ([`supervise::guard`],
//!   [`supervise::Guarded`]), counted against a restart budget per actor
//!   ([`supervise::Restarts`]) that stops the process cleanly when spent.
//!
//! Supervision: every actor runs under an actix `Supervisor`, which restarts
//! it when it stops while its address is alive. A panic in an actor's work
//! is caught, and the actor stops so that it is restarted and rebuilds its
//! state from the store; streams and timers are attached in `started()`, so
//! a restart brings them back. An actor that restarts more than 5 times in
//! 60 s stops billbox (exit status 3).
#![forbid(unsafe_code)]

pub mod admin;
pub mod backoff;
pub mod capacity;
pub mod destination_actor;
pub mod diff;
pub mod events;
pub mod messages;
pub mod reader;
pub mod rotator_actor;
pub mod service;
pub mod stats;
pub mod store_actor;
pub mod submit_api;
pub mod supervise;

pub use reader::PortReader;
pub use rotator_actor::RotatorActor;
pub use service::{start, Running, StartError};
pub use store_actor::StoreActor;

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
