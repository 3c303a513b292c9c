//! Port readers: serial devices, TCP listen, TCP connect.
//!
//! A reader opens its link, reads, frames the bytes into records with the
//! port's [`Framer`], and appends them to the store, waiting for the flush
//! before it reads on (so a slow disk slows the port, it never loses a
//! record). When the link goes away (pty closed, USB unplugged, PBX
//! disconnected) it keeps what was left of a record, flagged unterminated,
//! and reopens with backoff, logging once per change of state.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use billbox_config::{Flow, Parity, PortConfig, PortSource, SerialSettings};
use billbox_record::{Frame, Framer};
use billbox_store::NewRecord;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::backoff::Backoff;
use crate::events::{
    CommitFailed, PortConnectionReplaced, PortLinkDown, PortLinkUp, PortListening, PortOpenFailed,
    RecordUnterminated, RecordsTruncated, TruncationEnded,
};
use crate::messages::Stop;
use crate::messages::{Append, AppendError};
use crate::store_actor::StoreActor;
use crate::supervise::{spawn_work, ActorName, Recovering, Recovery, Restart, Restarts, Stopping};

/// The first reopen delay; it doubles up to the port's `reconnect_max`.
pub const REOPEN_FLOOR: Duration = Duration::from_millis(100);
/// How long an outgoing TCP connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where listening ports are bound, by port name (for the demo, tests and logs).
pub type ListenAddrs = Arc<Mutex<HashMap<String, SocketAddr>>>;

/// The reader actor of one port.
pub struct PortReader {
    port: Arc<PortConfig>,
    store: Addr<StoreActor>,
    listen_addrs: ListenAddrs,
    /// Turned true by [`Stop`]; the read loop selects on it.
    stop: tokio::sync::watch::Sender<bool>,
    stopping: Stopping,
    /// The link and the framer, kept across restarts of the read loop.
    kept: KeptLink,
    recovery: Recovery,
}

/// What a restart of the reader keeps: the open link (serial device,
/// outgoing connection, listening socket and the PBX connection it
/// accepted), the framer with any partial record, and records read but not
/// yet committed. So a fault in one reader costs the PBX no reconnection,
/// and the bytes the kernel already took from it (which a closed socket
/// would throw away) are read by the restarted loop. A running loop holds
/// it locked; a panic unlocks it with the unwinding.
struct Kept {
    framer: Framer,
    open: Option<Open>,
    listener: Option<TcpListener>,
    state: LinkState,
    /// Read and framed, not yet committed (sent again after a restart).
    unsubmitted: Option<Arc<Vec<NewRecord>>>,
}

/// An open link that is read with `read()`.
enum Open {
    Serial(tokio_serial::SerialStream),
    /// A connection billbox made (`connect`) or accepted (`listen`).
    Tcp(TcpStream),
}

type KeptLink = Arc<tokio::sync::Mutex<Kept>>;

/// The read loop's view of its actor's stop.
#[derive(Clone, Debug)]
struct StopSignal {
    stop: tokio::sync::watch::Receiver<bool>,
}

impl StopSignal {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs `fut` unless a stop comes first.
    async fn or_stop<F: std::future::Future>(&mut self, fut: F) -> Option<F::Output> {
        if self.stopping() {
            return None;
        }
        tokio::select! {
            out = fut => Some(out),
            _ = self.stop.wait_for(|s| *s) => None,
        }
    }
}

impl PortReader {
    pub fn new(
        port: Arc<PortConfig>,
        store: Addr<StoreActor>,
        listen_addrs: ListenAddrs,
        restarts: Restarts,
    ) -> Self {
        let actor = ActorName {
            kind: "reader",
            label: "port",
            subject: Arc::from(port.name.as_str()),
        };
        let framer = Framer::try_new(&port.billing_eor, port.max_record_bytes)
            .expect("the config validated billing_eor and max_record_bytes");
        PortReader {
            port,
            store,
            listen_addrs,
            stop: tokio::sync::watch::channel(false).0,
            stopping: Stopping::default(),
            kept: Arc::new(tokio::sync::Mutex::new(Kept {
                framer,
                open: None,
                listener: None,
                state: LinkState::Starting,
                unsubmitted: None,
            })),
            recovery: Recovery::new(actor, restarts),
        }
    }
}

impl Actor for PortReader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.recovery.plan() {
            // Its budget is spent: billbox is stopping.
            Some(Restart::GiveUp) => {}
            Some(Restart::After(pause)) => {
                ctx.run_later(pause, |act, ctx| act.begin(ctx));
            }
            None => self.begin(ctx),
        }
    }
}

