//! Delivery over a far link: billbox (in process, durable store) posting to
//! the reference receiver through a delaying TCP proxy on 127.0.0.1.
//!
//! The proxy holds every chunk it reads for half the round trip before it
//! writes it on (both directions; no bandwidth limit), so a request and its
//! answer take one round trip more than on loopback. Per row:
//! - drain: `LATENCY_RECORDS` records (default 20,000) stored while the
//!   server is unreachable, then the proxy starts; records/s from the first
//!   record at the server (billbox's next attempt comes up to
//!   `retry_delay`, 100 ms here, after the server does) to the last, or over what was acknowledged within
//!   `LATENCY_DRAIN_LIMIT_S` (default 30) when that ends first (the row
//!   then says so);
//! - steady: `LATENCY_RATE` records/s (default 200) for `LATENCY_SECS`
//!   (default 10); p50/p99 of record-to-ack (the last byte of a record
//!   written to billbox's socket to the delivery cursor passing it, polled
//!   every 0.2 ms); a row whose bound (window x batch_max / RTT) is below
//!   the rate "falls behind" and is not run.
//!
//! Rows: round trips `LATENCY_RTTS` (ms, default "0,10,50,150"), batch_max
//! 1 and 500, window 1 and the default, plus window 64 (one port and four
//! ports) for batch_max 1; and one row against a slow-answering server
//! (headers and body in two writes, Nagle on: Python's `http.server`), no
//! proxy. `LATENCY_ROWS` picks rows by name (comma-separated substrings).
//!
//! `cargo bench --bench latency` runs it all; without `--bench` (as `cargo
//! test` runs bench targets) a smoke run: 300 records, 0 and 10 ms, counts
//! checked, never speed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::records::padded_record;
use billbox_testkit::site::gateway_toml;
use billbox_testkit::{env_or, free_addr};

