//! Transactions accepted by the submit API of the real `billbox` binary (a
//! child process): `POST /v1/transactions`, each answered `201` only after
//! its flush, by 1 and by 16 concurrent submitters (`BENCH_SUBMITTERS`,
//! comma-separated), each on its own keep-alive connection, posting
//! `BENCH_TRANSACTIONS` transactions in all (default 20,000). Reports
//! transactions/s and the p50/p99/max latency of one submission (request
//! written to `201` read). No `[delivery]`: this measures taking in.
//!
//! `cargo bench --bench transactions` runs the full size; without `--bench`
//! (as `cargo test` runs it) a small smoke run that checks every answer is
//! `201` with a distinct `rec_num`, never a speed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use billbox_testkit::http::Connection;
use billbox_testkit::site::gateway_toml;
use billbox_testkit::Billbox;

/// Starts billbox with `[transactions]` on a free port; returns it and the
/// submit API's address (from its log line).
fn start(dir: &std::path::Path) -> (Billbox, SocketAddr) {
    let config = dir.join("billbox.toml");
    std::fs::write(
        &config,
        gateway_toml("bench", dir)
            + "\n[transactions]\nlisten = \"127.0.0.1:0\"\nproperty_id = \"Hotel-1\"\nusg_id = \"00020b\"\n",
    )
    .unwrap();
    let billbox = Billbox::start(&config);
    let addr = billbox.transactions_addr(Duration::from_secs(60));
    (billbox, addr)
}

/// One submitter: `count` transactions from `first` on one keep-alive
/// connection. Returns each one's latency and `rec_num`.
fn submitter(addr: SocketAddr, first: u64, count: u64) -> Vec<(Duration, u64)> {
    let mut conn = Connection::open(addr).unwrap();
    let mut out = Vec::with_capacity(count as usize);
    for n in first..first + count {
        let body = format!(
            "{{\"id\":\"bench-{n}\",\"type\":\"{}\",\"room\":\"{}\",\"amount\":\"{}.{:02}\"}}",
            if n % 2 == 0 { "PMS" } else { "CC" },
            100 + n % 900,
            n % 500 + 1,
            n % 100
        );
        let start = Instant::now();
        let answer = conn
            .send(
                "POST",
                "/v1/transactions",
                &["Content-Type: application/json"],
                body.as_bytes(),
            )
            .unwrap();
        let took = start.elapsed();
        assert!(answer.status == 201, "{} {}", answer.head, answer.text());
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        out.push((took, v["rec_num"].as_u64().unwrap()));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn run(submitters: u64, total: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (_billbox, addr) = start(dir.path());
    let per = total / submitters;
    let started = Instant::now();
    let handles: Vec<_> = (0..submitters)
        .map(|s| std::thread::spawn(move || submitter(addr, s * per + 1, per)))
        .collect();
    let results: Vec<(Duration, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    let mut rec_nums: Vec<u64> = results.iter().map(|(_, r)| *r).collect();
    rec_nums.sort_unstable();
    rec_nums.dedup();
    assert_eq!(
        rec_nums.len() as u64,
        per * submitters,
        "a rec_num given twice"
    );
    let mut latencies: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    latencies.sort_unstable();
    println!(
        "submitters {submitters:>2}: {:>6} transactions in {:>6.2} s = {:>8.0} transactions/s (201 after flush); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        results.len(),
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let total = std::env::var("BENCH_TRANSACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 20_000 } else { 160 });
    let sizes: Vec<u64> = std::env::var("BENCH_SUBMITTERS")
        .map(|v| v.split(',').map(|s| s.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![1, 16]);
    for submitters in sizes {
        run(submitters, total);
    }
}