impl PortReader {
    /// Runs a fresh read loop of the port.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        let stop = StopSignal {
            stop: self.stop.subscribe(),
        };
        let (port, store) = (self.port.clone(), self.store.clone());
        let (kept, listen_addrs) = (self.kept.clone(), self.listen_addrs.clone());
        let work = async move {
            let link = Link::new(port, store, stop, kept.lock_owned().await);
            link.run(listen_addrs).await
        };
        spawn_work(self, ctx, work);
    }
}

impl Recovering for PortReader {
    fn recovery(&mut self) -> &mut Recovery {
        &mut self.recovery
    }

    fn stop_state(&mut self) -> &mut Stopping {
        &mut self.stopping
    }
}

impl Supervised for PortReader {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.recovery.restarting() && !self.stopping.asked {
            tracing::warn!(port = %self.port.name, "Port reader is restarting.");
        }
    }
}

/// Stop reading: the reply comes once what was read is committed.
impl Handler<Stop> for PortReader {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, _ctx: &mut Context<Self>) -> Self::Result {
        let _ = self.stop.send(true);
        self.stopping.wait()
    }
}

/// What [`Link::serve`] waited for.
enum Served {
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Ready(io::Result<()>),
}

/// The state of one port's link; logs only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Starting,
    Up,
    Down,
    Unopenable,
}

/// The reading loop of one port.
struct Link {
    port: Arc<PortConfig>,
    name: Arc<str>,
    store: Addr<StoreActor>,
    kept: tokio::sync::OwnedMutexGuard<Kept>,
    /// Truncated records in the current run (0 when the last record was whole).
    truncated_run: u64,
    mask: u8,
    stop: StopSignal,
    quota: LogQuota,
}

/// Link changes logged per port per minute; more are counted and summarized.
pub const LINK_LOGS_PER_MINUTE: u64 = 10;

/// Limits how many link changes a port logs in a minute.
#[derive(Debug)]
struct LogQuota {
    window: std::time::Instant,
    logged: u64,
    suppressed: u64,
}

impl LogQuota {
    fn new() -> LogQuota {
        LogQuota {
            window: std::time::Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether this change may be logged; reports suppressed ones when a
    /// new minute starts.
    fn allow(&mut self, port: &str) -> bool {
        if self.window.elapsed() >= Duration::from_secs(60) {
            if self.suppressed > 0 {
                crate::events::LinkChangesSuppressed {
                    port,
                    changes: self.suppressed,
                }
                .emit();
            }
            *self = LogQuota::new();
        }
        if self.logged < LINK_LOGS_PER_MINUTE {
            self.logged += 1;
            true
        } else {
            if self.suppressed == 0 {
                crate::events::LinkChangesSuppressed { port, changes: 0 }.emit();
            }
            self.suppressed += 1;
            false
        }
    }
}

impl Link {
    fn new(
        port: Arc<PortConfig>,
        store: Addr<StoreActor>,
        stop: StopSignal,
        kept: tokio::sync::OwnedMutexGuard<Kept>,
    ) -> Link {
        let mask = match &port.source {
            PortSource::Serial { .. } => serial_line(&port.serial).mask,
            _ => 0xff,
        };
        Link {
            name: Arc::from(port.name.as_str()),
            port,
            store,
            kept,
            truncated_run: 0,
            mask,
            stop,
            quota: LogQuota::new(),
        }
    }

    async fn run(mut self, listen_addrs: ListenAddrs) {
        // A restarted loop first commits what the failed one had read.
        if let Some(records) = self.kept.unsubmitted.clone() {
            self.commit(records).await;
        }
        let mut backoff = Backoff::new(REOPEN_FLOOR, self.port.reconnect_max);
        match self.port.source.clone() {
            PortSource::Serial { device } => loop {
                if self.stop.stopping() {
                    return;
                }
                if self.kept.open.is_none() {
                    let path = device.to_string_lossy();
                    match open_serial(&path, &self.port.serial) {
                        Ok(stream) => {
                            backoff.reset();
                            self.link_up(&device.display().to_string());
                            self.kept.open = Some(Open::Serial(stream));
                        }
                        Err(e) => self.open_failed(&format!("opening {path}: {e}")),
                    }
                }
                if self.read_then_pause(&mut backoff).await.is_none() {
                    return;
                }
            },
            PortSource::Connect { addr } => loop {
                if self.kept.open.is_none() {
                    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr));
                    let Some(connected) = self.stop.or_stop(connect).await else {
                        return;
                    };
                    match connected {
                        Ok(Ok(stream)) => {
                            backoff.reset();
                            let _ = stream.set_nodelay(true);
                            self.link_up(&addr);
                            self.kept.open = Some(Open::Tcp(stream));
                        }
                        Ok(Err(e)) => self.open_failed(&format!("connecting to {addr}: {e}")),
                        Err(_) => self.open_failed(&format!("connecting to {addr} timed out")),
                    }
                }
                if self.read_then_pause(&mut backoff).await.is_none() {
                    return;
                }
            },
            PortSource::Listen { addr } => loop {
                if self.stop.stopping() {
                    return;
                }
                if self.kept.listener.is_none() {
                    let bound = if billbox_failpoints::check_at("reader.listen", &self.name) {
                        Err(io::Error::other("an injected fault (test builds only)"))
                    } else {
                        TcpListener::bind(&addr).await
                    };
                    match bound {
                        Ok(listener) => {
                            backoff.reset();
                            if let Ok(local) = listener.local_addr() {
                                PortListening {
                                    port: &self.name,
                                    addr: local,
                                }
                                .emit();
                                listen_addrs
                                    .lock()
                                    .expect("listen address table poisoned")
                                    .insert(self.port.name.clone(), local);
                            }
                            self.kept.listener = Some(listener);
                        }
                        Err(e) => self.open_failed(&format!("listening on {addr}: {e}")),
                    }
                }
                if self.kept.listener.is_some() {
                    self.serve().await;
                    self.kept.listener = None;
                }
                if self.pause(backoff.next_delay()).await.is_none() {
                    return;
                }
            },
        }
    }

