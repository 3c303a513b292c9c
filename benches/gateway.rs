//! The gateway-sized figures, measured on the real `billbox` binary as a
//! child process (so its CPU and memory are its own):
//!
//! - **backlog**: `BENCH_PORTS` TCP ports (default 64) take
//!   `BENCH_BACKLOG` records (default 1,000,000 real SMDR call records from
//!   `billbox-sim`, about 105 bytes each; the store compresses them) while the
//!   billing server is down; then the server (the reference receiver, in
//!   this process, not syncing) comes up and the backlog drains. Reports
//!   the durable ingest rate, the drain rate, peak RSS, and the store's
//!   size on disk per record at the peak.
//! - **serial fan-in**: `BENCH_SERIAL` pseudo-terminal ports (default 64
//!   and 256), each sending an SMDR record every `BENCH_SERIAL_EVERY_MS`
//!   (default 250 ms: about 400 bytes/s per port, a busy PBX at 9600 baud)
//!   for `BENCH_SERIAL_SECS` (default 20 s). Reports billbox's CPU % (user +
//!   system, of one core) and RSS, and checks every record was committed.
//!
//! `cargo bench --bench gateway` runs the full sizes; without `--bench` (as
//! `cargo test` runs it) a small smoke run that checks counts only.
//! Progress is read from billbox's own `/metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use billbox_testkit::pbx::{Format, PtyPbx};
use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::site::gateway_toml;
use billbox_testkit::{env_or, free_addr, sum_metric, Billbox};

/// Starts billbox on `config`; with `tcp`, also returns the addresses of
/// its `ports` TCP ports `p0`, `p1`, ... from their log lines.
fn start(config: &Path, ports: usize, tcp: bool) -> (Billbox, Vec<SocketAddr>) {
    let bb = Billbox::start(config);
    bb.metrics_addr();
    let listens = if tcp {
        (0..ports)
            .map(|p| bb.listen_addr(&format!("p{p}")))
            .collect()
    } else {
        Vec::new()
    };
    (bb, listens)
}

