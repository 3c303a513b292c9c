//! The crash harness: the real binary fed at a steady rate over ptys and TCP,
//! a real receiver acknowledging, and SIGKILL at random moments (during
//! ingest, flushes, file rotation, POSTs and removal: with a steady feed and
//! random kill times every stage is hit). Then the feed stops, billbox drains,
//! and every flushed record must be in exactly one file and at the receiver,
//! with no sequence reused.
//!
//! CI runs `CRASH_CYCLES` (default 10) cycles; for a long run:
//! `CRASH_CYCLES=100 cargo test --release --test crash -- --nocapture`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_testkit::pbx::{Format, Link, PtyPbx, TcpPbx};
use billbox_testkit::receiver::Receiver;
use billbox_testkit::*;

/// A small deterministic PRNG (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn record(format: Format, n: u64) -> Vec<u8> {
    let at = chrono::DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap();
    format.record(n, at)
}

#[test]
fn records_survive_repeated_sigkill_with_delivery() {
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash harness: {cycles} cycles, CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let site = Site::new();
    let received = site.dir.path().join("received");
    std::fs::create_dir_all(&received).unwrap();
    let mut receiver = Receiver::start_in(&received, true, &[]);
    let receiver_addr = receiver.addr;
    let mut pty = PtyPbx::open().unwrap();
    let tcp_addr = free_addr();
    let config = site.config(&format!(
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

[delivery]
primary = "http://{receiver_addr}/billing"
retry_delay = "50ms"
request_timeout = "2s"
batch_max = 5
"#,
        pty.path().display()
    ));

    // Steady feeders: the serial PBX writes into its pty (bytes wait in the
    // terminal while billbox is down); the TCP PBX reconnects after each
    // kill and goes on with the next record.
    let stop = Arc::new(AtomicBool::new(false));
    let serial_sent = Arc::new(AtomicU64::new(0));
    let tcp_sent = Arc::new(AtomicU64::new(0));
    let serial_feeder = {
        let (stop, sent) = (stop.clone(), serial_sent.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                pty.send(&record(Format::Panasonic, n)).unwrap();
                sent.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(3));
            }
            pty
        })
    };
    let tcp_feeder = {
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
                if conn
                    .as_mut()
                    .unwrap()
                    .send(&record(Format::AvayaIpOffice, n))
                    .is_err()
                {
                    conn = None;
                }
                sent.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };

    for cycle in 0..cycles {
        let bb = Billbox::start(&config);
        let live = rng.between(150, 900);
        std::thread::sleep(Duration::from_millis(live));
        bb.kill9();
        if cycle % 3 == 2 {
            // Sometimes stay down a while: the serial bytes pile up.
            std::thread::sleep(Duration::from_millis(rng.between(10, 300)));
        }
    }
    // The last run: feed a little more, stop the feed, let everything drain.
    let bb = Billbox::start(&config);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let _pty = serial_feeder.join().unwrap();
    tcp_feeder.join().unwrap();
    let last_serial = record(Format::Panasonic, serial_sent.load(Ordering::SeqCst));
    wait_until(Duration::from_secs(120), || {
        let got = site.records_in_files("SER", b"\r\n");
        (got.last() == Some(&last_serial)).then_some(())
    })
    .expect("the serial stream reached the files");
    bb.wait_log("hold every record", Some("tcp"), Duration::from_secs(60))
        .unwrap();
    // Drained: no open file, and the receiver stopped growing.
    let mut last_count = usize::MAX;
    let mut stable_since = Instant::now();
    wait_until(Duration::from_secs(120), || {
        let count: usize = ["serial", "tcp"]
            .iter()
            .map(|p| {
                std::fs::read_to_string(received.join("gw-test").join(format!("{p}.ids")))
                    .map_or(0, |s| s.lines().count())
            })
            .sum();
        if count != last_count {
            last_count = count;
            stable_since = Instant::now();
        }
        (site.tmp_files().is_empty() && stable_since.elapsed() > Duration::from_secs(2))
            .then_some(())
    })
    .expect("billbox drained");
    assert_eq!(bb.terminate(), Some(0));

    let stats = site.inspect();
    let mut report = Vec::new();
    for (port, alias, format, sent) in [
        (
            "serial",
            "SER",
            Format::Panasonic,
            serial_sent.load(Ordering::SeqCst),
        ),
        (
            "tcp",
            "TCP",
            Format::AvayaIpOffice,
            tcp_sent.load(Ordering::SeqCst),
        ),
    ] {
        let last = stats[port]["last_seq"].as_u64().unwrap();
        let filed = site.records_in_files(alias, b"\r\n");
        // Every flushed record is in exactly one file.
        assert_eq!(filed.len() as u64, last, "{port}: filed vs flushed");
        let pool: HashMap<Vec<u8>, u64> = (1..=sent).map(|n| (record(format, n), n)).collect();
        let whole: Vec<u64> = filed.iter().filter_map(|r| pool.get(r).copied()).collect();
        let mut unique = whole.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), whole.len(), "{port}: a record filed twice");
        let fragments = filed.len() - whole.len();
        assert!(
            fragments as u64 <= cycles,
            "{port}: {fragments} fragments in {cycles} kills"
        );
        // The receiver holds every sequence 1..=last, and exactly the filed
        // bytes in sequence order (so no sequence was reused for other bytes).
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
        report.push(format!(
            "{port}: {sent} sent, {last} received, {fragments} fragments"
        ));
    }
    // The receiver's own count of duplicates it dropped: records whose ack
    // was in flight (acknowledged, but the cursor not yet durable) at a kill.
    receiver.terminate();
    let duplicates = receiver
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["message"] == "The receiver stopped.")
        .and_then(|v| v["duplicates"].as_u64())
        .expect("the receiver reported its duplicates");
    // At most one batch (batch_max 5) per destination was in flight at each
    // kill, plus acks whose cursor was not flushed yet: bounded per kill.
    assert!(
        duplicates <= cycles * 10,
        "{duplicates} duplicates in {cycles} kills"
    );
    eprintln!(
        "crash harness: {cycles} kills; {}; {duplicates} duplicates dropped by the receiver",
        report.join("; ")
    );
}