    /// Reads the open link (if one is open) until it ends, closes it, and
    /// waits before the next open; `None` when billbox stops meanwhile.
    async fn read_then_pause(&mut self, backoff: &mut Backoff) -> Option<()> {
        if self.kept.open.is_some() {
            let reason = self.pump().await;
            self.kept.open = None;
            self.link_down(&reason).await;
        }
        self.pause(backoff.next_delay()).await
    }

    /// Accepts PBX connections one at a time; a new one replaces the current.
    async fn serve(&mut self) {
        loop {
            if billbox_failpoints::check_at("reader.read", &self.name) {
                // An error reading: the connection is dropped, the PBX
                // connects again (the listening socket stays).
                if self.kept.open.take().is_some() {
                    self.link_down("reading failed: an injected fault (test builds only)")
                        .await;
                }
            }
            let kept = &mut *self.kept;
            let (Some(listener), current) = (kept.listener.as_ref(), kept.open.as_ref()) else {
                return;
            };
            // Wait until the connection has data before taking room for it,
            // so an idle connection holds no read buffer.
            let ready = async {
                match current {
                    Some(Open::Tcp(s)) => s.readable().await,
                    _ => std::future::pending().await,
                }
            };
            let mut stop = self.stop.stop.clone();
            let event = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                accepted = listener.accept() => Served::Accepted(accepted),
                ready = ready => Served::Ready(ready),
            };
            match event {
                Served::Accepted(Ok((stream, peer))) => {
                    let _ = stream.set_nodelay(true);
                    let peer = peer.to_string();
                    if self.kept.open.is_some() {
                        let log = self.quota.allow(&self.name);
                        PortConnectionReplaced {
                            port: &self.name,
                            peer: &peer,
                            log,
                        }
                        .emit();
                        self.finish_partial().await;
                    }
                    self.link_up(&peer);
                    self.kept.open = Some(Open::Tcp(stream));
                }
                Served::Accepted(Err(e)) => {
                    tracing::warn!(port = %self.name, error = %e, "Accepting a PBX connection failed.");
                    tokio::time::sleep(REOPEN_FLOOR).await;
                }
                Served::Ready(ready) => {
                    let kept = &mut *self.kept;
                    let read = match (ready, kept.open.as_ref()) {
                        (Err(e), _) => Err(e),
                        (Ok(()), Some(Open::Tcp(s))) => s.try_read(kept.framer.room()),
                        (Ok(()), _) => continue,
                    };
                    let reason = match read {
                        Ok(0) => Some("the PBX closed the connection".to_string()),
                        Ok(n) => {
                            self.ingest(n, 0xff).await;
                            None
                        }
                        // Readiness was a false alarm (it is cleared only
                        // by a read that finds nothing): drop the room.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.kept.framer.unfilled();
                            None
                        }
                        Err(e) => Some(format!("reading failed: {e}")),
                    };
                    if let Some(reason) = reason {
                        self.kept.open = None;
                        self.link_down(&reason).await;
                    }
                }
            }
        }
    }

    /// Reads the open link until it ends; returns why it ended.
    async fn pump(&mut self) -> String {
        loop {
            if billbox_failpoints::check_at("reader.read", &self.name) {
                return "reading failed: an injected fault (test builds only)".into();
            }
            let kept = &mut *self.kept;
            let room = kept.framer.room();
            let read = match kept.open.as_mut() {
                Some(Open::Serial(s)) => self.stop.or_stop(s.read(room)).await,
                Some(Open::Tcp(s)) => self.stop.or_stop(s.read(room)).await,
                None => return "the link is closed".into(),
            };
            let Some(read) = read else {
                return "billbox is stopping".into();
            };
            match read {
                Ok(0) => return "end of stream (device closed or peer gone)".into(),
                Ok(n) => {
                    tracing::trace!(port = %self.name, bytes = n, "Read from the port.");
                    self.ingest(n, self.mask).await;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return format!("reading failed: {e}"),
            }
        }
    }

    /// Frames the `n` bytes just read into the framer's room.
    async fn ingest(&mut self, n: usize, mask: u8) {
        let now = crate::now_us();
        let mut frames = Vec::new();
        if mask == 0xff {
            self.kept.framer.filled(n, &mut frames);
        } else {
            self.kept.framer.filled_masked(n, mask, &mut frames);
        }
        if !frames.is_empty() {
            self.submit(frames, now).await;
        }
    }

    /// Keeps what is left of a record when the link ends.
    async fn finish_partial(&mut self) {
        if let Some(frame) = self.kept.framer.finish() {
            RecordUnterminated {
                port: &self.name,
                bytes: frame.bytes.len(),
            }
            .emit();
            self.submit(vec![frame], crate::now_us()).await;
        }
    }

    /// Appends records to the store and waits until they are flushed,
    /// retrying (and holding the port) while the store cannot take them.
    async fn submit(&mut self, frames: Vec<Frame>, received_us: i64) {
        let mut records = Vec::with_capacity(frames.len());
        for f in frames {
            if f.flags.is_truncated() {
                RecordsTruncated {
                    port: &self.name,
                    count: 1,
                    max_record_bytes: self.port.max_record_bytes,
                    first_of_run: self.truncated_run == 0,
                }
                .emit();
                self.truncated_run += 1;
            } else if self.truncated_run > 0 && !f.flags.is_unterminated() {
                TruncationEnded {
                    port: &self.name,
                    records: self.truncated_run,
                }
                .emit();
                self.truncated_run = 0;
            }
            records.push(NewRecord {
                received_us,
                flags: f.flags,
                bytes: f.bytes,
            });
        }
        let records = Arc::new(records);
        self.kept.unsubmitted = Some(records.clone());
        self.commit(records).await;
    }

    /// Appends `records` to the store until they are committed, holding the
    /// port meanwhile; then they are no longer kept for a restart.
    async fn commit(&mut self, records: Arc<Vec<NewRecord>>) {
        let mut backoff = Backoff::new(REOPEN_FLOOR, Duration::from_secs(5));
        let mut last_log: Option<std::time::Instant> = None;
        loop {
            let msg = Append {
                port: self.name.clone(),
                records: records.clone(),
            };
            let error = match self.store.send(msg).await {
                Ok(Ok(_)) => {
                    self.kept.unsubmitted = None;
                    if last_log.is_some() {
                        tracing::info!(port = %self.name, records = records.len(), "The held records are committed; reading the port again.");
                    }
                    return;
                }
                Ok(Err(AppendError::StoreFailed)) => {
                    // The store takes nothing more in this process, which
                    // stops; these records were never committed.
                    self.kept.unsubmitted = None;
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("the store actor is unreachable: {e}"),
            };
            let log = last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
            if log {
                last_log = Some(std::time::Instant::now());
            }
            CommitFailed {
                port: &self.name,
                records: records.len(),
                error: &error,
                log,
            }
            .emit();
            // Not interruptible by a stop: these records were read and must be kept.
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Sleeps unless a stop comes first.
    async fn pause(&mut self, d: Duration) -> Option<()> {
        self.stop.or_stop(tokio::time::sleep(d)).await
    }

    fn link_up(&mut self, peer: &str) {
        if self.kept.state != LinkState::Up {
            let log = self.quota.allow(&self.name);
            PortLinkUp {
                port: &self.name,
                peer,
                log,
            }
            .emit();
        }
        self.kept.state = LinkState::Up;
    }

    async fn link_down(&mut self, reason: &str) {
        self.finish_partial().await;
        if self.stop.stopping() {
            tracing::info!(port = %self.name, "Port reader stopped.");
        } else if self.kept.state != LinkState::Down {
            let log = self.quota.allow(&self.name);
            PortLinkDown {
                port: &self.name,
                reason,
                log,
            }
            .emit();
        }
        self.kept.state = LinkState::Down;
    }

    fn open_failed(&mut self, error: &str) {
        PortOpenFailed {
            port: &self.name,
            error,
            first: self.kept.state != LinkState::Unopenable,
        }
        .emit();
        self.kept.state = LinkState::Unopenable;
    }
}

/// How a port's serial settings map onto the driver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialLine {
    pub data_bits: tokio_serial::DataBits,
    pub parity: tokio_serial::Parity,
    pub stop_bits: tokio_serial::StopBits,
    pub flow: tokio_serial::FlowControl,
    /// Applied to every byte read.
    pub mask: u8,
}

/// Maps serial settings onto the driver, which knows no mark or space parity:
/// those are read as one more data bit with the parity bit masked off (for 8
/// data bits, as 8N1: mark parity then looks like a stop bit).
pub fn serial_line(s: &SerialSettings) -> SerialLine {
    use tokio_serial::{DataBits, FlowControl, StopBits};
    let bits = |n: u8| match n {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let (data_bits, parity, mask) = match s.parity {
        Parity::None => (bits(s.data_bits), tokio_serial::Parity::None, 0xff),
        Parity::Odd => (bits(s.data_bits), tokio_serial::Parity::Odd, 0xff),
        Parity::Even => (bits(s.data_bits), tokio_serial::Parity::Even, 0xff),
        Parity::Mark | Parity::Space if s.data_bits < 8 => (
            bits(s.data_bits + 1),
            tokio_serial::Parity::None,
            ((1u16 << s.data_bits) - 1) as u8,
        ),
        Parity::Mark | Parity::Space => (DataBits::Eight, tokio_serial::Parity::None, 0xff),
    };
    SerialLine {
        data_bits,
        parity,
        stop_bits: if s.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        },
        flow: match s.flow {
            Flow::None => FlowControl::None,
            Flow::Hardware => FlowControl::Hardware,
            Flow::Software => FlowControl::Software,
        },
        mask,
    }
}

fn open_serial(
    device: &str,
    s: &SerialSettings,
) -> Result<tokio_serial::SerialStream, tokio_serial::Error> {
    use tokio_serial::SerialPortBuilderExt;
    let line = serial_line(s);
    tokio_serial::new(device, s.speed)
        .data_bits(line.data_bits)
        .parity(line.parity)
        .stop_bits(line.stop_bits)
        .flow_control(line.flow)
        .open_native_async()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_serial::{DataBits, Parity as P};

    fn settings(data_bits: u8, parity: Parity) -> SerialSettings {
        SerialSettings {
            speed: 9600,
            data_bits,
            parity,
            stop_bits: 1,
            flow: Flow::None,
        }
    }

    #[test]
    fn mark_and_space_parity_read_as_an_extra_masked_bit() {
        let l = serial_line(&settings(7, Parity::Mark));
        assert_eq!(
            (l.data_bits, l.parity, l.mask),
            (DataBits::Eight, P::None, 0x7f)
        );
        let l = serial_line(&settings(7, Parity::Space));
        assert_eq!(l.mask, 0x7f);
        let l = serial_line(&settings(5, Parity::Mark));
        assert_eq!((l.data_bits, l.mask), (DataBits::Six, 0x1f));
        let l = serial_line(&settings(8, Parity::Mark));
        assert_eq!(
            (l.data_bits, l.parity, l.mask),
            (DataBits::Eight, P::None, 0xff)
        );
    }

    #[test]
    fn plain_settings_pass_through() {
        let l = serial_line(&settings(7, Parity::Even));
        assert_eq!(
            (l.data_bits, l.parity, l.mask),
            (DataBits::Seven, P::Even, 0xff)
        );
        let mut s = settings(8, Parity::None);
        s.stop_bits = 2;
        s.flow = Flow::Hardware;
        let l = serial_line(&s);
        assert_eq!(l.stop_bits, tokio_serial::StopBits::Two);
        assert_eq!(l.flow, tokio_serial::FlowControl::Hardware);
    }
}
