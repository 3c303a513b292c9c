//! The harness of the crash and power-cut suites: a steady stream of
//! numbered records from a serial PBX (a pty) and a TCP PBX, and the checks
//! once billbox has drained: every flushed record in exactly one file and at
//! the receiver, in sequence order, with no sequence reused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pbx::{Format, Link, PtyPbx, TcpPbx};
use crate::receiver::Receiver;
use crate::{wait_until, Billbox, Site};

/// A small deterministic PRNG (xorshift), seeded per run and printed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the environment variable `var` when set, else from the
    /// clock; the seed is printed so a failing run can be repeated.
    pub fn from_env(var: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{var}={seed}");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// Record `n` of a stream in `format` (its time is derived from `n`).
pub fn numbered(format: Format, n: u64) -> Vec<u8> {
    let at = chrono::DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap();
    format.record(n, at)
}

/// The ports of the stream: `serial` (alias `SER`, Panasonic over the pty)
/// and `tcp` (alias `TCP`, Avaya over TCP to `tcp_addr`), 30 records a file.
pub fn ports_toml(pty: &Path, tcp_addr: SocketAddr) -> String {
    format!(
        r#"
[[ports]]
name = "serial"
device = "{}"
alias = "SER"
billing_eor = "\r\n"
billing_records = 30
billing_timeout = "1s"

[[ports]]
name = "tcp"
listen = "{tcp_addr}"
alias = "TCP"
billing_eor = "\r\n"
billing_records = 30
billing_timeout = "1s"
"#,
        pty.display()
    )
}

/// A site's config for the stream's ports, delivering to `receiver`
/// (`billbox receive`) with short retries and small batches.
pub fn site_config(
    site: &Site,
    pty: &Path,
    tcp_addr: SocketAddr,
    receiver: SocketAddr,
) -> std::path::PathBuf {
    site.config(&format!(
        "{}\n[delivery]\nprimary = \"http://{receiver}/billing\"\nretry_delay = \"50ms\"\nrequest_timeout = \"2s\"\nbatch_max = 5\n",
        ports_toml(pty, tcp_addr),
    ))
}

/// The harness a crash or power-cut test runs: a durable receiver filing
/// under `<site>/received`, the site's config for the stream's ports, and
/// the [`Stream`] feeding them.
pub struct Rig {
    pub received: std::path::PathBuf,
    pub receiver: Receiver,
    pub config: std::path::PathBuf,
    pub feed: Stream,
}

impl Rig {
    pub fn start(site: &Site) -> Rig {
        let received = site.dir.path().join("received");
        std::fs::create_dir_all(&received).unwrap();
        let receiver = Receiver::start_in(&received, true, &[]);
        let pty = PtyPbx::open().unwrap();
        let tcp_addr = crate::free_addr();
        let config = site_config(site, pty.path(), tcp_addr, receiver.addr);
        Rig {
            received,
            receiver,
            config,
            feed: Stream::start(pty, tcp_addr),
        }
    }
}

/// The feeders: the serial PBX writes into its pty (bytes wait in the
/// terminal while billbox is down); the TCP PBX reconnects after each kill
/// and goes on with the next record. One record every 3 ms on each.
pub struct Stream {
    stop: Arc<AtomicBool>,
    serial_sent: Arc<AtomicU64>,
    tcp_sent: Arc<AtomicU64>,
    serial: JoinHandle<PtyPbx>,
    tcp: JoinHandle<()>,
}

/// What a stopped [`Stream`] sent.
pub struct Sent {
    pub serial: u64,
    pub tcp: u64,
    /// Kept open: closing it would end the serial link.
    pub pty: PtyPbx,
}

impl Stream {
    pub fn start(mut pty: PtyPbx, tcp_addr: SocketAddr) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let serial_sent = Arc::new(AtomicU64::new(0));
        let tcp_sent = Arc::new(AtomicU64::new(0));
        let serial = {
            let (stop, sent) = (stop.clone(), serial_sent.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    pty.send(&numbered(Format::Panasonic, n)).unwrap();
                    sent.store(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(3));
                }
                pty
            })
        };
        let tcp = {
            let (stop, sent) = (stop.clone(), tcp_sent.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                let mut conn: Option<TcpPbx> = None;
                while !stop.load(Ordering::SeqCst) {
                    if conn.is_none() {
                        conn = TcpPbx::connect(tcp_addr).ok();
                        if conn.is_none() {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    }
                    n += 1;
                    let record = numbered(Format::AvayaIpOffice, n);
                    if conn.as_mut().unwrap().send(&record).is_err() {
                        conn = None;
                    }
                    sent.store(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        };
        Stream {
            stop,
            serial_sent,
            tcp_sent,
            serial,
            tcp,
        }
    }

    pub fn stop(self) -> Sent {
        self.stop.store(true, Ordering::SeqCst);
        let pty = self.serial.join().unwrap();
        self.tcp.join().unwrap();
        Sent {
            serial: self.serial_sent.load(Ordering::SeqCst),
            tcp: self.tcp_sent.load(Ordering::SeqCst),
            pty,
        }
    }
}

/// How many record lines the receiver filed for the stream's ports.
fn received_count(received: &Path) -> usize {
    ["serial", "tcp"]
        .iter()
        .map(|p| {
            std::fs::read_to_string(received.join("gw-test").join(format!("{p}.ids")))
                .map_or(0, |s| s.lines().count())
        })
        .sum()
}

/// Waits until the running billbox has filed the last serial record, held
/// every TCP record, closed its files and stopped delivering, then stops it
/// with SIGTERM (exit 0).
pub fn drain(bb: Billbox, site: &Site, received: &Path, sent: &Sent) {
    let last_serial = numbered(Format::Panasonic, sent.serial);
    wait_until(Duration::from_secs(120), || {
        let got = site.records_in_files("SER", b"\r\n");
        (got.last() == Some(&last_serial)).then_some(())
    })
    .expect("the serial stream reached the files");
    bb.wait_log("hold every record", Some("tcp"), Duration::from_secs(60))
        .unwrap();
    let mut last_count = usize::MAX;
    let mut stable_since = Instant::now();
    wait_until(Duration::from_secs(120), || {
        let count = received_count(received);
        if count != last_count {
            last_count = count;
            stable_since = Instant::now();
        }
        (site.tmp_files().is_empty() && stable_since.elapsed() > Duration::from_secs(2))
            .then_some(())
    })
    .expect("billbox drained");
    assert_eq!(bb.terminate(), Some(0));
}

/// One port's outcome.
#[derive(Debug)]
pub struct PortOutcome {
    pub port: &'static str,
    /// Records the PBX sent.
    pub sent: u64,
    /// The port's last sequence in the store.
    pub last: u64,
    /// Filed records that are not whole records of the stream (a record cut
    /// by a kill, kept with the `unterminated` flag).
    pub fragments: usize,
}

/// The checks after [`drain`], for a stopped billbox: per port, every
/// flushed record is in exactly one closed file; the receiver holds every
/// sequence `1..=last` exactly once (so none was reused for other bytes),
/// and exactly the filed bytes in sequence order; at most one fragment per
/// kill.
pub fn check_delivered(site: &Site, received: &Path, sent: &Sent, kills: u64) -> Vec<PortOutcome> {
    let stats = site.inspect();
    let mut out = Vec::new();
    for (port, alias, format, sent) in [
        ("serial", "SER", Format::Panasonic, sent.serial),
        ("tcp", "TCP", Format::AvayaIpOffice, sent.tcp),
    ] {
        let last = stats[port]["last_seq"].as_u64().unwrap();
        let filed = site.records_in_files(alias, b"\r\n");
        assert_eq!(filed.len() as u64, last, "{port}: filed vs flushed");
        let pool: HashMap<Vec<u8>, u64> = (1..=sent).map(|n| (numbered(format, n), n)).collect();
        let whole: Vec<u64> = filed.iter().filter_map(|r| pool.get(r).copied()).collect();
        let mut unique = whole.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), whole.len(), "{port}: a record filed twice");
        let fragments = filed.len() - whole.len();
        assert!(
            fragments as u64 <= kills,
            "{port}: {fragments} fragments in {kills} kills"
        );
        let ids =
            std::fs::read_to_string(received.join("gw-test").join(format!("{port}.ids"))).unwrap();
        let seqs: Vec<u64> = ids
            .lines()
            .map(|l| l.split('\t').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "{port}: delivered sequences"
        );
        let delivered =
            std::fs::read(received.join("gw-test").join(format!("{port}.txt"))).unwrap();
        assert!(
            delivered == filed.concat(),
            "{port}: delivered bytes differ from the files"
        );
        out.push(PortOutcome {
            port,
            sent,
            last,
            fragments,
        });
    }
    out
}

/// Stops the receiver and returns the duplicates it dropped (its own count).
pub fn receiver_duplicates(receiver: &mut Receiver) -> u64 {
    receiver.terminate();
    receiver
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["message"] == "The receiver stopped.")
        .and_then(|v| v["duplicates"].as_u64())
        .expect("the receiver reported its duplicates")
}
