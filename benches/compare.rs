//! Side by side: billbox against syslog-ng and rsyslog on one workload.
//!
//! `COMPARE_RECORDS` lines (default 200,000) of 145 bytes, the "\n"
//! included, each starting with its own zero-padded sequence number, go over
//! TCP on 127.0.0.1 into a durable queue and out to a sink in this process,
//! which counts distinct sequence numbers (and checks every line byte for
//! byte). Columns:
//!
//! - billbox, the real binary as a child process (`billbox run --config FILE
//!   --log-format json`), one TCP `[[ports]]` with `billing_eor = "\n"`,
//!   delivering to an HTTP sink that decodes billbox's XML packets and
//!   answers the ack: `batch_max = 1` and `batch_max = 500`;
//! - syslog-ng: `disk-buffer(reliable(yes))` with flow control, and its
//!   defaults (memory queue); plain TCP line sink;
//! - rsyslog: a disk action queue with `queue.syncQueueFiles="on"` (and a
//!   direct main queue), and its defaults (imtcp to omfwd, memory main
//!   queue); plain TCP line sink.
//!
//! Every peer runs in the foreground with its own config, pid file and
//! queue directories in a temporary directory, on ports picked free, and is
//! stopped by pid; a guard kills it if the bench panics. Reconnection to a
//! sink that was down is 1 s everywhere (billbox `retry_delay`, syslog-ng
//! `time-reopen`, rsyslog `action.resumeInterval`/`resumeIntervalMax`).
//!
//! Figures, measured the same way for every column:
//! 1. end to end: sink up; from the first byte sent to the last distinct
//!    record at the sink;
//! 2. ingest, sink down (connection refused): from the first byte sent until
//!    the peer's own counter of records taken into its queue reaches the
//!    count (billbox: committed sequence from `/metrics`; syslog-ng: the
//!    destination's `processed` from its control socket, what `syslog-ng-ctl
//!    stats` prints; rsyslog: `enqueued` of the queue from impstats). The
//!    counters are read every 10 ms but rsyslog publishes once a second, so
//!    the instant is the later of the last reading below the count and the
//!    last moment the peer had unread bytes on its socket (`/proc/net/tcp`);
//!    the first reading at or above the count is printed too. Then what the
//!    peer still holds for the sink once its counters settle;
//! 3. drain: after 2, the sink comes up; from then to the last distinct
//!    record (also: when the first came, and the rate from it);
//! 4. SIGKILL with a backlog: a. the sink is down, b. the sink reads
//!    `COMPARE_RECORDS`/20 records/s through a 4 KiB receive buffer; once
//!    the peer has taken everything in (as in 2), it is killed with SIGKILL,
//!    restarted on the same directories, the sink reads at full speed, and
//!    the bench waits until the sink stops receiving. Lost of taken in: of
//!    the first records the peer counted as taken in before the kill, those
//!    never at the sink; duplicates = lines − distinct.
//! 5. power cut with a backlog: 4a, except that the peer's queue and state
//!    directories (billbox: `data_dir` and `spool_dir`; syslog-ng: its
//!    disk-buffer directory; rsyslog: its work directory) are on a faultfs
//!    mount (`crates/billbox-faultfs`, a disk with a volatile write cache),
//!    made durable before the peer starts; once the peer has taken
//!    everything in, the disk freezes (the power is lost), the peer gets
//!    SIGKILL, the power is cut (every write not fsynced and every
//!    directory change not made durable by a directory fsync is dropped),
//!    and it restarts on what survived. `COMPARE_CUTS` times (default 5)
//!    on one mount, new directories each time; each cut is printed (with
//!    what the peer did on the disk and what the cut dropped), then the
//!    total. syslog-ng cannot run there: it maps its disk-buffer file's
//!    header and its persist file with `mmap(MAP_SHARED)`, which faultfs
//!    refuses (ENODEV), so its figure 5 fails, saying so, and its persist
//!    file is never on the mount. Without faultfs (not root, no
//!    /dev/fuse) figure 5 prints `SKIPPED: <reason>`.
//!
//! Waits end when the count is reached, when the sink has received nothing
//! new for `COMPARE_STALL_S` seconds (default 5), or after
//! `COMPARE_TIMEOUT_S` (default 120); a figure that did not reach the count
//! says how many arrived.
//!
//! `bash benches/compare.sh` fetches the peers into target/compare-peers and
//! runs `cargo bench --bench compare`. Without `--bench` (as `cargo test`
//! runs bench targets) this is a smoke run: 2,000 records, the billbox
//! columns with figures 1 to 4 and the first of them with figure 5 (1 cut,
//! when faultfs is available), asserting no billbox record is lost (counts
//! only, never speed); peers only when `COMPARE_SMOKE_PEERS=1` (without
//! figure 5). Environment: COMPARE_RECORDS, COMPARE_TIMEOUT_S,
//! COMPARE_STALL_S, COMPARE_CUTS (0: no figure 5), COMPARE_COLUMNS
//! (comma-separated keys, e.g. `billbox-1,rsyslog-disk`),
//! COMPARE_PEERS_DIR (default `target/compare-peers`), COMPARE_SMOKE_PEERS.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use billbox_faultfs::{Control, Cut, FaultFs};
use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::server::{self, Answer, HttpServer, Options, Served};
use billbox_testkit::{bin, env_or, free_addr};

/// Bytes per line, the "\n" included.
const LINE: usize = 145;
/// How often the peers' counters are read.
const POLL: Duration = Duration::from_millis(10);

