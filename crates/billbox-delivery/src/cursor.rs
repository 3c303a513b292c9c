//! Delivery from the store by a durable cursor.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_record::Record;
use billbox_store::{Store, StoreError};
use billbox_transactions::StreamKind;
use tokio::sync::watch;

use crate::acks::{Ack, AckSink};
use crate::endpoint::Endpoint;
use crate::events::{Delivered, Outage};
use crate::policy::{AfterFailure, Retransmission, Server};

/// How long a POST in flight when billbox stops may still take: its answer
/// is waited for, then it is abandoned (its records stay stored).
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Delivers every stored record past its cursor, in order per port, until a
/// server acknowledges it; the cursor then moves past it.
///
/// Ports take turns one batch at a time, so a busy port does not starve a
/// quiet one. With `max_in_flight = 1` one POST is in flight at a time, which
/// keeps the attempt order exactly as the retransmission method says; more
/// lets that many ports post at once (each port still in order).
///
/// After a whole round of failed attempts the policy may suspend the task
/// (`delivery.suspend`): no worker attempts anything until a new record is
/// flushed to one of `ports` or the suspension interval has passed; then a
/// new round starts with the primary.
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
    /// Where acknowledgements are recorded (the store's one writer).
    pub acks: Rc<dyn AckSink>,
    /// News for the workers: bumped by the actor when the store says
    /// records were committed (its `Committed` message), and by the workers
    /// themselves after a delivery or a resumption (so news alone does not
    /// mean a new record). An idle worker waits for it; nothing polls.
    pub news: Arc<watch::Sender<u64>>,
    /// POSTs awaiting an answer at once, each for a different port (a port's
    /// records are always posted one batch at a time, in order).
    pub max_in_flight: usize,
}

/// What the workers of one destination share (they run on one thread).
struct Shared {
    policy: RefCell<Retransmission>,
    outage: RefCell<Outage>,
    /// Ports a worker is posting for right now.
    busy: RefCell<HashSet<Arc<str>>>,
    turn: Cell<usize>,
    /// While the task is suspended: what was flushed then, and until when.
    suspension: RefCell<Option<Suspension>>,
}

/// A suspension of the retransmission task.
#[derive(Debug, Clone, Copy)]
struct Suspension {
    /// The total flushed sequence of the destination's ports when it began:
    /// a record flushed since makes it greater.
    flushed: u64,
    /// When the suspension interval has passed.
    until: tokio::time::Instant,
}

/// Why a suspension ended.
enum Resumed {
    NewRecord,
    Interval,
}

impl CursorDestination {
    /// The primary/secondary exchange of a `[delivery]` section, moving the
    /// `delivery` cursor of `store`.
    pub fn primary_secondary(
        name: Arc<str>,
        d: &billbox_config::DeliveryConfig,
        gateway: Arc<str>,
        ports: Vec<Arc<str>>,
        store: Store,
        acks: Rc<dyn AckSink>,
        news: Arc<watch::Sender<u64>>,
    ) -> CursorDestination {
        let mut endpoints = vec![Endpoint::new(
            d.primary.clone(),
            &d.security,
            d.request_timeout,
        )];
        if let Some(s) = &d.secondary {
            endpoints.push(Endpoint::new(s.clone(), &d.security, d.request_timeout));
        }
        CursorDestination {
            name,
            cursor: billbox_store::DELIVERY_CURSOR.to_string(),
            gateway,
            ports,
            endpoints,
            policy: Retransmission::new(
                d.method,
                d.attempts,
                d.secondary.is_some(),
                d.failback_after,
                d.suspend,
                Instant::now(),
            ),
            batch_max: d.batch_max,
            retry_delay: d.retry_delay,
            store,
            acks,
            news,
            max_in_flight: d.max_in_flight,
        }
    }
}

enum Next {
    Batch(Arc<str>, Vec<Record>),
    Idle,
}

impl CursorDestination {
    /// Runs until `stop` turns true. An unanswered POST is abandoned then;
    /// its records stay stored and are sent again at the next start.
    pub async fn run(mut self, stop: watch::Receiver<bool>) {
        let policy = self.policy.clone();
        let shared = Shared {
            policy: RefCell::new(policy),
            outage: RefCell::new(Outage::default()),
            busy: RefCell::new(HashSet::new()),
            turn: Cell::new(0),
            suspension: RefCell::new(None),
        };
        self.max_in_flight = self.max_in_flight.clamp(1, self.ports.len().max(1));
        let me = &self;
        let workers = (0..self.max_in_flight).map(|_| me.worker(&shared, stop.clone()));
        futures_util::future::join_all(workers).await;
    }

