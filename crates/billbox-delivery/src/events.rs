//! Delivery events: each logs one structured line and counts itself.

use std::time::{Duration, Instant};

use metrics::counter;
use tracing::{debug, info, warn};

/// How often a continuing outage is logged again.
pub const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Records were acknowledged by a server.
pub struct Delivered<'a> {
    pub destination: &'a str,
    pub server: &'a str,
    pub port: &'a str,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl Delivered<'_> {
    pub fn emit(self) {
        debug!(
            destination = self.destination,
            server = self.server,
            port = self.port,
            record_seq = self.first_seq,
            last_seq = self.last_seq,
            "Records are acknowledged."
        );
        counter!(
            "billbox_delivered_records_total",
            "destination" => self.destination.to_owned(),
            "server" => self.server.to_owned(),
            "port" => self.port.to_owned()
        )
        .increment(self.last_seq + 1 - self.first_seq);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!("billbox_last_delivery_timestamp_seconds", "destination" => self.destination.to_owned())
            .set(now);
    }
}

/// Tracks one destination's failures so an outage is logged when it starts,
/// at a low rate while it lasts, and when it ends.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
    attempts: u64,
    last_log: Option<Instant>,
}

impl Outage {
    /// An attempt failed.
    pub fn failed(
        &mut self,
        destination: &str,
        server: &str,
        url: &str,
        error: &str,
        backlog: u64,
    ) {
        let now = Instant::now();
        self.attempts += 1;
        counter!("billbox_delivery_failures_total", "destination" => destination.to_owned(), "server" => server.to_owned())
            .increment(1);
        match self.since {
            None => {
                self.since = Some(now);
                self.last_log = Some(now);
                warn!(
                    destination,
                    server,
                    url,
                    error,
                    backlog,
                    "Delivery failed; the records stay stored and are retried by the retransmission method."
                );
            }
            Some(since) => {
                if self
                    .last_log
                    .is_none_or(|l| now.duration_since(l) >= OUTAGE_LOG_EVERY)
                {
                    self.last_log = Some(now);
                    warn!(
                        destination,
                        server,
                        url,
                        error,
                        backlog,
                        failed_attempts = self.attempts,
                        outage_seconds = now.duration_since(since).as_secs(),
                        "Delivery is still failing; records wait in the store."
                    );
                }
            }
        }
    }

    /// An attempt succeeded.
    pub fn succeeded(&mut self, destination: &str, server: &str) {
        if let Some(since) = self.since.take() {
            info!(
                destination,
                server,
                failed_attempts = self.attempts,
                outage_seconds = since.elapsed().as_secs(),
                "Delivery resumed."
            );
        }
        self.attempts = 0;
        self.last_log = None;
    }
}