struct Settings {
    records: u64,
    timeout: Duration,
    stall: Duration,
    slow_rate: u64,
    /// Figure 5's power cuts per column.
    cuts: u64,
    peers_dir: PathBuf,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let records = env_or("COMPARE_RECORDS", if full { 200_000 } else { 2_000 });
    assert!(records > 0, "COMPARE_RECORDS must be at least 1");
    let s = Settings {
        records,
        timeout: Duration::from_secs(env_or("COMPARE_TIMEOUT_S", if full { 120 } else { 20 })),
        stall: Duration::from_secs(env_or("COMPARE_STALL_S", if full { 5 } else { 3 })),
        slow_rate: (records / 20).max(100),
        cuts: env_or("COMPARE_CUTS", if full { 5 } else { 1 }),
        peers_dir: std::env::var_os("COMPARE_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/compare-peers")),
    };
    let only: Option<Vec<String>> = std::env::var("COMPARE_COLUMNS").ok().map(|v| {
        v.split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect()
    });
    let smoke_peers = std::env::var("COMPARE_SMOKE_PEERS").is_ok_and(|v| v == "1");
    let payload = Arc::new(payload(records));

    let syslog_ng = find_syslog_ng(&s.peers_dir);
    let rsyslogd = find_rsyslogd(&s.peers_dir);
    println!(
        "compare: {} records of {LINE} bytes, {} cores, timeout {} s, stall {} s, slow sink {} records/s ({})",
        fmt_n(records),
        thread::available_parallelism().map_or(0, |n| n.get()),
        s.timeout.as_secs(),
        s.stall.as_secs(),
        fmt_n(s.slow_rate),
        if full { "full run" } else { "smoke run" }
    );
    println!("billbox: {}", bin().display());
    for (name, exe) in [("syslog-ng", &syslog_ng), ("rsyslog", &rsyslogd)] {
        match exe {
            Some(e) => println!("{name}: {} ({})", e.version, e.path.display()),
            None => println!("{name}: not installed (bash benches/compare.sh fetches it)"),
        }
    }
    let faultfs = billbox_faultfs::available();
    match &faultfs {
        Ok(()) if s.cuts > 0 => println!(
            "faultfs: available; figure 5: {} power cut(s) a column{}",
            s.cuts,
            if full {
                ""
            } else {
                ", the first billbox column only"
            }
        ),
        Ok(()) => println!("SKIPPED: figure 5 (power cut with a backlog): COMPARE_CUTS=0"),
        Err(why) => println!("SKIPPED: figure 5 (power cut with a backlog): {why}"),
    }

    let mut columns = Vec::new();
    for kind in Kind::ALL {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|k| k == kind.key()))
        {
            continue;
        }
        let exe = match kind {
            Kind::Billbox(_) => None,
            Kind::SyslogNg { .. } => match &syslog_ng {
                Some(e) => Some(e.clone()),
                None => {
                    println!("SKIPPED: syslog-ng not installed ({})", kind.title());
                    continue;
                }
            },
            Kind::Rsyslog { .. } => match &rsyslogd {
                Some(e) => Some(e.clone()),
                None => {
                    println!("SKIPPED: rsyslog not installed ({})", kind.title());
                    continue;
                }
            },
        };
        if !full && !kind.is_billbox() && !smoke_peers {
            println!(
                "SKIPPED: {} in the smoke run (COMPARE_SMOKE_PEERS=1 runs it)",
                kind.title()
            );
            continue;
        }
        println!("\n== {} ==", kind.title());
        // The smoke run cuts the power under the first billbox column only.
        let power_cuts = faultfs.is_ok()
            && s.cuts > 0
            && (full || kind.is_billbox() && !columns.iter().any(|c: &Column| c.kind.is_billbox()));
        let col = if kind.is_billbox() {
            // billbox's figures are checked: a failure fails the bench.
            run_column(kind, exe, &s, &payload, power_cuts)
        } else {
            // A peer that fails is reported, and the other columns go on.
            match caught(|| run_column(kind, exe, &s, &payload, power_cuts)) {
                Ok(c) => c,
                Err(msg) => {
                    println!("FAILED: {}: {msg}", kind.title());
                    Column {
                        failed: Some(msg),
                        ..Column::new(kind)
                    }
                }
            }
        };
        if kind.is_billbox() {
            check_billbox(&col, records);
        }
        columns.push(col);
    }
    print_tables(&columns, records);
}

/// Runs `f`; a panic comes back as its message.
fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// No billbox record may be lost or altered, whatever the speed.
fn check_billbox(c: &Column, n: u64) {
    let t = c.kind.title();
    let e2e = c.e2e.as_ref().expect("end to end ran");
    assert_eq!(e2e.distinct, n, "{t}: end to end lost records");
    assert_eq!(e2e.bad, 0, "{t}: the sink got records that were not sent");
    let ingest = c.ingest.as_ref().expect("ingest ran");
    assert!(ingest.complete, "{t}: ingest did not finish");
    assert_eq!(
        c.held.map(|h| h.held),
        Some(n),
        "{t}: billbox holds every record for the sink"
    );
    let drain = c.drain.as_ref().expect("drain ran");
    assert_eq!(drain.distinct, n, "{t}: the drain lost records");
    assert_eq!(drain.bad, 0, "{t}: the sink got records that were not sent");
    let kills = [("4a", &c.kill_down), ("4b", &c.kill_slow)]
        .map(|(fig, kill)| (fig.to_string(), *kill.as_ref().expect("SIGKILL ran")));
    let cuts = match &c.power_cuts {
        None => &[][..],
        Some(Ok(cuts)) => cuts,
        Some(Err(msg)) => panic!("{t}: figure 5 failed: {msg}"),
    };
    let cuts = cuts.iter().enumerate();
    for (fig, kill) in kills
        .into_iter()
        .chain(cuts.map(|(i, k)| (format!("5, cut {}", i + 1), *k)))
    {
        assert!(kill.ingest.complete, "{t}: {fig}: ingest did not finish");
        assert_eq!(
            kill.lost_of_taken, 0,
            "{t}: {fig}: records taken in were lost"
        );
        assert_eq!(
            kill.after.distinct, n,
            "{t}: {fig}: records lost across SIGKILL"
        );
        assert_eq!(
            kill.after.bad, 0,
            "{t}: {fig}: the sink got records that were not sent"
        );
    }
}

// ---------------------------------------------------------------------------
// The workload and the sink's tally.

/// Line i: its sequence number zero-padded to 10 digits, an SMDR-like tail,
/// 'x' up to 144 bytes, and "\n".
fn payload(n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n as usize * LINE);
    for i in 0..n {
        billbox_testkit::records::push_padded_record(&mut out, i, LINE, b"\n");
    }
    out
}

/// What the sink has received, by sequence number.
struct Tally {
    payload: Arc<Vec<u8>>,
    seen: Vec<bool>,
    distinct: u64,
    /// Lines that are a sent line, counting repeats.
    lines: u64,
    /// Lines (or packets) that are not a sent line byte for byte.
    bad: u64,
    first_new: Option<Instant>,
    last_new: Option<Instant>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Count {
    distinct: u64,
    lines: u64,
    bad: u64,
    first_new: Option<Instant>,
    last_new: Option<Instant>,
}

impl Tally {
    fn new(payload: &Arc<Vec<u8>>) -> Arc<Mutex<Tally>> {
        let n = payload.len() / LINE;
        Arc::new(Mutex::new(Tally {
            payload: payload.clone(),
            seen: vec![false; n],
            distinct: 0,
            lines: 0,
            bad: 0,
            first_new: None,
            last_new: None,
        }))
    }

    /// One received line, with or without its "\n".
    fn record(&mut self, line: &[u8], now: Instant) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let seq = line
            .get(..10)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok());
        match seq {
            Some(i)
                if i < self.seen.len() && self.payload[i * LINE..(i + 1) * LINE - 1] == *line =>
            {
                self.lines += 1;
                if !self.seen[i] {
                    self.seen[i] = true;
                    self.distinct += 1;
                    self.first_new.get_or_insert(now);
                    self.last_new = Some(now);
                }
            }
            _ => self.bad += 1,
        }
    }

    fn count(tally: &Mutex<Tally>) -> Count {
        let t = tally.lock().expect("tally lock");
        Count {
            distinct: t.distinct,
            lines: t.lines,
            bad: t.bad,
            first_new: t.first_new,
            last_new: t.last_new,
        }
    }
}

// ---------------------------------------------------------------------------
// The sinks: plain TCP lines (syslog-ng, rsyslog) and HTTP with billbox's
// XML packets and ack. Both count at receipt, before answering, and can
// be slowed to a rate in records/s.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Lines,
    Http,
}

