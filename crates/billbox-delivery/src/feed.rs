//! [`TcpFeed`]: a raw TCP feed. Billing software connects in and reads
//! every record's bytes exactly as the PBX sent them, as if it were the
//! PBX.
//!
//! One client at a time: a new connection replaces the old one. The feed
//! has a durable cursor per port (`feed:<name>`), moved once a batch of
//! records has been written to the client's socket. TCP gives no
//! application acknowledgement, so a record written just before a client
//! goes away may be lost to that client (it is never written to the feed
//! twice while billbox runs; after a billbox crash the last records may
//! come again). It is still in the ACS files and at the servers.
//!
//! A feed never holds records in the store: a slow or stalled client holds
//! up nothing else. Records the store removed (filed and delivered) before
//! the feed wrote them are skipped, and said so ([`FeedSkipped`]).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use billbox_config::{FeedStart, TcpFeedConfig};
use billbox_store::Store;
use metrics::counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::acks::{record_with_retries, Ack, AckSink};

/// Bytes one write carries at most.
const BATCH_BYTES: usize = 256 * 1024;
/// Records one write carries at most.
const BATCH_RECORDS: u64 = 4096;
/// The most a feed waits before it tries its address again.
const BIND_RETRY_MAX: Duration = Duration::from_secs(5);

/// One feed's loop (the runtime runs it in a supervised actor).
pub struct TcpFeed {
    pub config: TcpFeedConfig,
    /// The ports it carries, in order.
    pub ports: Vec<Arc<str>>,
    pub store: Store,
    pub acks: Rc<dyn AckSink>,
    /// Bumped on each commit.
    pub news: Arc<watch::Sender<u64>>,
}

/// Records of one port, ready to write.
struct Batch {
    port: usize,
    first: u64,
    last: u64,
    bytes: Vec<u8>,
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
}

