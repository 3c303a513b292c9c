//! The shared test kit of billbox's integration tests and benches: the real
//! binary as a child process, real billing servers and clients on
//! 127.0.0.1, real ptys and TCP PBXes, and the helpers that read back what
//! billbox left. No mocks: every socket, pty and process is real.
//!
//! Layout:
//! - [`billbox`](mod@billbox): [`Billbox`], a running `billbox run` child
//!   (start, JSON logs, `wait_log`, listen and metrics addresses, `kill9`,
//!   `terminate`, sending to a port as its PBX, its RSS and CPU), [`bin`],
//!   the binary cargo built, and [`assert_exit`] for one-shot commands.
//! - [`site`]: [`Site`], a test's temporary directory with `data/`,
//!   `spool/` and a config, the files billbox closed there and `billbox
//!   inspect`; [`files`].
//! - [`records`]: [`split_records`], [`assert_exactly_once`], and the
//!   padded numbered records of the benches.
//! - [`metrics`]: [`metric`] (one Prometheus sample) and [`sum_metric`].
//! - [`http`]: the one HTTP/1.1 client ([`http_get`], [`http_request`],
//!   keep-alive [`http::Connection`], [`http::https_request`] over rustls),
//!   built on `billbox-sim`'s, which the demo uses.
//! - [`server`]: the HTTP/1.1 server under the billing servers (keep-alive,
//!   `TCP_NODELAY`, a handler per request that answers or fails).
//! - [`billing`]: [`billing::BillingServer`], a billing server in a
//!   [`billing::Mode`] (ack, HTTP status, error ack, garbage, empty, hang,
//!   reset, one byte a second, delay, any body, huge), that can go down and
//!   come back, logging what it got in a shared [`billing::Log`].
//! - [`receiver`]: [`receiver::Receiver`], the reference receiver
//!   (`billbox receive`) as a child process.
//! - [`pbx`]: the PBX simulators of `billbox-sim`: [`pbx::PtyPbx`],
//!   [`pbx::TcpPbx`], [`pbx::ListeningPbx`], record formats and `feed`.
//! - [`disk`]: [`disk::Disk`], faultfs (a disk that loses what was not
//!   synced at a power cut) under a site's `data` and `spool`.
//! - [`stream`]: the crash and power-cut harness: [`stream::Stream`], a
//!   steady numbered stream over a pty and TCP, [`stream::drain`] and
//!   [`stream::check_delivered`], the checks once billbox drained.
//! - Here: [`wait_until`] (every wait bounded in time), [`env_or`],
//!   [`free_addr`].
#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

pub mod billbox;
pub mod billing;
pub mod disk;
pub mod http;
pub mod metrics;
pub mod receiver;
pub mod records;
pub mod server;
pub mod site;
pub mod stream;

/// The PBX simulators (`billbox-sim`), shared with `billbox demo`.
pub mod pbx {
    pub use billbox_sim::smdr::{self, Format};
    pub use billbox_sim::tcp::{feed, Link, ListeningPbx, TcpPbx};
    pub use billbox_sim::PtyPbx;
}

pub use billbox::{assert_exit, bin, json_logs, log_matches, Billbox, Logs};
pub use http::{http_get, http_request};
pub use metrics::{metric, sum_metric};
pub use records::{assert_exactly_once, split_records};
pub use site::{files, Site};

/// Polls `f` every 20 ms until it returns something or `limit` passes.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A number from the environment (`BENCH_RECORDS=...`), else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// An address on 127.0.0.1 that was free a moment ago (the system picked
/// it for port 0), for a config that must name its port before the
/// listener starts, or keep it across restarts.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
}
