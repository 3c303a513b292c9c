//! Delivery from the store by a durable cursor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_record::Record;
use billbox_store::{Store, StoreError};
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::endpoint::Endpoint;
use crate::events::{Delivered, Outage};
use crate::policy::{Retransmission, Server};

/// How long an idle destination sleeps when nobody wakes it.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Delivers every stored record past its cursor, in order per port, until a
/// server acknowledges it; the cursor then moves past it.
///
/// Ports take turns one batch at a time, so a busy port does not starve a
/// quiet one. One POST is in flight at a time, which keeps the attempt order
/// exactly as the retransmission method says.
pub struct CursorDestination {
    /// The name in logs and metrics (`delivery`, `cc:audit`).
    pub name: Arc<str>,
    /// The store cursor this destination moves.
    pub cursor: String,
    pub gateway: Arc<str>,
    pub ports: Vec<Arc<str>>,
    /// The primary, then the secondary if any.
    pub endpoints: Vec<Endpoint>,
    pub policy: Retransmission,
    pub batch_max: usize,
    pub retry_delay: Duration,
    pub store: Store,
    /// Woken by the store actor when records are flushed.
    pub wake: Arc<Notify>,
}

enum Next {
    Batch(Arc<str>, Vec<Record>),
    Idle,
}

impl CursorDestination {
    /// Runs until `stop` turns true. An unanswered POST is abandoned then;
    /// its records stay stored and are sent again at the next start.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut turn = 0usize;
        let mut outage = Outage::default();
        let mut body = Vec::new();
        loop {
            if *stop.borrow() {
                return;
            }
            let next = match self.next_batch(&mut turn) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(destination = %self.name, error = %e, "Reading the store for delivery failed; retrying.");
                    Next::Idle
                }
            };
            let (port, records) = match next {
                Next::Idle => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_CHECK) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    continue;
                }
                Next::Batch(port, records) => (port, records),
            };
            let (first, last) = (records[0].seq, records[records.len() - 1].seq);
            body.clear();
            if records.len() == 1 {
                billbox_wire::encode_cdr(&self.gateway, &records[0], &mut body);
            } else {
                billbox_wire::encode_cdr_batch(&self.gateway, &records, &mut body);
            }
            let packet = Bytes::copy_from_slice(&body);
            loop {
                let now = Instant::now();
                let server = self.policy.target(now);
                let endpoint = match server {
                    Server::Secondary if self.endpoints.len() > 1 => &self.endpoints[1],
                    _ => &self.endpoints[0],
                };
                let result = tokio::select! {
                    r = endpoint.post(packet.clone()) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match result {
                    Ok(()) => {
                        self.policy.on_success();
                        outage.succeeded(&self.name, server.as_str());
                        if let Err(e) = self.store.advance_cursor(&port, &self.cursor, last) {
                            tracing::error!(destination = %self.name, port = %port, error = %e, "Recording a delivery failed; the records will be sent again.");
                        }
                        Delivered {
                            destination: &self.name,
                            server: server.as_str(),
                            port: &port,
                            first_seq: first,
                            last_seq: last,
                        }
                        .emit();
                        break;
                    }
                    Err(e) => {
                        self.policy.on_failure(Instant::now());
                        let backlog = self.store.backlog(&port, &self.cursor).unwrap_or(0);
                        outage.failed(
                            &self.name,
                            server.as_str(),
                            endpoint.url().as_str(),
                            &e.to_string(),
                            backlog,
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(self.retry_delay) => {}
                            _ = stop.wait_for(|s| *s) => return,
                        }
                        // The store may have given these records up meanwhile
                        // (when_full = drop_oldest): then move on.
                        if self.store.cursor(&port, &self.cursor).unwrap_or(0) >= last {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The next port's records past the cursor, up to `batch_max`.
    fn next_batch(&self, turn: &mut usize) -> Result<Next, StoreError> {
        let n = self.ports.len();
        for i in 0..n {
            let port = &self.ports[(*turn + i) % n];
            let cursor = self.store.cursor(port, &self.cursor)?;
            let durable = self.store.durable_seq(port);
            if durable <= cursor {
                continue;
            }
            let from = self
                .store
                .first_held(port)
                .map_or(cursor + 1, |held| held.max(cursor + 1));
            let to = durable.min(from + self.batch_max as u64 - 1);
            let records = self
                .store
                .records(port, from, to)
                .collect::<Result<Vec<_>, _>>()?;
            if records.is_empty() {
                continue;
            }
            *turn = (*turn + i + 1) % n;
            return Ok(Next::Batch(port.clone(), records));
        }
        Ok(Next::Idle)
    }
}
