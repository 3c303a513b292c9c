//! Durable ingest from TCP ports into the flushed store, end to end through
//! the real actors (readers, group commit, rotators writing ACS files).
//!
//! `cargo bench --bench ingest` runs the full measurement; without `--bench`
//! (as `cargo test` runs it) it does a small smoke run. Settings through the
//! environment: BENCH_RECORDS (per port, default 200000), BENCH_PORTS
//! (default 1), BENCH_RECORD_BYTES (default 145, terminator included).
//!
//! Reports records/s from the first byte sent to the last record flushed, and
//! the record-to-flush latency (from the read that completed a record to the
//! return of the flush that made it durable): p50, p99, max.

use std::time::{Duration, Instant};

use billbox_testkit::env_or;
use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::records::push_padded_record;
use billbox_testkit::site::gateway_toml;

fn main() {
    // As the daemon does: the thread that trims free heap pages.
    billbox_memory::start_trimmer();
    let full = std::env::args().any(|a| a == "--bench");
    let records = env_or("BENCH_RECORDS", if full { 200_000 } else { 2_000 });
    let ports = env_or("BENCH_PORTS", 1).max(1);
    let size = env_or("BENCH_RECORD_BYTES", 145).max(8) as usize;

    let dir = tempfile::tempdir().expect("temp dir");
    let mut toml = gateway_toml("bench", dir.path());
    for p in 0..ports {
        toml.push_str(&format!(
            "[[ports]]\nname = \"p{p}\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\r\\n\"\nbilling_records = 1000\nbilling_timeout = \"1s\"\n"
        ));
    }
    let config = billbox_config::from_toml_str(&toml).expect("bench config is valid");

    let system = actix_rt::System::new();
    system.block_on(async move {
        let running = billbox_runtime::start(&config).expect("pipeline starts");
        let mut addrs = Vec::new();
        for p in 0..ports {
            let name = format!("p{p}");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(a) = running.listen_addr(&name) {
                    addrs.push(a);
                    break;
                }
                assert!(Instant::now() < deadline, "port {name} did not listen");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let start = Instant::now();
        let senders: Vec<_> = addrs
            .into_iter()
            .map(|addr| {
                std::thread::spawn(move || {
                    let mut conn = TcpPbx::connect(addr).expect("connect");
                    let mut batch = Vec::with_capacity(size * 1000);
                    for i in 0..records {
                        push_padded_record(&mut batch, i, size, b"\r\n");
                        if batch.len() >= size * 1000 {
                            conn.send(&batch).expect("send");
                            batch.clear();
                        }
                    }
                    conn.send(&batch).expect("send");
                    conn
                })
            })
            .collect();
        // Join off the event loop, which must keep reading.
        let conns = tokio::task::spawn_blocking(move || {
            senders
                .into_iter()
                .map(|s| s.join().unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let done = (0..ports).all(|p| running.store().durable_seq(&format!("p{p}")) >= records);
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "ingest did not finish in time");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = start.elapsed();
        drop(conns);
        let total = records * ports;
        let lat = running.commit_latency();
        println!(
            "ingest: {ports} TCP port(s), {total} records of {size} bytes in {:.3} s = {:.0} records/s ({:.1} MB/s) durable",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            (total as f64 * size as f64) / elapsed.as_secs_f64() / 1e6
        );
        println!(
            "record-to-flush latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} records)",
            lat.quantile(0.5).as_secs_f64() * 1e3,
            lat.quantile(0.99).as_secs_f64() * 1e3,
            lat.max().as_secs_f64() * 1e3,
            lat.count()
        );
        running.shutdown().await;
    });
}