impl TcpFeed {
    /// Serves clients until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let Some(listener) = self.bind(&mut stop).await else {
            return;
        };
        let name = self.config.name.as_str();
        info!(
            feed = name,
            listen = %listener.local_addr().map_or(self.config.listen, |a| a),
            ports = ?self.ports,
            "The TCP feed is listening."
        );
        let records = counter!("billbox_feed_records_total", "feed" => name.to_owned());
        let mut sent = Vec::with_capacity(self.ports.len());
        for port in &self.ports {
            match self.store.cursor(port, &self.config.cursor()) {
                Ok(seq) => sent.push(seq),
                Err(e) => {
                    // Not from 0 (that would send everything again): the
                    // actor starts the loop again after a pause.
                    warn!(feed = name, port = %port, error = %e, "The TCP feed cannot read its cursor; it starts again shortly.");
                    return;
                }
            }
        }
        let mut news = self.news.subscribe();
        let mut client: Option<Client> = None;
        let mut next_port = 0;
        // The batch being written and how much of it the client has: it
        // survives a select that another branch won (a refused connection,
        // news), so nothing is written twice to one client.
        let mut pending: Option<(Batch, usize)> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if client.is_some() && pending.is_none() {
                pending = self.next_batch(&mut sent, &mut next_port).map(|b| (b, 0));
            }
            if let (Some((batch, written)), Some(c)) = (pending.as_mut(), client.as_mut()) {
                tokio::select! {
                    wrote = c.stream.write(&batch.bytes[*written..]) => match wrote {
                        Ok(n) if n > 0 => {
                            *written += n;
                            if *written == batch.bytes.len() {
                                let (batch, _) = pending.take().expect("a pending batch");
                                sent[batch.port] = batch.last;
                                records.increment(batch.last + 1 - batch.first);
                                self.record(&batch).await;
                            }
                        }
                        Ok(_) | Err(_) => {
                            info!(feed = name, peer = %c.peer, "The TCP feed's client went away.");
                            client = None;
                            // The next client gets the whole batch.
                            if let Some((_, written)) = pending.as_mut() {
                                *written = 0;
                            }
                        }
                    },
                    accepted = listener.accept() => {
                        if self.accepted(accepted, &mut client, &mut sent).await {
                            // A new client: the whole batch goes to it,
                            // unless it starts with what is new.
                            match self.config.from {
                                FeedStart::New => pending = None,
                                FeedStart::Unsent => {
                                    if let Some((_, written)) = pending.as_mut() {
                                        *written = 0;
                                    }
                                }
                            }
                        }
                    }
                    _ = stop.changed() => return,
                }
                continue;
            }
            // Nothing to write: wait for news, a client, or the client's end.
            tokio::select! {
                _ = news.changed() => {}
                accepted = listener.accept() => {
                    if self.accepted(accepted, &mut client, &mut sent).await && self.config.from == FeedStart::New {
                        pending = None;
                    }
                }
                gone = closed(client.as_mut()) => {
                    if let (Some(c), Err(why)) = (&client, gone) {
                        info!(feed = name, peer = %c.peer, reason = why, "The TCP feed's client went away.");
                        client = None;
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// The listening socket; retried (with growing pauses) while the
    /// address is taken. `None` once stopped.
    async fn bind(&self, stop: &mut watch::Receiver<bool>) -> Option<TcpListener> {
        let mut pause = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match TcpListener::bind(self.config.listen).await {
                Ok(l) => return Some(l),
                Err(e) => {
                    if !warned {
                        warn!(
                            feed = %self.config.name,
                            listen = %self.config.listen,
                            error = %e,
                            "The TCP feed cannot listen; trying again."
                        );
                        warned = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => return None,
                    }
                    pause = (pause * 2).min(BIND_RETRY_MAX);
                }
            }
        }
    }

    /// A connection came in: refused when its address is not allowed, else
    /// it replaces the current client. Returns whether it did.
    async fn accepted(
        &self,
        accepted: std::io::Result<(TcpStream, SocketAddr)>,
        client: &mut Option<Client>,
        sent: &mut [u64],
    ) -> bool {
        let name = self.config.name.as_str();
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(feed = name, error = %e, "The TCP feed could not accept a connection.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return false;
            }
        };
        if !self.config.allows(peer.ip()) {
            warn!(feed = name, peer = %peer, "A connection to the TCP feed from an address not in its allow list was refused.");
            counter!("billbox_feed_refused_total", "feed" => name.to_owned()).increment(1);
            return false;
        }
        if let Some(old) = client.take() {
            info!(feed = name, peer = %peer, replaced = %old.peer, "A new client replaces the TCP feed's client.");
        } else {
            info!(feed = name, peer = %peer, "A client connected to the TCP feed.");
        }
        let _ = stream.set_nodelay(true);
        if self.config.from == FeedStart::New {
            for (i, port) in self.ports.iter().enumerate() {
                let end = self.store.durable_seq(port);
                if end > sent[i] {
                    let skipped = Batch {
                        port: i,
                        first: sent[i] + 1,
                        last: end,
                        bytes: Vec::new(),
                    };
                    sent[i] = end;
                    self.record(&skipped).await;
                }
            }
        }
        *client = Some(Client { stream, peer });
        true
    }

    /// The next records to write, one port at a time in turn.
    fn next_batch(&self, sent: &mut [u64], next_port: &mut usize) -> Option<Batch> {
        for turn in 0..self.ports.len() {
            let i = (*next_port + turn) % self.ports.len();
            let port = &self.ports[i];
            let end = self.store.durable_seq(port);
            if end <= sent[i] {
                continue;
            }
            let from = sent[i] + 1;
            let to = end.min(from + BATCH_RECORDS - 1);
            let mut bytes = Vec::new();
            let mut first = None;
            let mut last = sent[i];
            let mut failed = None;
            for rec in self.store.records(port, from, to) {
                let rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                first.get_or_insert(rec.seq);
                bytes.extend_from_slice(&rec.bytes);
                last = rec.seq;
                if bytes.len() >= BATCH_BYTES {
                    break;
                }
            }
            if let (Some(e), None) = (&failed, first) {
                // Not a gap: the records may still be there. Tried again at
                // the next commit.
                warn!(feed = %self.config.name, port = %port, error = %e, "The TCP feed could not read records from the store; it tries again.");
                continue;
            }
            let held_from = first.unwrap_or(to + 1);
            if held_from > from {
                FeedSkipped {
                    feed: &self.config.name,
                    port,
                    first_seq: from,
                    last_seq: held_from - 1,
                }
                .emit();
                // Nothing held at all in the range: move past it.
                if first.is_none() {
                    sent[i] = to;
                    continue;
                }
            }
            *next_port = (i + 1) % self.ports.len();
            return Some(Batch {
                port: i,
                first: held_from,
                last,
                bytes,
            });
        }
        None
    }

    /// Moves the feed's cursor of the batch's port (durable with the store's
    /// next flush).
    async fn record(&self, batch: &Batch) {
        let ack = Ack {
            port: self.ports[batch.port].clone(),
            cursor: Some(self.config.cursor()),
            first: batch.first,
            last: batch.last,
            note: None,
        };
        if let Err(e) = record_with_retries(&*self.acks, ack).await {
            warn!(feed = %self.config.name, error = %e, "The TCP feed's cursor could not be recorded; after a restart it sends those records again.");
        }
    }
}

/// Resolves when the client's side ends (reading discards what it sends);
/// never without a client.
async fn closed(client: Option<&mut Client>) -> Result<(), &'static str> {
    let Some(c) = client else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 512];
    loop {
        match c.stream.read(&mut buf).await {
            Ok(0) => return Err("it closed the connection"),
            Ok(_) => {}
            Err(_) => return Err("the connection failed"),
        }
    }
}

/// Records the store removed before the feed wrote them (filed and
/// delivered while no client read them fast enough).
pub struct FeedSkipped<'a> {
    pub feed: &'a str,
    pub port: &'a str,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl FeedSkipped<'_> {
    pub fn emit(self) {
        warn!(
            feed = self.feed,
            port = self.port,
            record_seq = self.first_seq,
            last_seq = self.last_seq,
            "Records were removed from the store before the TCP feed wrote them; the feed skips them (they are in the ACS files and at the servers)."
        );
        counter!("billbox_feed_skipped_records_total", "feed" => self.feed.to_owned())
            .increment(self.last_seq + 1 - self.first_seq);
    }
}