    /// Tells every worker to look again.
    fn tell_workers(&self) {
        self.news.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn worker(&self, shared: &Shared, mut stop: watch::Receiver<bool>) {
        let mut body = Vec::new();
        let mut news = self.news.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            if self
                .wait_while_suspended(shared, &mut news, &mut stop)
                .await
            {
                return;
            }
            // What is stored now is looked at below: older news is stale.
            news.mark_unchanged();
            let next = match self.next_batch(shared) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(destination = %self.name, error = %e, "Reading the store for delivery failed; retrying.");
                    Next::Idle
                }
            };
            let (port, records) = match next {
                Next::Idle => {
                    tokio::select! {
                        _ = news.changed() => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    continue;
                }
                Next::Batch(port, records) => (port, records),
            };
            let stopped = self
                .deliver(shared, &port, &records, &mut body, &mut news, &mut stop)
                .await;
            shared.busy.borrow_mut().remove(&port);
            if stopped {
                return;
            }
            // Another worker may be idle while this port has more.
            self.tell_workers();
        }
    }

    /// Posts one batch until it is acknowledged (or given up by the store).
    /// Returns true when billbox is stopping.
    async fn deliver(
        &self,
        shared: &Shared,
        port: &Arc<str>,
        records: &[Record],
        body: &mut Vec<u8>,
        news: &mut watch::Receiver<u64>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let (first, last) = (records[0].seq, records[records.len() - 1].seq);
        let kind = StreamKind::of(port);
        let packet = crate::encode_packet(&self.gateway, kind, records, body);
        loop {
            if self.wait_while_suspended(shared, news, stop).await {
                return true;
            }
            let server = shared.policy.borrow_mut().target(Instant::now());
            let endpoint = match server {
                Server::Secondary if self.endpoints.len() > 1 => &self.endpoints[1],
                _ => &self.endpoints[0],
            };
            // Test builds: an injected panic, or an attempt that fails as
            // one without an answer would.
            let injected = billbox_failpoints::check_at("destination.post", &self.name);
            let post = async {
                if injected {
                    return Err(crate::PostError::Timeout(Duration::ZERO));
                }
                endpoint.post(packet.clone()).await
            };
            tokio::pin!(post);
            let mut stopping = false;
            let result = tokio::select! {
                r = &mut post => r,
                stop_seen = stop.wait_for(|s| *s) => {
                    // The watch's read lock must not be held while waiting:
                    // the stopping side sends on it again.
                    drop(stop_seen);
                    // Stopping: an answer may be on its way; wait for it a
                    // little, so acknowledged records are not sent again.
                    stopping = true;
                    match tokio::time::timeout(STOP_GRACE, &mut post).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::info!(destination = %self.name, port = %port, first_seq = first, last_seq = last,
                                "Stopping: an unanswered POST was abandoned; its records stay stored and are sent again.");
                            return true;
                        }
                    }
                }
            };
            match result {
                Ok(()) => {
                    shared.policy.borrow_mut().on_success();
                    shared
                        .outage
                        .borrow_mut()
                        .succeeded(&self.name, server.as_str());
                    let ack = Ack {
                        port: port.clone(),
                        cursor: Some(self.cursor.clone()),
                        first,
                        last,
                        note: kind
                            .is_transactions()
                            .then(|| (self.name.clone(), server.as_str())),
                    };
                    // The server has them: the acknowledgement is recorded
                    // (tried again while the store actor restarts) rather
                    // than the records sent again.
                    if let Err(e) = crate::acks::record_with_retries(&*self.acks, ack).await {
                        tracing::error!(destination = %self.name, port = %port, error = %e, "Recording a delivery failed; the records will be sent again.");
                    }
                    Delivered {
                        destination: &self.name,
                        server: server.as_str(),
                        port,
                        first_seq: first,
                        last_seq: last,
                    }
                    .emit();
                    return stopping;
                }
                Err(_) if stopping => return true,
                Err(e) => {
                    let after = shared.policy.borrow_mut().on_failure(Instant::now());
                    let backlog = self.store.backlog(port, &self.cursor).unwrap_or(0);
                    shared.outage.borrow_mut().failed(
                        &self.name,
                        server.as_str(),
                        endpoint.url().as_str(),
                        &e.to_string(),
                        backlog,
                    );
                    match after {
                        // The suspension takes the place of retry_delay;
                        // the next turn of this loop waits it out.
                        AfterFailure::Suspend => self.begin_suspension(shared, backlog),
                        AfterFailure::Retry => {
                            tokio::select! {
                                _ = tokio::time::sleep(self.retry_delay) => {}
                                _ = stop.wait_for(|s| *s) => return true,
                            }
                        }
                    }
                    // The store may have given these records up meanwhile
                    // (when_full = drop_oldest): then move on.
                    if self.store.cursor(port, &self.cursor).unwrap_or(0) >= last {
                        return false;
                    }
                }
            }
        }
    }

    /// The total flushed sequence of this destination's ports: it grows
    /// whenever a new record is flushed to one of them.
    fn flushed(&self) -> u64 {
        self.ports
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(self.store.durable_seq(p)))
    }

    /// A whole round failed: suspends the task (once, for every worker).
    fn begin_suspension(&self, shared: &Shared, backlog: u64) {
        if shared.suspension.borrow().is_some() {
            return;
        }
        let interval = shared.policy.borrow().suspend();
        let attempts = shared.policy.borrow().round();
        *shared.suspension.borrow_mut() = Some(Suspension {
            flushed: self.flushed(),
            until: tokio::time::Instant::now() + interval,
        });
        tracing::info!(destination = %self.name, failed_attempts = attempts, suspend_secs = interval.as_secs_f64(), backlog,
            "Delivery is suspended after a whole round of failed attempts; it resumes with a new record or after the suspend interval, from the primary. The records stay stored.");
    }

    /// Waits while the task is suspended: until a new record is flushed to
    /// one of the ports, the suspension interval has passed, or billbox
    /// stops (returns true then). Any wake is checked against the flushed
    /// sequence, since the workers' own wakes bring no new record.
    async fn wait_while_suspended(
        &self,
        shared: &Shared,
        news: &mut watch::Receiver<u64>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            let Some(s) = *shared.suspension.borrow() else {
                return false;
            };
            let why = if self.flushed() > s.flushed {
                Some(Resumed::NewRecord)
            } else if tokio::time::Instant::now() >= s.until {
                Some(Resumed::Interval)
            } else {
                None
            };
            if let Some(why) = why {
                *shared.suspension.borrow_mut() = None;
                shared.policy.borrow_mut().resume(Instant::now());
                // The other workers waiting out the suspension go on too.
                self.tell_workers();
                let (reason, message) = match why {
                    Resumed::NewRecord => (
                        "new_record",
                        "Delivery resumes after its suspension: a new record arrived; a new round starts with the primary.",
                    ),
                    Resumed::Interval => (
                        "interval",
                        "Delivery resumes after its suspension: the suspend interval has passed; a new round starts with the primary.",
                    ),
                };
                tracing::info!(destination = %self.name, reason, "{message}");
                return false;
            }
            tokio::select! {
                _ = news.changed() => {}
                _ = tokio::time::sleep_until(s.until) => {}
                _ = stop.wait_for(|s| *s) => return true,
            }
        }
    }

    /// The next port's records past the cursor, up to `batch_max`.
    fn next_batch(&self, shared: &Shared) -> Result<Next, StoreError> {
        let n = self.ports.len();
        let turn = shared.turn.get();
        for i in 0..n {
            let port = &self.ports[(turn + i) % n];
            if shared.busy.borrow().contains(port) {
                continue;
            }
            let cursor = self.store.cursor(port, &self.cursor)?;
            let durable = self.store.durable_seq(port);
            if durable <= cursor {
                continue;
            }
            let from = self
                .store
                .first_held(port)
                .map_or(cursor + 1, |held| held.max(cursor + 1));
            // An AG server takes one ADD_REC per POST.
            let batch_max = if StreamKind::of(port).is_transactions() {
                1
            } else {
                self.batch_max as u64
            };
            let to = durable.min(from + batch_max - 1);
            let records = self
                .store
                .records(port, from, to)
                .collect::<Result<Vec<_>, _>>()?;
            if records.is_empty() {
                continue;
            }
            shared.turn.set((turn + i + 1) % n);
            shared.busy.borrow_mut().insert(port.clone());
            return Ok(Next::Batch(port.clone(), records));
        }
        Ok(Next::Idle)
    }
}
