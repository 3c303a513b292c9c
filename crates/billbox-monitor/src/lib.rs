//! billbox's monitoring listener.
//!
//! Layout:
//! - [`health`]: the alarms, as plain types: a [`health::Tracker`] is fed a
//!   [`health::Sample`] of the store about once a second and says which
//!   alarms hold (a port quiet too long, delivery stalled, the store near
//!   capacity). No I/O, so unit tests drive it with made-up clocks.
//! - [`sample`]: reads a [`health::Sample`] from the store and sets the
//!   gauges that are computed rather than counted (backlogs, held records).
//! - [`status`]: builds the status [`billbox_status::Snapshot`] from the
//!   config, the status board, the last store sample and the alarms; and
//!   [`page`] renders it as the self-contained HTML status page.
//! - [`server`]: the HTTP listener: `/` (the status page), `/status.json`,
//!   `/metrics` (Prometheus text from the
//!   process-wide `metrics` recorder), `/healthz` (200, or 503 with the
//!   alarms as JSON), `/readyz` (200 once the store is open and the config
//!   loaded, 503 before and while stopping).
//!
//! The counters themselves (records per port, deliveries, rotations) are
//! counted where they happen, by the event structs of `billbox-runtime` and
//! `billbox-delivery`; this crate only installs the recorder and serves it.
#![forbid(unsafe_code)]

pub mod health;
pub mod page;
pub mod sample;
pub mod server;
pub mod status;

pub use server::{install_recorder, serve, Monitor, MonitorError};
