//! Delivery events: each logs one structured line and counts itself.

use std::collections::HashMap;
use std::sync::Arc;
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
    /// Logs and counts (looking the counters up: see [`DeliveredTally`]
    /// for a destination that delivers many packets).
    pub fn emit(self) {
        let records = counter!(
            "billbox_delivered_records_total",
            "destination" => self.destination.to_owned(),
            "server" => self.server.to_owned(),
            "port" => self.port.to_owned()
        );
        let last = metrics::gauge!("billbox_last_delivery_timestamp_seconds", "destination" => self.destination.to_owned());
        let board = billbox_status::board().destination(self.destination);
        self.emit_to(&records, &last, &board);
    }

    fn emit_to(
        self,
        records: &metrics::Counter,
        last: &metrics::Gauge,
        board: &billbox_status::board::DestinationEntry,
    ) {
        debug!(
            destination = self.destination,
            server = self.server,
            port = self.port,
            record_seq = self.first_seq,
            last_seq = self.last_seq,
            "Records are acknowledged."
        );
        records.increment(self.last_seq + 1 - self.first_seq);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        last.set(now);
        board.acknowledged();
    }
}

/// One destination's [`Delivered`] counters, looked up once per server and
/// port (not once per packet).
pub struct DeliveredTally {
    destination: Arc<str>,
    /// By (the port's index in the destination, server).
    records: HashMap<(usize, &'static str), metrics::Counter>,
    last: metrics::Gauge,
    board: Arc<billbox_status::board::DestinationEntry>,
}

impl DeliveredTally {
    pub fn new(destination: &Arc<str>) -> DeliveredTally {
        DeliveredTally {
            destination: destination.clone(),
            records: HashMap::new(),
            last: metrics::gauge!("billbox_last_delivery_timestamp_seconds", "destination" => destination.to_string()),
            board: billbox_status::board().destination(destination),
        }
    }

    /// Logs and counts `d` (whose destination is this tally's); `key` is
    /// its port's index in the destination and its server.
    pub fn emit(&mut self, key: (usize, &'static str), d: Delivered<'_>) {
        let (destination, port) = (&self.destination, d.port);
        let records = self.records.entry(key).or_insert_with(|| {
            counter!(
                "billbox_delivered_records_total",
                "destination" => destination.to_string(),
                "server" => key.1,
                "port" => port.to_owned()
            )
        });
        d.emit_to(records, &self.last, &self.board);
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
        billbox_status::board()
            .destination(destination)
            .failed(error);
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
