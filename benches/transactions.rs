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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_billbox");

struct Billbox(Child);

impl Drop for Billbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts billbox with `[transactions]` on a free port; returns it and the
/// submit API's address (from its log line).
fn start(dir: &std::path::Path) -> (Billbox, SocketAddr) {
    let config = dir.join("billbox.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nname = \"bench\"\ndata_dir = \"{0}/data\"\nspool_dir = \"{0}/spool\"\n\n\
             [transactions]\nlisten = \"127.0.0.1:0\"\nproperty_id = \"Hotel-1\"\nusg_id = \"00020b\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("BILLBOX__METRICS__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("billbox starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            // Keep draining so billbox never blocks on its log.
            let _ = tx.send(line);
        }
    });
    let billbox = Billbox(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "billbox did not start");
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("billbox did not start")
        };
        if line.contains("submit API and AG relay are listening") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            return (billbox, v["listen"].as_str().unwrap().parse().unwrap());
        }
    }
}

/// One submitter: `count` transactions from `first` on one keep-alive
/// connection. Returns each one's latency and `rec_num`.
fn submitter(addr: SocketAddr, first: u64, count: u64) -> Vec<(Duration, u64)> {
    let conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    let mut out = Vec::with_capacity(count as usize);
    for n in first..first + count {
        let body = format!(
            "{{\"id\":\"bench-{n}\",\"type\":\"{}\",\"room\":\"{}\",\"amount\":\"{}.{:02}\"}}",
            if n % 2 == 0 { "PMS" } else { "CC" },
            100 + n % 900,
            n % 500 + 1,
            n % 100
        );
        let request = format!(
            "POST /v1/transactions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let start = Instant::now();
        conn.write_all(request.as_bytes()).unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut answer = vec![0; length];
        reader.read_exact(&mut answer).unwrap();
        let took = start.elapsed();
        assert!(
            status.contains(" 201 "),
            "{status} {}",
            String::from_utf8_lossy(&answer)
        );
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
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