enum Sink {
    Lines {
        stop: Arc<AtomicBool>,
        acceptor: Option<JoinHandle<()>>,
    },
    /// The test kit's HTTP server, answering through [`http_sink`]; it
    /// stops when dropped.
    Http(#[allow(dead_code)] HttpServer),
}

impl Sink {
    /// Listens on `port`; a `small_window` (a 4 KiB receive buffer) keeps
    /// what a slow sink has not read in the sender, not in the kernel.
    fn start(
        port: u16,
        proto: Proto,
        tally: &Arc<Mutex<Tally>>,
        rate: &Arc<AtomicU64>,
        small_window: bool,
    ) -> Sink {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let rcvbuf = small_window.then_some(4096);
        if proto == Proto::Http {
            let options = Options {
                rcvbuf,
                idle_timeout: None,
                read_buffer: 256 * 1024,
            };
            let (tally, rate) = (tally.clone(), rate.clone());
            let handler = Arc::new(move |r: &Served| http_sink(r, &tally, &rate));
            return Sink::Http(HttpServer::bind(addr, options, handler));
        }
        let listener = server::listen_retrying(addr, Duration::from_secs(4))
            .unwrap_or_else(|e| panic!("the sink cannot listen on port {port}: {e}"));
        if let Some(size) = rcvbuf {
            nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &size)
                .expect("SO_RCVBUF");
        }
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let (tally, rate, stop2) = (tally.clone(), rate.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_nodelay(true);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                        let (t, r, s) = (tally.clone(), rate.clone(), stop2.clone());
                        conns.push(thread::spawn(move || serve_lines(conn, &t, &r, &s)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
            drop(listener);
            for c in conns {
                let _ = c.join();
            }
        });
        Sink::Lines {
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::Lines { stop, acceptor } = self {
            stop.store(true, Ordering::Relaxed);
            if let Some(a) = acceptor.take() {
                let _ = a.join();
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Holds a slow sink back: `records` at the rate, cut short when the rate
/// becomes unlimited (0) or the sink stops.
fn throttle(rate: &AtomicU64, stopped: impl Fn() -> bool, records: u64) {
    let r = rate.load(Ordering::Relaxed);
    if r == 0 || records == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_secs_f64(records as f64 / r as f64);
    loop {
        let now = Instant::now();
        if now >= until || rate.load(Ordering::Relaxed) == 0 || stopped() {
            return;
        }
        thread::sleep((until - now).min(Duration::from_millis(5)));
    }
}

fn serve_lines(mut conn: TcpStream, tally: &Mutex<Tally>, rate: &AtomicU64, stop: &AtomicBool) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let r = rate.load(Ordering::Relaxed);
        let cap = if r > 0 { 8 * 1024 } else { buf.len() };
        let n = match conn.read(&mut buf[..cap]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let now = Instant::now();
        let mut lines = 0;
        let mut at = 0;
        {
            let mut t = tally.lock().expect("tally lock");
            while let Some(p) = pending[at..].iter().position(|&b| b == b'\n') {
                t.record(&pending[at..at + p], now);
                at += p + 1;
                lines += 1;
            }
        }
        pending.drain(..at);
        throttle(rate, || stop.load(Ordering::Relaxed), lines);
    }
    if !pending.is_empty() {
        tally.lock().expect("tally lock").bad += 1;
    }
}

/// One POST of billbox's: an ADD_CDR or ADD_CDR_BATCH packet in, an
/// RMTLOG_ACK (OK, 1) out; counted at receipt, before the answer.
fn http_sink(r: &Served, tally: &Mutex<Tally>, rate: &AtomicU64) -> Answer {
    if r.method != "POST" {
        return Answer::Close;
    }
    let now = Instant::now();
    let (status, records) = match billbox_wire::decode_packet(&r.body) {
        Ok(billbox_wire::Packet::Cdrs(cdrs)) => {
            let mut t = tally.lock().expect("tally lock");
            for c in &cdrs {
                t.record(&c.data, now);
            }
            (200, cdrs.len() as u64)
        }
        _ => {
            tally.lock().expect("tally lock").bad += 1;
            (400, 0)
        }
    };
    throttle(rate, || r.stopping(), records);
    Answer::Reply {
        status,
        body: billbox_wire::encode_ack(billbox_wire::AckValue::Ok, "127.0.0.1", 1),
    }
}

// ---------------------------------------------------------------------------
// The source: one TCP connection, everything written as fast as TCP takes
// it, then closed.

struct Sent {
    bytes: u64,
    done: Option<Instant>,
}

/// Connects, then writes from a thread; returns the instant just before the
/// first byte.
fn send(port: u16, payload: &Arc<Vec<u8>>, timeout: Duration) -> (Instant, JoinHandle<Sent>) {
    let mut conn = TcpPbx::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("the peer accepts the source");
    conn.stream()
        .set_write_timeout(Some(timeout))
        .expect("write timeout");
    let data = payload.clone();
    let t0 = Instant::now();
    let handle = thread::spawn(move || {
        let mut bytes = 0u64;
        for chunk in data.chunks(64 * 1024) {
            if conn.send(chunk).is_err() {
                return Sent { bytes, done: None };
            }
            bytes += chunk.len() as u64;
        }
        let _ = conn.stream().shutdown(std::net::Shutdown::Write);
        Sent {
            bytes,
            done: Some(Instant::now()),
        }
    });
    (t0, handle)
}

// ---------------------------------------------------------------------------
// The columns and their processes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Billbox(u32),
    SyslogNg { durable: bool },
    Rsyslog { durable: bool },
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Billbox(1),
        Kind::Billbox(500),
        Kind::SyslogNg { durable: true },
        Kind::SyslogNg { durable: false },
        Kind::Rsyslog { durable: true },
        Kind::Rsyslog { durable: false },
    ];

    fn key(self) -> &'static str {
        match self {
            Kind::Billbox(1) => "billbox-1",
            Kind::Billbox(_) => "billbox-500",
            Kind::SyslogNg { durable: true } => "syslog-ng-disk",
            Kind::SyslogNg { durable: false } => "syslog-ng-default",
            Kind::Rsyslog { durable: true } => "rsyslog-disk",
            Kind::Rsyslog { durable: false } => "rsyslog-default",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Billbox(1) => "billbox, batch_max 1",
            Kind::Billbox(_) => "billbox, batch_max 500",
            Kind::SyslogNg { durable: true } => "syslog-ng, reliable disk-buffer",
            Kind::SyslogNg { durable: false } => "syslog-ng, defaults",
            Kind::Rsyslog { durable: true } => "rsyslog, disk queue + sync",
            Kind::Rsyslog { durable: false } => "rsyslog, defaults",
        }
    }

    fn is_billbox(self) -> bool {
        matches!(self, Kind::Billbox(_))
    }

    fn proto(self) -> Proto {
        if self.is_billbox() {
            Proto::Http
        } else {
            Proto::Lines
        }
    }
}

/// A peer's program: where it is and how to run it.
#[derive(Clone, Debug)]
struct Exe {
    path: PathBuf,
    env: Vec<(String, PathBuf)>,
    args: Vec<String>,
    version: String,
}

fn first_line(mut cmd: Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn system_exe(name: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.is_file())
}

/// syslog-ng unpacked by compare.sh into `dir`, else the system's.
fn find_syslog_ng(dir: &Path) -> Option<Exe> {
    let local = dir.join("usr/sbin/syslog-ng");
    let (path, env, args) = if local.is_file() {
        let lib = dir.join("usr/lib/syslog-ng");
        let modules = fs::read_dir(&lib)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("libafsocket.so").is_file())?;
        (
            local,
            vec![("LD_LIBRARY_PATH".to_string(), lib)],
            vec![format!("--module-path={}", modules.display())],
        )
    } else {
        (system_exe("syslog-ng")?, Vec::new(), Vec::new())
    };
    let mut cmd = Command::new(&path);
    cmd.envs(env.iter().map(|(k, v)| (k, v))).arg("--version");
    let version = first_line(cmd).filter(|l| l.starts_with("syslog-ng"))?;
    Some(Exe {
        path,
        env,
        args,
        version,
    })
}

/// rsyslogd unpacked by compare.sh into `dir`, else the system's.
fn find_rsyslogd(dir: &Path) -> Option<Exe> {
    let local = dir.join("usr/sbin/rsyslogd");
    let (path, args) = if local.is_file() {
        let modules = fs::read_dir(dir.join("usr/lib"))
            .ok()?
            .flatten()
            .map(|e| e.path().join("rsyslog"))
            .find(|p| p.join("imtcp.so").is_file())?;
        (local, vec!["-M".to_string(), modules.display().to_string()])
    } else {
        (system_exe("rsyslogd")?, Vec::new())
    };
    let mut cmd = Command::new(&path);
    cmd.arg("-v");
    let version = first_line(cmd).filter(|l| l.starts_with("rsyslogd"))?;
    let version = version
        .split(" compiled")
        .next()
        .unwrap_or(&version)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some(Exe {
        path,
        env: Vec::new(),
        args,
        version,
    })
}

/// Ports picked free by the system, never the same one twice.
fn free_port(taken: &mut Vec<u16>) -> u16 {
    loop {
        let port = free_addr().port();
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}

/// Whether something listens on 127.0.0.1 (or any address) at `port`.
fn listening(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3
            && f[3] == "0A"
            && f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port)
    })
}

