//! Delivery throughput end to end: records in over TCP, stored durably,
//! posted to the reference receiver, acknowledged.
//!
//! `cargo bench --bench delivery` runs the full measurement; without
//! `--bench` (as `cargo test` runs it) a small smoke run. Environment:
//! BENCH_RECORDS (default 100000), BENCH_BATCH (records per POST; runs 1 and
//! 100 when unset), BENCH_RECEIVER_DURABLE (receiver fsyncs before acking;
//! default false, so the figure is billbox's side).
//!
//! Two figures per batch size:
//! - end to end: from the first byte sent to the last record acknowledged;
//! - drain: the receiver is down while all records are stored, then starts;
//!   from its start to the last record acknowledged.

use std::time::{Duration, Instant};

use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::records::padded_record;
use billbox_testkit::site::gateway_toml;
use billbox_testkit::{env_or, free_addr};

fn main() {
    // As the daemon does: the thread that trims free heap pages.
    billbox_memory::start_trimmer();
    let full = std::env::args().any(|a| a == "--bench");
    let records = env_or("BENCH_RECORDS", if full { 100_000 } else { 500 });
    let durable = env_or("BENCH_RECEIVER_DURABLE", 0) == 1;
    let batches: Vec<u64> = match std::env::var("BENCH_BATCH") {
        Ok(b) => vec![b.parse().expect("BENCH_BATCH is a number")],
        Err(_) => vec![1, 100],
    };
    for batch in batches.iter().copied() {
        for drain in [false, true] {
            run(records, batch, drain, durable);
        }
    }
    // Latency at a steady rate below capacity (a busy gateway, not a flood).
    let rate = env_or("BENCH_RATE", 20_000);
    let secs = env_or("BENCH_LATENCY_SECS", if full { 10 } else { 1 });
    latency(rate, secs, *batches.last().unwrap(), durable);
}