fn main() {
    billbox_memory::start_trimmer();
    let full = std::env::args().any(|a| a == "--bench");
    let records = env_or("LATENCY_RECORDS", if full { 20_000 } else { 300 });
    let limit = Duration::from_secs(env_or("LATENCY_DRAIN_LIMIT_S", 30));
    let rate = env_or("LATENCY_RATE", 200);
    let secs = env_or("LATENCY_SECS", if full { 10 } else { 1 });
    let rtts: Vec<u64> = std::env::var("LATENCY_RTTS")
        .unwrap_or_else(|_| if full { "0,10,50,150" } else { "0,10" }.into())
        .split(',')
        .map(|s| s.trim().parse().expect("LATENCY_RTTS: numbers of ms"))
        .collect();
    let pick = std::env::var("LATENCY_ROWS").ok();
    let default = billbox_config::DEFAULT_WINDOW;
    let mut rows = Vec::new();
    for &rtt in &rtts {
        for batch in [1u64, 500] {
            let mut windows = vec![1, default];
            if batch == 1 {
                windows.push(64);
            }
            for window in windows {
                rows.push(Row {
                    server: Server::Proxy { rtt },
                    batch,
                    window,
                    ports: 1,
                });
            }
        }
        rows.push(Row {
            server: Server::Proxy { rtt },
            batch: 1,
            window: 64,
            ports: 4,
        });
    }
    for batch in [1u64, 500] {
        for window in [1, default] {
            rows.push(Row {
                server: Server::TwoWrites,
                batch,
                window,
                ports: 1,
            });
        }
    }
    println!("| server | ports | batch_max | window | bound (records/s) | drain (records/s) | steady {rate}/s: ack p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        let name = row.name();
        if pick
            .as_ref()
            .is_some_and(|p| !p.split(',').any(|w| name.contains(w.trim())))
        {
            continue;
        }
        let drain = drain(&row, records, limit, full);
        // A row whose bound is below the rate cannot keep up: its latency
        // only grows.
        let steady = match row.bound_rate() {
            Some(bound) if bound < rate => "falls behind | -".to_string(),
            _ => {
                let (p50, p99) = steady(&row, rate, secs);
                format!("{p50:.1} ms | {p99:.1} ms")
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.server.label(),
            row.ports,
            row.batch,
            row.window,
            row.bound(),
            drain,
            steady
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Server {
    /// The reference receiver behind a proxy adding `rtt` ms per round trip.
    Proxy { rtt: u64 },
    /// A server writing headers and body in two writes, Nagle on.
    TwoWrites,
}

impl Server {
    fn label(&self) -> String {
        match self {
            Server::Proxy { rtt } => format!("receiver, {rtt} ms round trip"),
            Server::TwoWrites => "two writes per answer, Nagle on".into(),
        }
    }
}

struct Row {
    server: Server,
    batch: u64,
    window: usize,
    ports: usize,
}

impl Row {
    fn name(&self) -> String {
        let server = match self.server {
            Server::Proxy { rtt } => format!("rtt{rtt}"),
            Server::TwoWrites => "twowrites".into(),
        };
        format!(
            "{server}-batch{}-window{}-ports{}",
            self.batch, self.window, self.ports
        )
    }

    /// window x batch / RTT x ports (one connection a port here), records/s.
    fn bound_rate(&self) -> Option<u64> {
        match self.server {
            Server::Proxy { rtt } if rtt > 0 => {
                Some(self.window as u64 * self.batch * 1000 / rtt * self.ports as u64)
            }
            _ => None,
        }
    }

    fn bound(&self) -> String {
        self.bound_rate().map_or("-".into(), |b| b.to_string())
    }
}

/// A server as a row has it, reachable at `addr` once started.
enum Running {
    Proxy {
        receiver: billbox_receiver::Running,
        proxy: Proxy,
    },
    TwoWrites(TwoWrites),
}

impl Running {
    fn start(server: Server, addr: SocketAddr, dir: &std::path::Path) -> Running {
        match server {
            Server::Proxy { rtt } => {
                let upstream = free_addr();
                let receiver = serve_receiver(upstream, dir);
                let proxy = Proxy::start(addr, upstream, Duration::from_micros(rtt * 500));
                Running::Proxy { receiver, proxy }
            }
            Server::TwoWrites => Running::TwoWrites(TwoWrites::start(addr)),
        }
    }

    /// Distinct records the server has acknowledged.
    fn received(&self) -> u64 {
        match self {
            Running::Proxy { receiver, .. } => receiver.counts().0,
            Running::TwoWrites(t) => t.records.load(Ordering::Relaxed),
        }
    }

    async fn stop(self) {
        match self {
            Running::Proxy { receiver, proxy } => {
                proxy.stop();
                receiver.stop(true).await;
            }
            Running::TwoWrites(t) => t.stop(),
        }
    }
}

/// Drain records/s of a `records` backlog (with "(N in limit)" when the
/// limit ended it first).
fn drain(row: &Row, records: u64, limit: Duration, full: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let system = actix_rt::System::new();
    system.block_on(async move {
        let server_addr = free_addr();
        let (running, ports) = pipeline(dir.path(), server_addr, row, records * 2).await;
        let per_port = records / row.ports as u64;
        let total = per_port * row.ports as u64;
        let senders: Vec<_> = ports
            .iter()
            .map(|&addr| {
                thread::spawn(move || {
                    let mut conn = TcpPbx::connect(addr).expect("connect");
                    let mut buf = Vec::new();
                    for i in 0..per_port {
                        buf.extend_from_slice(&padded_record(i, 145, b"\r\n"));
                    }
                    conn.send(&buf).expect("send");
                    conn
                })
            })
            .collect();
        let conns: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        let deadline = Instant::now() + Duration::from_secs(600);
        let stored = |r: &billbox_runtime::Running| {
            (0..row.ports)
                .map(|i| r.store().durable_seq(&format!("p{i}")))
                .sum::<u64>()
        };
        while stored(&running) < total {
            assert!(Instant::now() < deadline, "ingest did not finish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let server = Running::start(row.server, server_addr, dir.path());
        // From the first record at the server: the wait for billbox's next
        // attempt (retry_delay) after the server came up is not the link's.
        let deadline = Instant::now() + limit;
        while server.received() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let start = Instant::now();
        let end = start + limit;
        while server.received() < total && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let got = server.received();
        let elapsed = start.elapsed().as_secs_f64();
        if !full {
            assert_eq!(
                got,
                total,
                "{}: not every record was acknowledged",
                row.name()
            );
        }
        drop(conns);
        running.shutdown().await;
        server.stop().await;
        let rate = got as f64 / elapsed;
        if got < total {
            format!(
                "{rate:.0} ({got} of {total} in {:.0} s)",
                limit.as_secs_f64()
            )
        } else {
            format!("{rate:.0}")
        }
    })
}

/// p50 and p99 record-to-ack (ms) at a steady `rate` into port p0.
fn steady(row: &Row, rate: u64, secs: u64) -> (f64, f64) {
    let total = rate * secs;
    let dir = tempfile::tempdir().expect("temp dir");
    let system = actix_rt::System::new();
    let row = Row {
        ports: 1,
        server: row.server,
        batch: row.batch,
        window: row.window,
    };
    system.block_on(async move {
        let server_addr = free_addr();
        let server = Running::start(row.server, server_addr, dir.path());
        let (running, ports) = pipeline(dir.path(), server_addr, &row, 1_000_000).await;
        let store = running.store().clone();
        let start = Instant::now();
        let watcher = thread::spawn(move || {
            let mut acked = Vec::with_capacity(total as usize);
            let deadline = Instant::now() + Duration::from_secs(secs + 120);
            while (acked.len() as u64) < total && Instant::now() < deadline {
                let now = start.elapsed();
                let c = store
                    .cursor("p0", billbox_store::DELIVERY_CURSOR)
                    .unwrap_or(0)
                    .min(total);
                while (acked.len() as u64) < c {
                    acked.push(now);
                }
                thread::sleep(Duration::from_micros(200));
            }
            acked
        });
        let addr = ports[0];
        let sender = thread::spawn(move || {
            let mut conn = TcpPbx::connect(addr).expect("connect");
            conn.stream().set_nodelay(true).unwrap();
            let mut sent = Vec::with_capacity(total as usize);
            for i in 0..total {
                let due = start + Duration::from_micros(i * 1_000_000 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                conn.send(&padded_record(i, 145, b"\r\n")).expect("send");
                sent.push(start.elapsed());
            }
            (conn, sent)
        });
        let (_conn, sent) = tokio::task::spawn_blocking(move || sender.join().unwrap())
            .await
            .unwrap();
        let acked = tokio::task::spawn_blocking(move || watcher.join().unwrap())
            .await
            .unwrap();
        assert_eq!(
            acked.len() as u64,
            total,
            "{}: not every record was acknowledged",
            row.name()
        );
        let mut lat: Vec<Duration> = sent
            .iter()
            .zip(&acked)
            .map(|(s, a)| a.saturating_sub(*s))
            .collect();
        lat.sort_unstable();
        let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        running.shutdown().await;
        server.stop().await;
        (at(0.5), at(0.99))
    })
}

/// Starts billbox with `row.ports` TCP ports delivering to `server`;
/// returns it and the ports' addresses once they listen.
async fn pipeline(
    dir: &std::path::Path,
    server: SocketAddr,
    row: &Row,
    max_records: u64,
) -> (billbox_runtime::Running, Vec<SocketAddr>) {
    let mut toml = gateway_toml("bench", dir) + &format!("[store]\nmax_records = {max_records}\n");
    for i in 0..row.ports {
        toml += &format!(
            "[[ports]]\nname = \"p{i}\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\r\\n\"\nbilling_records = 1000\nbilling_timeout = \"1s\"\n"
        );
    }
    toml += &format!(
        "[delivery]\nprimary = \"http://{server}/billing\"\nbatch_max = {}\nwindow = {}\nconnections = {}\nretry_delay = \"100ms\"\nrequest_timeout = \"30s\"\n",
        row.batch, row.window, row.ports
    );
    let config = billbox_config::from_toml_str(&toml).expect("bench config is valid");
    let running = billbox_runtime::start(&config).expect("pipeline starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let addrs: Vec<_> = (0..row.ports)
            .filter_map(|i| running.listen_addr(&format!("p{i}")))
            .collect();
        if addrs.len() == row.ports {
            return (running, addrs);
        }
        assert!(Instant::now() < deadline, "the ports did not listen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn serve_receiver(addr: SocketAddr, dir: &std::path::Path) -> billbox_receiver::Running {
    billbox_receiver::serve(billbox_receiver::ReceiverOptions {
        listen: addr.to_string(),
        out: dir.join("received"),
        durable: false,
    })
    .expect("receiver starts")
}

/// A TCP proxy that delays every chunk by `delay` each way.
struct Proxy {
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(listen: SocketAddr, upstream: SocketAddr, delay: Duration) -> Proxy {
        let listener = TcpListener::bind(listen).expect("the proxy listens");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let acceptor = thread::spawn(move || {
            let mut links = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        for s in [&client, &server] {
                            s.set_nodelay(true).unwrap();
                            s.set_read_timeout(Some(Duration::from_millis(100)))
                                .unwrap();
                        }
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        links.push(pipe(client, s2, delay, stop2.clone()));
                        links.push(pipe(server, c2, delay, stop2.clone()));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
            for l in links {
                let _ = l.join();
            }
        });
        Proxy {
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        drop(tx);
        let _ = writer.join();
    })
}

/// A billing server that writes each answer's headers and body in two
/// writes without TCP_NODELAY (as Python's `http.server` does); counts the
/// records it acknowledged.
struct TwoWrites {
    stop: Arc<AtomicBool>,
    records: Arc<AtomicU64>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl TwoWrites {
    fn start(addr: SocketAddr) -> TwoWrites {
        let listener = TcpListener::bind(addr).expect("the server listens");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(AtomicU64::new(0));
        let (stop2, records2) = (stop.clone(), records.clone());
        let acceptor = thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_millis(100)))
                            .unwrap();
                        let (s, r) = (stop2.clone(), records2.clone());
                        conns.push(thread::spawn(move || two_writes(conn, &s, &r)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        TwoWrites {
            stop,
            records,
            acceptor: Some(acceptor),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn two_writes(conn: TcpStream, stop: &AtomicBool, records: &AtomicU64) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let ack = billbox_testkit::billing::ACK_OK;
    let mut seen = std::collections::HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let mut length = 0;
        let mut started = false;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(_) if !started && line.is_empty() => continue,
                Err(_) => return,
            }
            started = true;
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        for (port, seq) in billbox_testkit::billing::records_of(&body) {
            if seen.insert((port, seq)) {
                records.fetch_add(1, Ordering::Relaxed);
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
            ack.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(ack.as_bytes()).is_err() {
            return;
        }
    }
}