/// Bytes sent to `port` that the program behind it has not read yet: the
/// receive queues of its connections and the send queues of ours.
fn unread_bytes(port: u16) -> u64 {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return 0;
    };
    let port_of = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let mut bytes = 0;
    for l in table.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 5 || f[3] == "0A" {
            continue;
        }
        let Some((tx, rx)) = f[4].split_once(':') else {
            continue;
        };
        let hex = |v: &str| u64::from_str_radix(v, 16).unwrap_or(0);
        if port_of(f[1]) == Some(port) {
            bytes += hex(rx);
        }
        if port_of(f[2]) == Some(port) {
            bytes += hex(tx);
        }
    }
    bytes
}

/// A peer's own counters: records taken into its queue (`input`), held
/// for the sink now (`held`), and dropped by its queue (`dropped`).
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    input: u64,
    held: u64,
    dropped: u64,
}

#[derive(Default)]
struct ImpStats {
    offset: usize,
    values: HashMap<String, serde_json::Value>,
    seen_at: Option<Instant>,
}

/// One running column: its directory, ports and process. Killed on drop.
struct Peer {
    kind: Kind,
    exe: Option<Exe>,
    dir: tempfile::TempDir,
    in_port: u16,
    sink_port: u16,
    metrics_port: u16,
    child: Option<Child>,
    imp: ImpStats,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl Peer {
    /// A column with its queue and state directories (billbox: `data`
    /// and `spool`; syslog-ng: `buffer`; rsyslog: `work`) in `state`,
    /// made here, or in its own temporary directory. syslog-ng's persist
    /// file stays in the latter: syslog-ng maps it with `mmap(MAP_SHARED)`,
    /// which faultfs refuses (ENODEV), so it is never on figure 5's disk.
    fn new(kind: Kind, exe: Option<Exe>, records: u64, state: Option<&Path>) -> Peer {
        let mut taken = Vec::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let state = state.unwrap_or(d).to_path_buf();
        let dirs: &[&str] = match kind {
            Kind::Billbox(_) => &["data", "spool"],
            Kind::SyslogNg { durable: true } => &["buffer"],
            Kind::SyslogNg { durable: false } => &[],
            Kind::Rsyslog { .. } => &["work"],
        };
        for name in dirs {
            fs::create_dir_all(state.join(name)).expect("state dir");
        }
        let (in_port, sink_port, metrics_port) = (
            free_port(&mut taken),
            free_port(&mut taken),
            free_port(&mut taken),
        );
        let config = match kind {
            Kind::Billbox(batch) => format!(
                "[gateway]\nname = \"bench\"\ndata_dir = \"{data}\"\nspool_dir = \"{spool}\"\n\
                 [store]\nmax_records = {max}\n\
                 [[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:{in_port}\"\nbilling_eor = \"\\n\"\n\
                 billing_records = 1000\nbilling_timeout = \"1s\"\n\
                 [delivery]\nprimary = \"http://127.0.0.1:{sink_port}/billing\"\nbatch_max = {batch}\nretry_delay = \"1s\"\n\
                 [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
                data = state.join("data").display(),
                spool = state.join("spool").display(),
                max = (records * 2).max(1_000_000),
            ),
            Kind::SyslogNg { durable } => {
                let (buffer, flags) = if durable {
                    (
                        format!(
                            " disk-buffer(reliable(yes) disk-buf-size({}) dir(\"{}\"))",
                            (records * 1024).max(1 << 30),
                            state.join("buffer").display()
                        ),
                        " flags(flow-control);",
                    )
                } else {
                    (String::new(), "")
                };
                format!(
                    "@version: 3.38\n\
                     options {{ time-reopen(1); }};\n\
                     source s_in {{ network(ip(\"127.0.0.1\") port({in_port}) transport(\"tcp\") flags(no-parse)); }};\n\
                     destination d_out {{ network(\"127.0.0.1\" port({sink_port}) transport(\"tcp\") template(\"$MSG\\n\"){buffer}); }};\n\
                     log {{ source(s_in); destination(d_out);{flags} }};\n"
                )
            }
            Kind::Rsyslog { durable } => {
                let (main_queue, queue) = if durable {
                    (
                        "main_queue(queue.type=\"Direct\")\n",
                        format!(
                            "\n    queue.type=\"Disk\" queue.filename=\"outq\" queue.syncQueueFiles=\"on\" \
                             queue.checkpointInterval=\"1\" queue.size=\"{}\" queue.maxDiskSpace=\"{}\" \
                             queue.saveOnShutdown=\"on\" action.resumeRetryCount=\"-1\"",
                            records * 2 + 10_000,
                            (records * 1024).max(1 << 30)
                        ),
                    )
                } else {
                    ("", String::new())
                };
                format!(
                    "global(workDirectory=\"{work}\")\n\
                     {main_queue}\
                     module(load=\"imtcp\")\n\
                     module(load=\"impstats\" interval=\"1\" format=\"json\" log.syslog=\"off\" log.file=\"{stats}\")\n\
                     template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
                     ruleset(name=\"fwd\") {{\n  action(type=\"omfwd\" name=\"out\" target=\"127.0.0.1\" port=\"{sink_port}\" \
                     protocol=\"tcp\" template=\"raw\" action.resumeInterval=\"1\" action.resumeIntervalMax=\"1\"{queue})\n}}\n\
                     input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{in_port}\" ruleset=\"fwd\" supportOctetCountedFraming=\"off\")\n",
                    work = state.join("work").display(),
                    stats = d.join("stats.json").display(),
                )
            }
        };
        fs::write(d.join("config"), config).expect("config written");
        Peer {
            kind,
            exe,
            dir,
            in_port,
            sink_port,
            metrics_port,
            child: None,
            imp: ImpStats::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_tail(&self) -> String {
        let log = fs::read(self.path("log.txt")).unwrap_or_default();
        let from = log.len().saturating_sub(3000);
        String::from_utf8_lossy(&log[from..]).into_owned()
    }

    /// Starts the process (again, on the same directories after a kill) and
    /// waits until it listens.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("log.txt"))
            .expect("log file");
        let mut cmd = match (self.kind, &self.exe) {
            (Kind::Billbox(_), _) => {
                let mut c = Command::new(bin());
                c.arg("run")
                    .arg("--config")
                    .arg(self.path("config"))
                    .args(["--log-format", "json"]);
                for (k, _) in std::env::vars_os() {
                    if k.to_string_lossy().starts_with("BILLBOX") {
                        c.env_remove(k);
                    }
                }
                c
            }
            (Kind::SyslogNg { .. }, Some(exe)) => {
                let _ = fs::remove_file(self.path("pid"));
                let _ = fs::remove_file(self.path("ctl"));
                let mut c = Command::new(&exe.path);
                c.envs(exe.env.iter().map(|(k, v)| (k, v)))
                    .args(&exe.args)
                    .args(["--foreground", "--stderr", "--no-caps"])
                    .arg(format!("--cfgfile={}", self.path("config").display()))
                    .arg(format!("--persist-file={}", self.path("persist").display()))
                    .arg(format!("--pidfile={}", self.path("pid").display()))
                    .arg(format!("--control={}", self.path("ctl").display()));
                c
            }
            (Kind::Rsyslog { .. }, Some(exe)) => {
                let _ = fs::remove_file(self.path("pid"));
                let mut c = Command::new(&exe.path);
                c.args(&exe.args)
                    .arg("-n")
                    .arg("-f")
                    .arg(self.path("config"))
                    .arg("-i")
                    .arg(self.path("pid"));
                c
            }
            _ => unreachable!("peers have a program"),
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e}", self.kind.title())),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.as_mut().expect("child").try_wait() {
                self.child = None;
                panic!(
                    "{} exited at start ({status}):\n{}",
                    self.kind.title(),
                    self.log_tail()
                );
            }
            let ready = listening(self.in_port)
                && match self.kind {
                    Kind::Billbox(_) => listening(self.metrics_port),
                    Kind::SyslogNg { .. } => self.path("ctl").exists(),
                    _ => true,
                };
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen within 60 s:\n{}",
                self.kind.title(),
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill9(&mut self) {
        self.kill9_then(|| {});
    }

    /// SIGKILL, then `meanwhile` (figure 5's power cut: a process blocked
    /// on the frozen disk dies only once the cut answers it), then waits
    /// for the exit.
    fn kill9_then(&mut self, meanwhile: impl FnOnce()) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            meanwhile();
            let _ = c.wait();
        }
    }

    /// SIGTERM by pid, then SIGKILL if it is still running after 20 s.
    fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        println!(
            "  {} did not stop within 20 s of SIGTERM; killed",
            self.kind.title()
        );
        self.kill9();
    }

