//! Delivery from the store by a durable cursor.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_store::{Store, StoreError};
use billbox_transactions::StreamKind;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::acks::{Ack, AckSink};
use crate::endpoint::Endpoint;
use crate::endpoint::PostError;
use crate::events::{Delivered, DeliveredTally, Outage};
use crate::policy::{AfterFailure, Retransmission, Server};
use crate::window::PortWindow;

/// How long a POST in flight when billbox stops may still take: its answer
/// is waited for, then it is abandoned (its records stay stored).
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Delivers every stored record past its cursor, in order per port, until a
/// server acknowledges it; the cursor then moves past it.
///
/// Packets go out several at once: each port posts on one of
/// `connections` keep-alive connections (port *i* on connection *i* mod
/// `connections`), and each connection carries up to `window` packets
/// awaiting their answer (HTTP/1.1 pipelining), so a port's records reach
/// the server in sequence order. Ports take turns one packet at a time, so
/// a busy port does not starve a quiet one. A port's cursor moves only over
/// its contiguous acknowledged prefix ([`PortWindow`]).
///
/// A failed packet is one failed attempt of the retransmission method:
/// no new packet goes out until every packet in flight has its answer (the
/// acknowledged ones are kept), then, after `retry_delay` (or a
/// suspension), packets go one at a time to the server the method names,
/// the first unacknowledged record first, until one is acknowledged: then
/// the window opens again. So while a server fails, the attempts follow
/// A-A-B-B (or A-B-A-B) exactly, one packet each, as with `window = 1`.
///
/// After a whole round of failed attempts the policy may suspend the task
/// (`delivery.suspend`): nothing is attempted until a new record is
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
    /// News for the loop: bumped by the actor when the store says records
    /// were committed (its `Committed` message). An idle loop waits for it;
    /// nothing polls.
    pub news: Arc<watch::Sender<u64>>,
    /// Packets awaiting an answer on one connection.
    pub window: usize,
    /// Connections to the server in use.
    pub connections: usize,
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
            window: d.window,
            connections: d.connections,
        }
    }
}

/// One packet awaiting its answer.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Index into the destination's ports.
    port: usize,
    first: u64,
    last: u64,
    server: Server,
    /// Index into the endpoints.
    endpoint: usize,
}

type Answered = Pin<Box<dyn Future<Output = (InFlight, Result<(), PostError>)>>>;

/// A port as the loop sees it.
struct PortState {
    name: Arc<str>,
    kind: StreamKind,
    /// The connection its packets go on.
    lane: usize,
    /// `None` until its cursor was read from the store.
    window: Option<PortWindow>,
}

/// How packets go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Up to `window` packets on each connection.
    Open,
    /// An attempt failed: nothing new goes out until every packet in
    /// flight is answered; then `after` is applied.
    Draining { after: AfterFailure },
    /// After a failure: one packet at a time until one is acknowledged.
    Probing,
}

/// Acknowledgements waiting to be recorded by the store's writer. The loop
/// records them as soon as the answers that are in are taken (before it
/// sends anything more), so a loop that fails later never sends an
/// acknowledged record again; cursor moves of a port that came together
/// fold into one.
struct AckQueue {
    sink: Rc<dyn AckSink>,
    cursor: String,
    names: Vec<Arc<str>>,
    destination: Arc<str>,
    /// Transactions' notes (one per record), in order.
    notes: Vec<Ack>,
    /// The newest cursor of each port not yet recorded.
    cursors: BTreeMap<usize, u64>,
}

impl AckQueue {
    /// Records what waits, each tried again while the store actor
    /// restarts: the server has the records, so recording beats sending
    /// them again.
    async fn record(&mut self) {
        let mut batch = std::mem::take(&mut self.notes);
        let cursors = std::mem::take(&mut self.cursors);
        batch.extend(cursors.into_iter().map(|(i, seq)| Ack {
            port: self.names[i].clone(),
            cursor: Some(self.cursor.clone()),
            first: seq,
            last: seq,
            note: None,
        }));
        for ack in batch {
            let port = ack.port.clone();
            if let Err(e) = crate::acks::record_with_retries(&*self.sink, ack).await {
                tracing::error!(destination = %self.destination, port = %port, error = %e,
                    "Recording a delivery failed; the records will be sent again.");
            }
        }
    }
}

