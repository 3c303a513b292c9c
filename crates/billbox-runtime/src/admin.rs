//! The admin socket: `data_dir/admin.sock`, a Unix socket only billbox's
//! own user (and root) may use (mode 0600, and the peer's uid checked).
//! One request per connection, JSON lines both ways. The one command
//! today is a replay ([`ReplayRequest`]): the answer is a stream of
//! [`ReplayEvent`]s. The store is opened by one process, so tools ask the
//! running daemon here instead of opening it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use billbox_config::{Config, ServerSecurity};
use billbox_delivery::replay::{resolve, RangeEnd, Replay};
use billbox_delivery::{AckSink, Endpoint};
use billbox_store::Store;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's name in `data_dir`.
pub const SOCKET_NAME: &str = "admin.sock";

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket of the billbox whose data directory is `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// One end of a replay's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// A sequence number.
    Seq(u64),
    /// An RFC 3339 time.
    Time(String),
}

/// Where replayed records go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A server URL (plain or https with the `[delivery]` security keys).
    Url(String),
    /// `delivery`: the `[delivery]` servers, primary first.
    Destination(String),
}

/// `billbox replay`'s request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub port: String,
    pub from: Bound,
    pub to: Option<Bound>,
    pub target: Target,
    /// Start over instead of resuming an earlier run of the same replay.
    #[serde(default)]
    pub again: bool,
}

impl ReplayRequest {
    /// The replay's cursor: the same request resumes the same cursor.
    pub fn cursor(&self) -> String {
        let key = serde_json::to_string(&(&self.port, &self.from, &self.to, &self.target))
            .unwrap_or_default();
        let digest = sha2::Sha256::digest(key.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("replay:{hex}")
    }
}

/// A request on the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Replay(ReplayRequest),
}

/// What the daemon says about a replay, one JSON line each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayEvent {
    /// The range, resolved: `first..=last` to send, from `resume_from`
    /// when an earlier run got that far; `gone` are sequences the store no
    /// longer holds (the ACS files do).
    Range {
        first: u64,
        last: u64,
        total: u64,
        resume_from: Option<u64>,
        gone: Option<(u64, u64)>,
        /// `false`: the range was given by a time before the oldest record
        /// held; `gone` are the removed records, some of which may be in
        /// the range.
        #[serde(default)]
        gone_exact: bool,
    },
    Progress {
        done: u64,
        total: u64,
        rate: f64,
    },
    /// Every record of the range was acknowledged.
    Done {
        records: u64,
    },
    /// It stopped; `next_seq` is where running it again resumes.
    Failed {
        reason: String,
        next_seq: Option<u64>,
    },
    /// The request was refused.
    Refused {
        reason: String,
    },
}

/// The listening admin socket, removed at drop.
pub struct Admin {
    path: PathBuf,
    task: actix_rt::task::JoinHandle<()>,
    /// The connections being served (a replay among them).
    connections: Rc<std::cell::RefCell<Vec<actix_rt::task::JoinHandle<()>>>>,
}

impl Drop for Admin {
    /// Stops listening and stops a replay that runs (its cursor is where
    /// its last acknowledged packet left it: run again, it resumes).
    fn drop(&mut self) {
        self.task.abort();
        for c in self.connections.borrow_mut().drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a replay needs from the running daemon.
#[derive(Clone)]
pub struct AdminContext {
    pub config: Rc<std::cell::RefCell<Config>>,
    pub store: Store,
    pub acks: Rc<dyn AckSink>,
}

/// Listens on `data_dir/admin.sock` (a stale socket from a crash is
/// replaced) on the current actix system.
pub fn start(ctx: AdminContext) -> std::io::Result<Admin> {
    let path = socket_path(&ctx.config.borrow().gateway.data_dir);
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            std::fs::remove_file(&path)?;
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let busy = Rc::new(std::cell::Cell::new(false));
    let connections: Rc<std::cell::RefCell<Vec<actix_rt::task::JoinHandle<()>>>> = Rc::default();
    let served = connections.clone();
    let task = actix_rt::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (ctx, busy) = (ctx.clone(), busy.clone());
            let mut open = served.borrow_mut();
            open.retain(|c| !c.is_finished());
            open.push(actix_rt::spawn(
                async move { serve(stream, ctx, busy).await },
            ));
        }
    });
    tracing::info!(path = %path.display(), "The admin socket is listening.");
    Ok(Admin {
        path,
        task,
        connections,
    })
}

async fn send(stream: &mut UnixStream, event: &ReplayEvent) -> bool {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    stream.write_all(&line).await.is_ok()
}

/// Whether the peer is billbox's own user or root.
fn peer_allowed(stream: &UnixStream) -> bool {
    let mine = nix::unistd::geteuid().as_raw();
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == mine || c.uid() == 0)
}

async fn serve(mut stream: UnixStream, ctx: AdminContext, busy: Rc<std::cell::Cell<bool>>) {
    if !peer_allowed(&stream) {
        tracing::warn!("A connection to the admin socket from another user was refused.");
        let reason = "only billbox's own user may use the admin socket".to_string();
        send(&mut stream, &ReplayEvent::Refused { reason }).await;
        return;
    }
    let mut line = String::new();
    let read = {
        let mut reader = BufReader::new(&mut stream);
        tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await
    };
    let request = match read {
        Ok(Ok(n)) if n > 0 => serde_json::from_str::<Request>(&line),
        _ => return,
    };
    let Ok(Request::Replay(request)) = request else {
        let reason = "not a request billbox knows".to_string();
        send(&mut stream, &ReplayEvent::Refused { reason }).await;
        return;
    };
    if busy.get() {
        let reason = "a replay is running; wait for it or stop it".to_string();
        send(&mut stream, &ReplayEvent::Refused { reason }).await;
        return;
    }
    busy.set(true);
    replay(&mut stream, &ctx, request).await;
    busy.set(false);
}

fn bound(b: &Bound) -> Result<RangeEnd, String> {
    match b {
        Bound::Seq(s) => Ok(RangeEnd::Seq(*s)),
        Bound::Time(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| RangeEnd::TimeUs(d.timestamp_micros()))
            .map_err(|e| {
                format!("{t:?} is not an RFC 3339 time ({e}); write e.g. 2026-12-01T08:00:00Z")
            }),
    }
}

async fn replay(stream: &mut UnixStream, ctx: &AdminContext, req: ReplayRequest) {
    let refuse = |reason: String| ReplayEvent::Refused { reason };
    let config = ctx.config.borrow().clone();
    if config.port(&req.port).is_none() {
        let known: Vec<&str> = config.ports.iter().map(|p| p.name.as_str()).collect();
        send(
            stream,
            &refuse(format!(
                "{:?} is not a port of the config ({})",
                req.port,
                known.join(", ")
            )),
        )
        .await;
        return;
    }
    let (from, to) = match (bound(&req.from), req.to.as_ref().map(bound).transpose()) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            send(stream, &refuse(e)).await;
            return;
        }
    };
    let range = match resolve(&ctx.store, &req.port, from, to) {
        Ok(r) => r,
        Err(e) => {
            send(stream, &refuse(e.to_string())).await;
            return;
        }
    };
    let delivery = config.delivery.as_ref();
    let (endpoints, batch_max, window, retry_delay) = match &req.target {
        Target::Url(url) => {
            let url = match url.parse::<billbox_config::ServerUrl>() {
                Ok(u) => u,
                Err(e) => {
                    send(stream, &refuse(format!("--url: {e}"))).await;
                    return;
                }
            };
            let security = delivery.map_or_else(ServerSecurity::default, |d| d.security.clone());
            let timeout = delivery.map_or(Duration::from_secs(10), |d| d.request_timeout);
            (
                vec![Endpoint::new(url, &security, timeout)],
                delivery.map_or(1, |d| d.batch_max),
                32,
                Duration::from_secs(1),
            )
        }
        Target::Destination(name) if name == "delivery" => match delivery {
            Some(d) => {
                let mut servers = vec![Endpoint::new(
                    d.primary.clone(),
                    &d.security,
                    d.request_timeout,
                )];
                if let Some(s) = &d.secondary {
                    servers.push(Endpoint::new(s.clone(), &d.security, d.request_timeout));
                }
                (
                    servers,
                    d.batch_max,
                    d.window,
                    d.retry_delay.max(Duration::from_millis(100)),
                )
            }
            None => {
                send(stream, &refuse("the config has no [delivery]".into())).await;
                return;
            }
        },
        Target::Destination(other) => {
            send(
                stream,
                &refuse(format!(
                    "{other:?} is not a destination; use delivery, or --url"
                )),
            )
            .await;
            return;
        }
    };
    // `--again`: a cursor of its own (cursors never move back), so the
    // run sends everything; stopped, it is started over with --again, and
    // without it the earlier complete run still counts as complete.
    let cursor = match req.again {
        false => req.cursor(),
        true => format!("{}@{}", req.cursor(), crate::now_us()),
    };
    let done_before = match ctx.store.cursor(&req.port, &cursor) {
        Ok(done) => done,
        Err(e) => {
            let why = format!("the store failed reading the replay's cursor: {e}");
            send(stream, &refuse(why)).await;
            return;
        }
    };
    let resume =
        (done_before >= range.first && done_before < range.last).then_some(done_before + 1);
    let start = if done_before >= range.last && done_before > 0 {
        range.last + 1
    } else {
        resume.unwrap_or(range.first)
    };
    let total = (range.last + 1).saturating_sub(start);
    let event = ReplayEvent::Range {
        first: range.first,
        last: range.last,
        total,
        resume_from: resume,
        gone: range.gone,
        gone_exact: range.gone_exact,
    };
    if !send(stream, &event).await {
        return;
    }
    tracing::info!(
        port = %req.port,
        first = range.first,
        last = range.last,
        from = start,
        gone = ?range.gone,
        "A replay starts."
    );
    if total == 0 {
        send(stream, &ReplayEvent::Done { records: 0 }).await;
        return;
    }
    let job = Replay {
        gateway: Arc::from(config.gateway.name.as_str()),
        port: Arc::from(req.port.as_str()),
        from: start,
        last: range.last,
        endpoints,
        batch_max,
        window,
        attempts: 5,
        retry_delay,
        store: ctx.store.clone(),
        acks: ctx.acks.clone(),
        cursor,
    };
    // Progress at most twice a second; a client gone stops the replay.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<billbox_delivery::replay::Progress>(1);
    let mut alive = true;
    let run = job.run(|p| {
        let _ = tx.try_send(p);
        !tx.is_closed()
    });
    tokio::pin!(run);
    let mut last_sent = std::time::Instant::now() - Duration::from_secs(1);
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            Some(p) = rx.recv(), if alive => {
                if last_sent.elapsed() >= Duration::from_millis(500) {
                    last_sent = std::time::Instant::now();
                    let event = ReplayEvent::Progress { done: p.done, total: p.total, rate: p.rate };
                    if !send(stream, &event).await {
                        alive = false;
                        rx.close();
                    }
                }
            }
        }
    };
    let event = match result {
        Ok(records) => {
            tracing::info!(port = %req.port, records, "A replay is done.");
            ReplayEvent::Done { records }
        }
        Err(e) => {
            tracing::warn!(port = %req.port, reason = %e, "A replay stopped before its end; running it again resumes it.");
            let next_seq = match &e {
                billbox_delivery::replay::ReplayStopped::Server { seq, .. }
                | billbox_delivery::replay::ReplayStopped::Cancelled { seq }
                | billbox_delivery::replay::ReplayStopped::Store { seq, .. } => Some(*seq),
            };
            ReplayEvent::Failed {
                reason: e.to_string(),
                next_seq,
            }
        }
    };
    send(stream, &event).await;
}