    /// The peer's own counters and the instant they are as of, or None when
    /// they cannot be read now.
    fn stats(&mut self) -> Option<(Instant, Stats)> {
        match self.kind {
            Kind::Billbox(_) => {
                let page = http_get(self.metrics_port, "/metrics")?;
                let at = Instant::now();
                let mut s = Stats::default();
                let mut found = false;
                for l in page.lines().filter(|l| !l.starts_with('#')) {
                    let Some((name, value)) = l.rsplit_once(' ') else {
                        continue;
                    };
                    let v = value.parse::<f64>().unwrap_or(0.0) as u64;
                    if name.starts_with("billbox_port_committed_sequence") {
                        s.input += v;
                        found = true;
                    } else if name.starts_with("billbox_backlog_records")
                        && name.contains("destination=\"delivery\"")
                    {
                        s.held += v;
                    } else if name.starts_with("billbox_records_dropped_total") {
                        s.dropped += v;
                    }
                }
                found.then_some((at, s))
            }
            Kind::SyslogNg { .. } => {
                let text = ctl_stats(&self.path("ctl"))?;
                let at = Instant::now();
                let mut s = Stats::default();
                let mut found = false;
                for l in text.lines().filter(|l| l.starts_with("dst.network;")) {
                    let f: Vec<&str> = l.split(';').collect();
                    if f.len() < 6 {
                        continue;
                    }
                    let v: u64 = f[5].trim().parse().unwrap_or(0);
                    match f[4] {
                        "processed" => {
                            s.input += v;
                            found = true;
                        }
                        "queued" => s.held += v,
                        "dropped" => s.dropped += v,
                        _ => {}
                    }
                }
                found.then_some((at, s))
            }
            Kind::Rsyslog { durable } => {
                let text = fs::read(self.path("stats.json")).ok()?;
                if text.len() > self.imp.offset {
                    let fresh = &text[self.imp.offset..];
                    let end = fresh.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                    for l in String::from_utf8_lossy(&fresh[..end]).lines() {
                        let Some(at) = l.find('{') else { continue };
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l[at..]) {
                            if let Some(name) = v["name"].as_str() {
                                self.imp.values.insert(name.to_string(), v.clone());
                            }
                        }
                    }
                    if end > 0 {
                        self.imp.offset += end;
                        self.imp.seen_at = Some(Instant::now());
                    }
                }
                let q = self
                    .imp
                    .values
                    .get(if durable { "out queue" } else { "main Q" })?;
                let n = |k: &str| q[k].as_u64().unwrap_or(0);
                Some((
                    self.imp.seen_at?,
                    Stats {
                        input: n("enqueued"),
                        held: n("size"),
                        dropped: n("discarded.full") + n("discarded.nf"),
                    },
                ))
            }
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let answer = billbox_testkit::http::request(addr, "GET", path, &[], b"").ok()?;
    Some(answer.text())
}

/// syslog-ng's control socket: `STATS`, answered with CSV lines and ".".
fn ctl_stats(path: &Path) -> Option<String> {
    let mut c = std::os::unix::net::UnixStream::connect(path).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(b"STATS\n").ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.ends_with(b"\n.\n") {
                    break;
                }
            }
            Err(_) => return None,
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------
// The waits and the five figures.

/// Records that reached the sink during one wait.
#[derive(Clone, Copy, Debug, Default)]
struct Delivery {
    distinct: u64,
    lines: u64,
    bad: u64,
    /// From the start of the wait to the first new distinct record.
    first_secs: Option<f64>,
    /// From the start of the wait to the last new distinct record.
    secs: f64,
    timed_out: bool,
}

/// Waits until the sink has `want` distinct records, or nothing new for
/// `stall`, or `timeout` from `start`.
fn wait_delivery(tally: &Mutex<Tally>, start: Instant, want: u64, s: &Settings) -> Delivery {
    loop {
        let c = Tally::count(tally);
        let now = Instant::now();
        let quiet_since = c.last_new.map_or(start, |t| t.max(start));
        let timed_out = now >= start + s.timeout;
        if c.distinct >= want || timed_out || now.duration_since(quiet_since) >= s.stall {
            return Delivery {
                distinct: c.distinct,
                lines: c.lines,
                bad: c.bad,
                first_secs: c
                    .first_new
                    .filter(|t| *t >= start)
                    .map(|t| t.duration_since(start).as_secs_f64()),
                secs: c
                    .last_new
                    .map_or(0.0, |t| t.saturating_duration_since(start).as_secs_f64()),
                timed_out: timed_out && c.distinct < want,
            };
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Ingest {
    /// Records the peer counted as taken in.
    input: u64,
    /// From the first byte sent to when the count was reached: the later of
    /// the last reading of the counter below the count and the last moment
    /// the peer still had bytes to read (or, on timeout, to the last increase).
    secs: f64,
    /// To the first reading at or above the count: `secs` is at most this.
    upper_secs: f64,
    complete: bool,
}

/// Reads the peer's counters until it has taken `want` records in.
fn wait_ingest(
    peer: &mut Peer,
    t0: Instant,
    sender: &JoinHandle<Sent>,
    want: u64,
    s: &Settings,
) -> Ingest {
    let deadline = t0 + s.timeout;
    let mut below = t0;
    let mut unread_at = t0;
    let mut last_increase = (t0, 0u64);
    loop {
        let now = Instant::now();
        if !sender.is_finished() || unread_bytes(peer.in_port) > 0 {
            unread_at = now;
        }
        if let Some((at, st)) = peer.stats() {
            if st.input >= want {
                return Ingest {
                    input: st.input,
                    secs: below.max(unread_at).duration_since(t0).as_secs_f64(),
                    upper_secs: at.saturating_duration_since(t0).as_secs_f64(),
                    complete: true,
                };
            }
            below = below.max(at);
            if st.input > last_increase.1 {
                last_increase = (at, st.input);
            }
        }
        if now >= deadline {
            let secs = last_increase.0.duration_since(t0).as_secs_f64();
            return Ingest {
                input: last_increase.1,
                secs,
                upper_secs: secs,
                complete: false,
            };
        }
        thread::sleep(POLL);
    }
}

/// The counters once they have settled: a reading at least 0.3 s after
/// `after` (1.1 s for rsyslog, which publishes once a second), within 10 s.
fn settled_stats(peer: &mut Peer, after: Instant) -> Option<Stats> {
    let settle = match peer.kind {
        Kind::Rsyslog { .. } => Duration::from_millis(1100),
        _ => Duration::from_millis(300),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((at, st)) = peer.stats() {
            last = Some(st);
            if at >= after + settle {
                return last;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    last
}

#[derive(Clone, Copy, Debug, Default)]
struct Kill {
    ingest: Ingest,
    /// The peer's counters just before SIGKILL.
    at_kill: Option<Stats>,
    /// At the sink before the kill.
    before: Count,
    /// At the sink at the end.
    after: Delivery,
    /// The records the peer had taken in before the kill (the first ones).
    taken: u64,
    /// Of those, how many never reached the sink.
    lost_of_taken: u64,
}

struct Column {
    kind: Kind,
    e2e: Option<Delivery>,
    ingest: Option<Ingest>,
    held: Option<Stats>,
    drain: Option<Delivery>,
    kill_down: Option<Kill>,
    kill_slow: Option<Kill>,
    /// Figure 5, a `Kill` a cut, or why it failed; `None`: not run.
    power_cuts: Option<Result<Vec<Kill>, String>>,
    failed: Option<String>,
}

impl Column {
    fn new(kind: Kind) -> Column {
        Column {
            kind,
            e2e: None,
            ingest: None,
            held: None,
            drain: None,
            kill_down: None,
            kill_slow: None,
            power_cuts: None,
            failed: None,
        }
    }
}

fn join_sender(h: JoinHandle<Sent>) -> Sent {
    h.join().unwrap_or(Sent {
        bytes: 0,
        done: None,
    })
}

/// Runs figures 1 to 4 and, with `power_cuts`, 5.
fn run_column(
    kind: Kind,
    exe: Option<Exe>,
    s: &Settings,
    payload: &Arc<Vec<u8>>,
    power_cuts: bool,
) -> Column {
    let n = s.records;
    let mut col = Column::new(kind);

    // 1. End to end, sink up.
    {
        let tally = Tally::new(payload);
        let rate = Arc::new(AtomicU64::new(0));
        let mut peer = Peer::new(kind, exe.clone(), n, None);
        let _sink = Sink::start(peer.sink_port, kind.proto(), &tally, &rate, false);
        peer.spawn();
        let (t0, sender) = send(peer.in_port, payload, s.timeout);
        let d = wait_delivery(&tally, t0, n, s);
        let sent = join_or_kill(&mut peer, sender);
        println!(
            "  1. end to end: {} of {} distinct in {:.3} s = {} records/s (lines {}, bad {}, sent {} bytes{}{})",
            fmt_n(d.distinct),
            fmt_n(n),
            d.secs,
            fmt_rate(d.distinct, d.secs),
            fmt_n(d.lines),
            d.bad,
            fmt_n(sent.bytes),
            sent.done.map_or(String::new(), |t| format!(
                " in {:.3} s",
                t.saturating_duration_since(t0).as_secs_f64()
            )),
            if d.timed_out { ", timed out" } else { "" }
        );
        if d.distinct == 0 {
            println!(
                "  WARNING: {} forwarded nothing; its figures mean nothing",
                kind.title()
            );
        }
        peer.stop();
        col.e2e = Some(d);
    }

    // 2. Ingest with the sink down, then 3. drain.
    {
        let tally = Tally::new(payload);
        let rate = Arc::new(AtomicU64::new(0));
        let mut peer = Peer::new(kind, exe.clone(), n, None);
        peer.spawn();
        let (t0, sender) = send(peer.in_port, payload, s.timeout);
        let ingest = wait_ingest(&mut peer, t0, &sender, n, s);
        let held = settled_stats(&mut peer, t0 + Duration::from_secs_f64(ingest.upper_secs));
        println!(
            "  2. ingest, sink down: {} taken in, in {:.3} s (counter seen at {:.3} s) = {} records/s{}; \
             settled: taken in {}, held for the sink {}, dropped by its own count {}",
            fmt_n(ingest.input),
            ingest.secs,
            ingest.upper_secs,
            fmt_rate(ingest.input, ingest.secs),
            if ingest.complete { "" } else { " (timed out)" },
            held.map_or("?".into(), |h| fmt_n(h.input)),
            held.map_or("?".into(), |h| fmt_n(h.held)),
            held.map_or("?".into(), |h| fmt_n(h.dropped)),
        );
        let t1 = Instant::now();
        let _sink = Sink::start(peer.sink_port, kind.proto(), &tally, &rate, false);
        let d = wait_delivery(&tally, t1, n, s);
        let _ = join_or_kill(&mut peer, sender);
        println!(
            "  3. drain: {} distinct in {:.3} s = {} records/s, the first after {} s (lines {}, bad {}{})",
            fmt_n(d.distinct),
            d.secs,
            fmt_rate(d.distinct, d.secs),
            d.first_secs.map_or("-".into(), |f| format!("{f:.3}")),
            fmt_n(d.lines),
            d.bad,
            if d.timed_out { ", timed out" } else { "" }
        );
        peer.stop();
        col.ingest = Some(ingest);
        col.held = held;
        col.drain = Some(d);
    }

    // 4. SIGKILL with a backlog: a. the sink down, b. the sink slow.
    let sigkill = |fig, slow| kill_test(kind, exe.clone(), s, payload, fig, slow, None);
    col.kill_down = Some(sigkill("4a. SIGKILL, sink down", false));
    col.kill_slow = Some(sigkill("4b. SIGKILL, sink slow", true));

    // 5. Power cut with a backlog: 4a with the power cut after the SIGKILL.
    // A peer that cannot run on the disk keeps its figures 1 to 4.
    if power_cuts {
        let cuts = caught(|| {
            let disk = Disk::mount();
            (1..=s.cuts)
                .map(|i| {
                    let fig = format!("5. power cut {i} of {}, sink down", s.cuts);
                    kill_test(kind, exe.clone(), s, payload, &fig, false, Some(&disk))
                })
                .collect()
        });
        if let Err(msg) = &cuts {
            println!("  FAILED: 5. power cut: {msg}");
        }
        col.power_cuts = Some(cuts);
    }
    col
}

/// Figure 5's disk: a faultfs mount (a disk with a volatile write cache)
/// that holds the peer's queue and state directories, new ones each cut.
struct Disk {
    // Unmounted before its directory goes.
    fs: FaultFs,
    control: Control,
    cuts: AtomicU64,
    _dir: tempfile::TempDir,
}

impl Disk {
    fn mount() -> Disk {
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).expect("mount point");
        let fs = FaultFs::mount(&dir.path().join("backing"), &mnt)
            .unwrap_or_else(|e| panic!("faultfs does not mount: {e}"));
        Disk {
            control: fs.control(),
            fs,
            cuts: AtomicU64::new(0),
            _dir: dir,
        }
    }

    /// A new directory on the mount for the next cut's peer.
    fn next_dir(&self) -> PathBuf {
        let i = self.cuts.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = self.fs.path().join(format!("cut-{i}"));
        fs::create_dir(&dir).expect("a directory on faultfs");
        dir
    }
}

/// Figure 4: the peer takes every record in while the sink is down
/// (`slow` false: everything waits in the peer) or reads slowly (`slow`
/// true: some is delivered, some in flight), is killed with SIGKILL,
/// restarts on the same directories, and the sink reads at full speed
/// until nothing new arrives. Figure 5 (`disk`): the peer's directories
/// are on the faultfs disk, made durable before it starts; the disk
/// freezes before the SIGKILL and the power is cut (every unsynced write
/// and directory change dropped) before the restart.
fn kill_test(
    kind: Kind,
    exe: Option<Exe>,
    s: &Settings,
    payload: &Arc<Vec<u8>>,
    fig: &str,
    slow: bool,
    disk: Option<&Disk>,
) -> Kill {
    let n = s.records;
    let tally = Tally::new(payload);
    let rate = Arc::new(AtomicU64::new(s.slow_rate));
    let mut peer = Peer::new(kind, exe, n, disk.map(Disk::next_dir).as_deref());
    let disk = disk.map(|d| {
        // A known starting point: the new directories are on the disk.
        d.control.sync();
        (d, d.control.stats())
    });
    let mut sink = slow.then(|| Sink::start(peer.sink_port, kind.proto(), &tally, &rate, true));
    peer.spawn();
    let (t0, sender) = send(peer.in_port, payload, s.timeout);
    let ingest = wait_ingest(&mut peer, t0, &sender, n, s);
    let at_kill = peer.stats().map(|(_, st)| st);
    let before = Tally::count(&tally);
    let mut power_cut = String::new();
    match disk {
        Some((d, start)) => {
            // Power lost now: requests that read or change data are held.
            d.control.freeze();
            let on_disk = d.control.stats();
            peer.kill9_then(|| {
                let cut = d.control.cut(Cut::All);
                power_cut = format!(
                    "; on the disk until the cut: {} writes, {} fsync, {} fdatasync, {} directory fsync, \
                     {} renames; the cut dropped {} writes ({} bytes), {} size changes, {} directory changes",
                    fmt_n(on_disk.writes - start.writes),
                    fmt_n(on_disk.fsyncs - start.fsyncs),
                    fmt_n(on_disk.fdatasyncs - start.fdatasyncs),
                    fmt_n(on_disk.fsyncdirs - start.fsyncdirs),
                    fmt_n(on_disk.renames - start.renames),
                    fmt_n(cut.writes_dropped),
                    fmt_n(cut.bytes_dropped),
                    fmt_n(cut.size_changes_dropped),
                    fmt_n(cut.namespace_ops_dropped),
                );
            });
        }
        None => peer.kill9(),
    }
    let _ = join_sender(sender);
    rate.store(0, Ordering::Relaxed);
    peer.spawn();
    let t1 = Instant::now();
    if sink.is_none() {
        sink = Some(Sink::start(
            peer.sink_port,
            kind.proto(),
            &tally,
            &rate,
            false,
        ));
    }
    let after = wait_delivery(&tally, t1, n, s);
    // Records arrive in order, so the peer had taken in the first
    // `ingest.input` records.
    let taken = ingest.input.min(n);
    let kept = tally.lock().expect("tally lock").seen[..taken as usize]
        .iter()
        .filter(|&&b| b)
        .count() as u64;
    let k = Kill {
        ingest,
        at_kill,
        before,
        after,
        taken,
        lost_of_taken: taken - kept,
    };
    println!(
        "  {fig}: taken in {}{}; at the kill: delivered {}, held {}, dropped {}; \
         in the end {} distinct: lost {} of {} taken in, lost {} of {} sent, duplicates {}, bad {}{}{power_cut}",
        fmt_n(ingest.input),
        if ingest.complete {
            ""
        } else {
            " (ingest timed out)"
        },
        fmt_n(before.distinct),
        at_kill.map_or("?".into(), |a| fmt_n(a.held)),
        at_kill.map_or("?".into(), |a| fmt_n(a.dropped)),
        fmt_n(after.distinct),
        fmt_n(k.lost_of_taken),
        fmt_n(taken),
        fmt_n(n - after.distinct),
        fmt_n(n),
        fmt_n(after.lines - after.distinct),
        after.bad,
        if after.timed_out { " (timed out)" } else { "" }
    );
    peer.stop();
    drop(sink);
    k
}

/// Waits for the source to finish writing; a source still blocked after
/// the figure (the peer stopped reading) ends when the peer is stopped.
fn join_or_kill(peer: &mut Peer, h: JoinHandle<Sent>) -> Sent {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    if !h.is_finished() {
        peer.kill9();
    }
    join_sender(h)
}

// ---------------------------------------------------------------------------
// The tables.

fn fmt_n(n: u64) -> String {
    billbox_status::snapshot::number(n)
}

fn rate(n: u64, secs: f64) -> Option<f64> {
    (n > 0 && secs > 0.0).then(|| n as f64 / secs)
}

fn fmt_rate(n: u64, secs: f64) -> String {
    rate(n, secs).map_or("-".into(), |r| fmt_n(r.round() as u64))
}

/// A rate figure of a column.
type RateOf = fn(&Column) -> Option<f64>;
/// A cell of figure 5 from a column's cuts.
type CutsCell = fn(&[Kill]) -> String;

fn e2e_rate(c: &Column) -> Option<f64> {
    c.e2e.and_then(|d| rate(d.distinct, d.secs))
}
fn ingest_rate(c: &Column) -> Option<f64> {
    c.ingest.and_then(|i| rate(i.input, i.secs))
}
fn kill_down(c: &Column) -> Option<Kill> {
    c.kill_down
}
fn kill_slow(c: &Column) -> Option<Kill> {
    c.kill_slow
}
/// The drain without the wait for the peer's next reconnection attempt.
fn drain_flow_rate(c: &Column) -> Option<f64> {
    c.drain
        .and_then(|d| rate(d.distinct, d.secs - d.first_secs?))
}
fn drain_rate(c: &Column) -> Option<f64> {
    c.drain.and_then(|d| rate(d.distinct, d.secs))
}

/// One cell of figure 5: each cut's value, in order.
fn per_cut(cuts: &[Kill], cell: fn(&Kill) -> String) -> String {
    cuts.iter().map(cell).collect::<Vec<_>>().join(", ")
}

fn delivery_cell(d: &Option<Delivery>, n: u64) -> String {
    match d {
        None => "-".into(),
        Some(d) => {
            let mut cell = fmt_rate(d.distinct, d.secs);
            if d.distinct < n {
                cell += &format!(
                    " ({} of {}{})",
                    fmt_n(d.distinct),
                    fmt_n(n),
                    if d.timed_out { ", timeout" } else { "" }
                );
            }
            cell
        }
    }
}

fn print_tables(columns: &[Column], n: u64) {
    if columns.is_empty() {
        return;
    }
    let mut head = String::from("| figure |");
    let mut rule = String::from("|---|");
    for c in columns {
        head += &format!(" {} |", c.kind.title());
        rule += "---|";
    }
    let row = |name: &str, cell: &dyn Fn(&Column) -> String| {
        let mut r = format!("| {name} |");
        for c in columns {
            let v = if c.failed.is_some() {
                "failed".to_string()
            } else {
                cell(c)
            };
            r += &format!(" {v} |");
        }
        r
    };
    println!("\n{head}\n{rule}");
    println!(
        "{}",
        row("1. end to end, records/s", &|c| delivery_cell(&c.e2e, n))
    );
    println!(
        "{}",
        row("2. ingest, sink down, records/s", &|c| match c.ingest {
            None => "-".into(),
            Some(i) if i.complete => fmt_rate(i.input, i.secs),
            Some(i) => format!(
                "{} ({} of {}, timeout)",
                fmt_rate(i.input, i.secs),
                fmt_n(i.input),
                fmt_n(n)
            ),
        })
    );
    println!(
        "{}",
        row(
            "   held for the sink after 2, of taken in",
            &|c| match c.held {
                None => "-".into(),
                Some(h) => format!("{} of {}", fmt_n(h.held), fmt_n(h.input)),
            }
        )
    );
    println!(
        "{}",
        row("3. drain, records/s", &|c| {
            let mut cell = delivery_cell(&c.drain, n);
            if c.ingest.is_some_and(|i| !i.complete) {
                cell += " (ingest went on)";
            }
            cell
        })
    );
    println!(
        "{}",
        row("   first record after the sink came up, s", &|c| c
            .drain
            .and_then(|d| d.first_secs)
            .map_or("-".into(), |f| format!("{f:.2}")))
    );
    println!(
        "{}",
        row("   drain from the first record, records/s", &|c| {
            drain_flow_rate(c).map_or("-".into(), |r| fmt_n(r.round() as u64))
        })
    );
    for (name, get) in [
        (
            "4a. SIGKILL, sink down: lost of taken in",
            kill_down as fn(&Column) -> Option<Kill>,
        ),
        ("4b. SIGKILL, sink slow: lost of taken in", kill_slow),
    ] {
        println!(
            "{}",
            row(name, &|c| get(c).map_or("-".into(), |k| {
                let mut cell = format!("{} of {}", fmt_n(k.lost_of_taken), fmt_n(k.taken));
                if k.after.timed_out {
                    cell += " (timeout)";
                }
                cell
            }))
        );
        println!(
            "{}",
            row("   duplicates", &|c| get(c).map_or("-".into(), |k| fmt_n(
                k.after.lines - k.after.distinct
            )))
        );
    }
    println!(
        "{}",
        row("   4b. delivered / held by the peer when killed", &|c| c
            .kill_slow
            .map_or("-".into(), |k| format!(
                "{} / {}",
                fmt_n(k.before.distinct),
                k.at_kill.map_or("?".into(), |a| fmt_n(a.held))
            )))
    );
    let cut_rows: [(&str, CutsCell); 5] = [
        ("5. power cut, sink down: cuts", |k| fmt_n(k.len() as u64)),
        ("   taken in, per cut", |k| {
            per_cut(k, |k| {
                fmt_n(k.taken) + if k.ingest.complete { "" } else { " (timeout)" }
            })
        }),
        ("   lost of taken in, per cut", |k| {
            per_cut(k, |k| {
                fmt_n(k.lost_of_taken) + if k.after.timed_out { " (timeout)" } else { "" }
            })
        }),
        ("   lost of taken in, total", |k| {
            let sum = |f: fn(&Kill) -> u64| k.iter().map(f).sum::<u64>();
            format!(
                "{} of {}",
                fmt_n(sum(|k| k.lost_of_taken)),
                fmt_n(sum(|k| k.taken))
            )
        }),
        ("   duplicates, total", |k| {
            fmt_n(k.iter().map(|k| k.after.lines - k.after.distinct).sum())
        }),
    ];
    for (name, cell) in cut_rows {
        println!(
            "{}",
            row(
                name,
                &|c| match c.power_cuts.as_ref().map(Result::as_deref) {
                    None => "-".into(),
                    Some(Ok(cuts)) => cell(cuts),
                    Some(Err(_)) => "failed".into(),
                }
            )
        );
    }

    let billboxes: Vec<&Column> = columns.iter().filter(|c| c.kind.is_billbox()).collect();
    let peers: Vec<&Column> = columns.iter().filter(|c| !c.kind.is_billbox()).collect();
    if billboxes.is_empty() || peers.is_empty() {
        return;
    }
    let mut head = String::from("| billbox / peer |");
    let mut rule = String::from("|---|");
    for p in &peers {
        head += &format!(" {} |", p.kind.title());
        rule += "---|";
    }
    println!("\n{head}\n{rule}");
    let figures: [(&str, RateOf); 4] = [
        ("1. end to end", e2e_rate),
        ("2. ingest", ingest_rate),
        ("3. drain", drain_rate),
        ("3. drain from the first record", drain_flow_rate),
    ];
    for (name, f) in figures {
        for b in &billboxes {
            let mut r = format!("| {name}, {} |", b.kind.title());
            for p in &peers {
                let v = match (f(b), f(p)) {
                    (Some(x), Some(y)) => format!("{:.2}", x / y),
                    _ => "-".into(),
                };
                r += &format!(" {v} |");
            }
            println!("{r}");
        }
    }
    println!(
        "\nRatios above 1: billbox is faster. Ingest counts what each took in; \
         the held row says what each kept for the sink."
    );
}