/// Waits until the sum of metric `name` reaches `want`; how long it took.
fn wait_sum(bb: &Billbox, name: &str, want: f64, limit: Duration) -> Duration {
    let start = Instant::now();
    let sum = || sum_metric(&bb.metrics(), name);
    while sum() < want {
        assert!(
            start.elapsed() < limit,
            "{name} stayed at {} (want {want})",
            sum()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn backlog(full: bool) {
    let ports = env_or("BENCH_PORTS", if full { 64 } else { 4 }) as usize;
    let total = env_or("BENCH_BACKLOG", if full { 1_000_000 } else { 4_000 });
    let batch = env_or("BENCH_BATCH", 1000);
    let per_port = total / ports as u64;
    let total = per_port * ports as u64;
    let record_bytes = {
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        Format::AvayaIpOffice.record(0, at).len()
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver_addr = free_addr();
    let mut toml = gateway_toml("bench", dir.path());
    toml.push_str(&format!(
        "[store]\nmax_records = {}\n[delivery]\nprimary = \"http://{receiver_addr}/billing\"\nbatch_max = {batch}\nconnections = 2\nretry_delay = \"200ms\"\n",
        total * 2
    ));
    for p in 0..ports {
        toml.push_str(&format!(
            "[[ports]]\nname = \"p{p}\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\r\\n\"\nbilling_records = 1000\nbilling_timeout = \"5s\"\n"
        ));
    }
    let config = dir.path().join("billbox.toml");
    std::fs::write(&config, toml).unwrap();
    let (bb, listens) = start(&config, ports, true);
    let rss_idle = bb.proc_status("VmRSS:");

    let start = Instant::now();
    let senders: Vec<_> = listens
        .iter()
        .enumerate()
        .map(|(p, addr)| {
            let addr = *addr;
            std::thread::spawn(move || {
                let mut pbx = TcpPbx::connect(addr).unwrap();
                let mut buf = Vec::with_capacity(64 * 1024);
                for i in 0..per_port {
                    // Real SMDR text (an Avaya IP Office call record, unique
                    // per port and number), not padding: the store
                    // compresses chunks, so the content matters.
                    let n = p as u64 * per_port + i;
                    let at = chrono::DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap();
                    let rec = Format::AvayaIpOffice.record(n, at);
                    buf.extend_from_slice(&rec);
                    if buf.len() >= 60 * 1024 {
                        pbx.send(&buf).unwrap();
                        buf.clear();
                    }
                }
                pbx.send(&buf).unwrap();
                pbx
            })
        })
        .collect();
    let limit = Duration::from_secs(600);
    wait_sum(&bb, "billbox_port_committed_sequence", total as f64, limit);
    let ingest = start.elapsed();
    let _pbxes: Vec<TcpPbx> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let page = bb.metrics();
    let store_bytes = sum_metric(&page, "billbox_store_bytes");
    let rss_ingested = bb.proc_status("VmRSS:");
    let peak_ingest = bb.proc_status("VmHWM:");

    // The server comes up: drain.
    let out = dir.path().join("received");
    let (tx, rx) = std::sync::mpsc::channel();
    // The receiver stops only once billbox has every answer (it counts a
    // record when it files it, before its answer is on the way).
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let r = billbox_receiver::serve(billbox_receiver::ReceiverOptions {
                listen: receiver_addr.to_string(),
                out,
                durable: false,
            })
            .expect("receiver starts");
            let deadline = Instant::now() + Duration::from_secs(600);
            let drain_start = Instant::now();
            while r.counts().0 < total {
                assert!(Instant::now() < deadline, "drain did not finish");
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            tx.send(drain_start.elapsed()).unwrap();
            let _ = actix_rt::task::spawn_blocking(move || {
                stop_rx.recv_timeout(Duration::from_secs(60))
            })
            .await;
            r.stop(true).await;
        })
    });
    let drain = rx
        .recv_timeout(Duration::from_secs(700))
        .expect("drain finished");
    let peak = bb.proc_status("VmHWM:");
    wait_sum(
        &bb,
        "billbox_delivered_records_total",
        total as f64,
        Duration::from_secs(30),
    );
    let _ = stop_tx.send(());
    receiver.join().unwrap();
    println!(
        "backlog: {ports} TCP ports, {total} SMDR records of about {record_bytes} bytes: durable ingest {:.3} s = {:.0} records/s; \
         drain (batch_max {batch}) {:.3} s = {:.0} records/s acknowledged",
        ingest.as_secs_f64(),
        total as f64 / ingest.as_secs_f64(),
        drain.as_secs_f64(),
        total as f64 / drain.as_secs_f64()
    );
    println!(
        "memory: RSS idle {:.1} MB, with the backlog stored {:.1} MB, peak while ingesting {:.1} MB, peak overall {:.1} MB; store on disk {:.1} MB = {:.0} bytes per record",
        rss_idle as f64 / 1024.0,
        rss_ingested as f64 / 1024.0,
        peak_ingest as f64 / 1024.0,
        peak as f64 / 1024.0,
        store_bytes / 1e6,
        store_bytes / total as f64
    );
}

fn serial(full: bool, ports: usize) {
    let secs = env_or("BENCH_SERIAL_SECS", if full { 20 } else { 2 });
    let every = Duration::from_millis(env_or("BENCH_SERIAL_EVERY_MS", 250));
    let dir = tempfile::tempdir().unwrap();
    let mut ptys = Vec::new();
    let mut toml = gateway_toml("bench", dir.path());
    for p in 0..ports {
        let pty = PtyPbx::open().expect("a pty");
        toml.push_str(&format!(
            "[[ports]]\nname = \"p{p}\"\ndevice = \"{}\"\nspeed = 9600\nbilling_eor = \"\\r\\n\"\nbilling_records = 1000\nbilling_timeout = \"60s\"\n",
            pty.path().display()
        ));
        ptys.push(pty);
    }
    let config = dir.path().join("billbox.toml");
    std::fs::write(&config, toml).unwrap();
    let (bb, _) = start(&config, ports, false);
    // Let every port open.
    std::thread::sleep(Duration::from_secs(2));
    let ticks0 = bb.cpu_ticks();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut n = 0u64;
    let mut rss_max = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        let round = Instant::now();
        for pty in ptys.iter_mut() {
            let rec = Format::AvayaIpOffice.record(n, chrono::Utc::now());
            pty.send(&rec).expect("pty write");
            sent += 1;
        }
        n += 1;
        rss_max = rss_max.max(bb.proc_status("VmRSS:"));
        std::thread::sleep(every.saturating_sub(round.elapsed()));
    }
    let elapsed = start.elapsed();
    let ticks = bb.cpu_ticks() - ticks0;
    wait_sum(
        &bb,
        "billbox_port_committed_sequence",
        sent as f64,
        Duration::from_secs(60),
    );
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "serial fan-in: {ports} pty ports, one SMDR record per port every {} ms for {:.0} s ({sent} records, all committed): \
         CPU {:.1} % of one core, RSS max {:.1} MB",
        every.as_millis(),
        elapsed.as_secs_f64(),
        100.0 * ticks as f64 / hz / elapsed.as_secs_f64(),
        rss_max as f64 / 1024.0
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let what = std::env::var("BENCH_WHAT").unwrap_or_else(|_| "backlog,serial".into());
    if what.contains("backlog") {
        backlog(full);
    }
    if what.contains("serial") {
        let sizes: Vec<usize> = match std::env::var("BENCH_SERIAL") {
            Ok(v) => v.split(',').map(|s| s.parse().unwrap()).collect(),
            Err(_) if full => vec![64, 256],
            Err(_) => vec![4],
        };
        for ports in sizes {
            serial(full, ports);
        }
    }
}