/// Sends at `rate` records/s for `secs` and measures, per record, the time
/// from its last byte written to the socket to (a) its flush (the port's
/// durable sequence passing it) and (b) its acknowledgement (the delivery
/// cursor passing it), by polling both every 200 µs from another thread.
fn latency(rate: u64, secs: u64, batch: u64, durable: bool) {
    let total = rate * secs;
    let dir = tempfile::tempdir().expect("temp dir");
    let system = actix_rt::System::new();
    system.block_on(async move {
        let receiver_addr = free_addr();
        let receiver = serve_receiver(receiver_addr, dir.path(), durable);
        let (running, addr) = pipeline(dir.path(), receiver_addr, batch, 1_000_000).await;
        let store = running.store().clone();
        let start = Instant::now();
        let watcher = std::thread::spawn(move || {
            let mut flushed = Vec::with_capacity(total as usize);
            let mut acked = Vec::with_capacity(total as usize);
            let deadline = Instant::now() + Duration::from_secs(secs + 120);
            while (acked.len() as u64) < total && Instant::now() < deadline {
                let now = start.elapsed();
                let d = store.durable_seq("p").min(total);
                while (flushed.len() as u64) < d {
                    flushed.push(now);
                }
                let c = store
                    .cursor("p", billbox_store::DELIVERY_CURSOR)
                    .unwrap_or(0)
                    .min(total);
                while (acked.len() as u64) < c {
                    acked.push(now);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            (flushed, acked)
        });
        let sender = std::thread::spawn(move || {
            let mut conn = TcpPbx::connect(addr).expect("connect");
            conn.stream().set_nodelay(true).unwrap();
            let mut sent = Vec::with_capacity(total as usize);
            // Records go out in small bursts every millisecond.
            let per_ms = (rate / 1000).max(1);
            let mut i = 0u64;
            while i < total {
                let due = start + Duration::from_micros(i * 1_000_000 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut buf = Vec::new();
                let n = per_ms.min(total - i);
                for k in i..i + n {
                    buf.extend_from_slice(&bench_record(k));
                }
                conn.send(&buf).expect("send");
                let at = start.elapsed();
                sent.extend(std::iter::repeat_n(at, n as usize));
                i += n;
            }
            (conn, sent)
        });
        let (_conn, sent) = tokio::task::spawn_blocking(move || sender.join().unwrap())
            .await
            .unwrap();
        let (flushed, acked) = tokio::task::spawn_blocking(move || watcher.join().unwrap())
            .await
            .unwrap();
        assert_eq!(
            acked.len() as u64,
            total,
            "not every record was acknowledged"
        );
        let pct = |mut v: Vec<Duration>| {
            v.sort_unstable();
            let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
            (at(0.5), at(0.99), at(1.0))
        };
        let lat = |done: &[Duration]| {
            pct(sent
                .iter()
                .zip(done)
                .map(|(s, d)| d.saturating_sub(*s))
                .collect())
        };
        let (f50, f99, fmax) = lat(&flushed);
        let (a50, a99, amax) = lat(&acked);
        println!(
            "latency at {rate} records/s for {secs} s (batch_max {batch}, polled every 0.2 ms): \
             record-to-flush p50 {f50:.2} ms, p99 {f99:.2} ms, max {fmax:.2} ms; \
             record-to-ack p50 {a50:.2} ms, p99 {a99:.2} ms, max {amax:.2} ms"
        );
        running.shutdown().await;
        receiver.stop(true).await;
    });
}

fn run(records: u64, batch: u64, drain: bool, durable: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = actix_rt::System::new();
    system.block_on(async move {
        let receiver_addr = free_addr();
        let serve = || serve_receiver(receiver_addr, dir.path(), durable);
        let mut receiver = if drain { None } else { Some(serve()) };
        let (running, addr) = pipeline(dir.path(), receiver_addr, batch, records * 2).await;
        let start = Instant::now();
        let sender = std::thread::spawn(move || {
            let mut conn = TcpPbx::connect(addr).expect("connect");
            let mut buf = Vec::new();
            for i in 0..records {
                buf.extend_from_slice(&bench_record(i));
            }
            conn.send(&buf).expect("send");
            conn
        });
        let _conn = tokio::task::spawn_blocking(move || sender.join().unwrap()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut drain_start = start;
        if drain {
            while running.store().durable_seq("p") < records {
                assert!(Instant::now() < deadline, "ingest did not finish");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            receiver = Some(serve());
            drain_start = Instant::now();
        }
        let r = receiver.as_ref().unwrap();
        while r.counts().0 < records {
            assert!(Instant::now() < deadline, "delivery did not finish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = drain_start.elapsed();
        println!(
            "{}: batch_max {batch}, {records} records of 145 bytes in {:.3} s = {:.0} records/s acknowledged (receiver fsync: {durable})",
            if drain { "drain of a stored backlog" } else { "end to end" },
            elapsed.as_secs_f64(),
            records as f64 / elapsed.as_secs_f64()
        );
        running.shutdown().await;
        r.stop(true).await;
    });
}

/// Record `i` of a bench: 145 bytes, terminator included.
fn bench_record(i: u64) -> Vec<u8> {
    padded_record(i, 145, b"\r\n")
}

/// The reference receiver on `addr`, filing under `dir/received`.
fn serve_receiver(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
    durable: bool,
) -> billbox_receiver::Running {
    billbox_receiver::serve(billbox_receiver::ReceiverOptions {
        listen: addr.to_string(),
        out: dir.join("received"),
        durable,
    })
    .expect("receiver starts")
}

/// Starts the pipeline with one TCP port delivering to `receiver`; returns
/// it and the port's address once it listens.
async fn pipeline(
    dir: &std::path::Path,
    receiver: std::net::SocketAddr,
    batch: u64,
    max_records: u64,
) -> (billbox_runtime::Running, std::net::SocketAddr) {
    let toml = gateway_toml("bench", dir)
        + &format!(
            "[store]\nmax_records = {max_records}\n\
             [[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\r\\n\"\nbilling_records = 1000\nbilling_timeout = \"1s\"\n\
             [delivery]\nprimary = \"http://{receiver}/billing\"\nbatch_max = {batch}\nretry_delay = \"100ms\"\n"
        );
    let config = billbox_config::from_toml_str(&toml).expect("bench config is valid");
    let running = billbox_runtime::start(&config).expect("pipeline starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = running.listen_addr("p") {
            return (running, a);
        }
        assert!(Instant::now() < deadline, "port p did not listen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