/// What the loop holds while it runs.
struct Run {
    ports: Vec<PortState>,
    /// Packets in flight on each connection.
    load: Vec<usize>,
    flying: futures_util::stream::FuturesUnordered<Answered>,
    mode: Mode,
    outage: Outage,
    suspension: Option<Suspension>,
    acks: AckQueue,
    tally: DeliveredTally,
    /// The port whose turn it is to send next.
    turn: usize,
    /// The packet body, reused.
    body: Vec<u8>,
    policy: Retransmission,
    /// This destination on the status board.
    board: Arc<billbox_status::board::DestinationEntry>,
}

impl Drop for Run {
    /// However the loop ends (a panic too), nothing is in flight any more.
    fn drop(&mut self) {
        self.board.in_flight(0);
    }
}

impl CursorDestination {
    /// Runs until `stop` turns true. Answers to packets in flight then are
    /// waited for a little ([`STOP_GRACE`]); packets still unanswered are
    /// abandoned, their records stay stored and are sent again at the next
    /// start.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let connections = self.connections.clamp(1, self.ports.len().max(1));
        let ports = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, name)| PortState {
                name: name.clone(),
                kind: StreamKind::of(name),
                lane: i % connections,
                window: None,
            })
            .collect();
        let mut run = Run {
            ports,
            load: vec![0; connections],
            flying: Default::default(),
            mode: Mode::Open,
            outage: Outage::default(),
            suspension: None,
            acks: AckQueue {
                sink: self.acks.clone(),
                cursor: self.cursor.clone(),
                names: self.ports.clone(),
                destination: self.name.clone(),
                notes: Vec::new(),
                cursors: BTreeMap::new(),
            },
            tally: DeliveredTally::new(&self.name),
            turn: 0,
            body: Vec::new(),
            policy: self.policy.clone(),
            board: billbox_status::board().destination(&self.name),
        };
        let mut news = self.news.subscribe();
        loop {
            if *stop.borrow() {
                break;
            }
            if self
                .wait_while_suspended(&mut run, &mut news, &mut stop)
                .await
            {
                break;
            }
            // What is stored now is looked at below: older news is stale.
            news.mark_unchanged();
            self.fill(&mut run);
            if let Mode::Draining { after } = run.mode {
                if run.flying.is_empty() {
                    if self.after_failure(&mut run, after, &mut stop).await {
                        break;
                    }
                    continue;
                }
            }
            tokio::select! {
                Some((sent, result)) = run.flying.next() => {
                    self.answered(&mut run, sent, result);
                    // The other answers already in, then their
                    // acknowledgements, before anything more is sent.
                    while let Some(Some((sent, result))) = run.flying.next().now_or_never() {
                        self.answered(&mut run, sent, result);
                    }
                    run.acks.record().await;
                }
                _ = news.changed() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.finish(&mut run).await;
    }

    /// Stopping: waits a little for answers on their way (so acknowledged
    /// records are not sent again), then for their recording.
    async fn finish(&self, run: &mut Run) {
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while !run.flying.is_empty() {
            match tokio::time::timeout_at(deadline, run.flying.next()).await {
                Ok(Some((sent, result))) => self.answered(run, sent, result),
                Ok(None) => break,
                Err(_) => {
                    tracing::info!(destination = %self.name, packets = run.flying.len(),
                        "Stopping: unanswered POSTs were abandoned; their records stay stored and are sent again.");
                    break;
                }
            }
        }
        run.flying = Default::default();
        run.board.in_flight(0);
        run.acks.record().await;
    }

    /// Sends packets while the mode, the windows and the store allow.
    fn fill(&self, run: &mut Run) {
        let n = run.ports.len();
        if n == 0 {
            return;
        }
        loop {
            let mut sent_any = false;
            for step in 0..n {
                let allowed = match run.mode {
                    Mode::Open => true,
                    Mode::Probing => run.flying.is_empty(),
                    Mode::Draining { .. } => false,
                };
                if !allowed {
                    return;
                }
                let i = (run.turn + step) % n;
                if run.load[run.ports[i].lane] >= self.window.max(1) {
                    continue;
                }
                match self.send_next(run, i) {
                    Ok(true) => {
                        sent_any = true;
                        run.turn = (i + 1) % n;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(destination = %self.name, port = %run.ports[i].name, error = %e,
                            "Reading the store for delivery failed; retrying.");
                    }
                }
            }
            if !sent_any {
                return;
            }
        }
    }

    /// Sends port `i`'s next packet, if it has one.
    fn send_next(&self, run: &mut Run, i: usize) -> Result<bool, StoreError> {
        let port = run.ports[i].name.clone();
        if run.ports[i].window.is_none() {
            run.ports[i].window = Some(PortWindow::new(self.store.cursor(&port, &self.cursor)?));
        }
        let durable = self.store.durable_seq(&port);
        let kind = run.ports[i].kind;
        // An AG server takes one ADD_REC per POST.
        let batch_max = if kind.is_transactions() {
            1
        } else {
            self.batch_max as u64
        };
        let window = run.ports[i].window.as_mut().expect("read above");
        // Records the store gave up (when_full = drop_oldest) are past:
        // it moved the cursor over them, or removed them.
        let stored = self.store.cursor(&port, &self.cursor)?;
        let held = self.store.first_held(&port).unwrap_or(0);
        window.given_up_below(held.max(stored + 1));
        let Some((from, to)) = window.next_range(durable, batch_max) else {
            return Ok(false);
        };
        let records = self
            .store
            .records(&port, from, to)
            .collect::<Result<Vec<_>, _>>()?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(false);
        };
        let (first, last) = (first.seq, last.seq);
        window.sent(first, last);
        crate::encode_packet(&self.gateway, kind, &records, &mut run.body);
        let server = run.policy.target(Instant::now());
        let e = match server {
            Server::Secondary if self.endpoints.len() > 1 => 1,
            _ => 0,
        };
        run.board
            .using(server.as_str(), self.endpoints[e].url().as_str());
        let lane = run.ports[i].lane;
        run.load[lane] += 1;
        let sent = InFlight {
            port: i,
            first,
            last,
            server,
            endpoint: e,
        };
        // Test builds: an injected panic, or an attempt that fails as one
        // without an answer would.
        let answer = if billbox_failpoints::check_at("destination.post", &self.name) {
            Box::pin(async { Err(PostError::Timeout(Duration::ZERO)) })
        } else {
            self.endpoints[e].send(lane, &run.body)
        };
        run.flying
            .push(Box::pin(async move { (sent, answer.await) }));
        run.board.in_flight(run.flying.len() as u64);
        Ok(true)
    }

    /// Takes one packet's answer.
    fn answered(&self, run: &mut Run, sent: InFlight, result: Result<(), PostError>) {
        let lane = run.ports[sent.port].lane;
        run.load[lane] -= 1;
        run.board.in_flight(run.flying.len() as u64);
        let port = &run.ports[sent.port];
        match result {
            Ok(()) => {
                if run.mode == Mode::Probing {
                    run.mode = Mode::Open;
                }
                run.policy.on_success();
                run.outage.succeeded(&self.name, sent.server.as_str());
                if port.kind.is_transactions() {
                    run.acks.notes.push(Ack {
                        port: port.name.clone(),
                        cursor: None,
                        first: sent.first,
                        last: sent.last,
                        note: Some((self.name.clone(), sent.server.as_str())),
                    });
                }
                let moved = run.ports[sent.port]
                    .window
                    .as_mut()
                    .and_then(|w| w.acked(sent.first, sent.last));
                if let Some(cursor) = moved {
                    run.acks.cursors.insert(sent.port, cursor);
                }
                run.tally.emit(
                    (sent.port, sent.server.as_str()),
                    Delivered {
                        destination: &self.name,
                        server: sent.server.as_str(),
                        port: &run.ports[sent.port].name,
                        first_seq: sent.first,
                        last_seq: sent.last,
                    },
                );
            }
            Err(e) => {
                if let Some(w) = run.ports[sent.port].window.as_mut() {
                    w.failed(sent.first, sent.last);
                }
                // Not taken up behind a server's close: sent again, not
                // an attempt. Nor is the fallout of an attempt that failed
                // already (the rest of its window).
                if e.not_taken() || matches!(run.mode, Mode::Draining { .. }) {
                    return;
                }
                let after = run.policy.on_failure(Instant::now());
                let port = &run.ports[sent.port].name;
                let backlog = self.store.backlog(port, &self.cursor).unwrap_or(0);
                let endpoint = &self.endpoints[sent.endpoint];
                run.outage.failed(
                    &self.name,
                    sent.server.as_str(),
                    endpoint.url().as_str(),
                    &e.to_string(),
                    backlog,
                );
                // (A request that broke its connection dropped it: the rest
                // of that connection's window fails fast. Other connections
                // go on: their answers are kept, not counted.)
                run.mode = Mode::Draining { after };
            }
        }
    }

    /// Every packet of a failed attempt's window is answered: waits
    /// `retry_delay` (or begins a suspension), then sends one packet at a
    /// time. Returns true when billbox is stopping.
    async fn after_failure(
        &self,
        run: &mut Run,
        after: AfterFailure,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        run.mode = Mode::Probing;
        match after {
            // The suspension takes the place of retry_delay; the loop
            // waits it out.
            AfterFailure::Suspend => {
                let backlog = self.backlog();
                self.begin_suspension(run, backlog);
                false
            }
            AfterFailure::Retry => {
                tokio::select! {
                    _ = tokio::time::sleep(self.retry_delay) => false,
                    _ = stop.wait_for(|s| *s) => true,
                }
            }
        }
    }

    /// Records past the cursor over all ports.
    fn backlog(&self) -> u64 {
        self.ports
            .iter()
            .map(|p| self.store.backlog(p, &self.cursor).unwrap_or(0))
            .sum()
    }

    /// The total flushed sequence of this destination's ports: it grows
    /// whenever a new record is flushed to one of them.
    fn flushed(&self) -> u64 {
        self.ports
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(self.store.durable_seq(p)))
    }

    /// A whole round failed: suspends the task.
    fn begin_suspension(&self, run: &mut Run, backlog: u64) {
        if run.suspension.is_some() {
            return;
        }
        let interval = run.policy.suspend();
        let attempts = run.policy.round();
        run.suspension = Some(Suspension {
            flushed: self.flushed(),
            until: tokio::time::Instant::now() + interval,
        });
        run.board.suspended(
            chrono::TimeDelta::from_std(interval)
                .ok()
                .and_then(|d| chrono::Utc::now().checked_add_signed(d)),
        );
        tracing::info!(destination = %self.name, failed_attempts = attempts, suspend_secs = interval.as_secs_f64(), backlog,
            "Delivery is suspended after a whole round of failed attempts; it resumes with a new record or after the suspend interval, from the primary. The records stay stored.");
    }

    /// Waits while the task is suspended: until a new record is flushed to
    /// one of the ports, the suspension interval has passed, or billbox
    /// stops (returns true then). Recordings go on meanwhile.
    async fn wait_while_suspended(
        &self,
        run: &mut Run,
        news: &mut watch::Receiver<u64>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            let Some(s) = run.suspension else {
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
                run.suspension = None;
                run.board.suspended(None);
                run.policy.resume(Instant::now());
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
}
