//! Raw TCP feeds (`[[tcp_feed]]`): billing software connects to billbox and
//! reads the records' bytes exactly as the PBX sent them. Real billbox,
//! real sockets on 127.0.0.1.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::*;

/// Two TCP ports (files of 100,000 records, so the store keeps them) and
/// the `feeds` tables.
fn start(site: &Site, feeds: &str) -> Billbox {
    let config = site.config(&format!(
        "[[ports]]\nname = \"p1\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\n\
         billing_records = 100000\nbilling_timeout = 0\n\n\
         [[ports]]\nname = \"p2\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\n\
         billing_records = 100000\nbilling_timeout = 0\n\n{feeds}"
    ));
    Billbox::start(&config)
}

fn feed(name: &str, extra: &str) -> String {
    format!("[[tcp_feed]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\n{extra}\n")
}

/// The address feed `name` listens on, from its log line.
fn feed_addr(bb: &Billbox, name: &str) -> SocketAddr {
    let line = wait_until(Duration::from_secs(20), || {
        bb.logs
            .lock()
            .unwrap()
            .iter()
            .find(|v| {
                log_matches(v, "The TCP feed is listening", None)
                    && v["feed"].as_str() == Some(name)
            })
            .cloned()
    })
    .unwrap_or_else(|| panic!("feed {name} never listened: {:?}", bb.dump()));
    line["listen"].as_str().unwrap().parse().unwrap()
}

/// A record of port `port`, with bytes a text protocol would mangle.
fn record(port: &str, i: u64) -> Vec<u8> {
    let mut r = format!("{port} call {i:06} \u{00e9}").into_bytes();
    r.extend_from_slice(&[0x00, 0xff, b'\n']);
    r
}

fn records(port: &str, range: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    range.flat_map(|i| record(port, i)).collect()
}

/// A billing PC: connects, reads.
struct Reader {
    conn: TcpStream,
}

impl Reader {
    fn connect(addr: SocketAddr) -> Reader {
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Reader { conn }
    }

    /// Reads until `n` bytes are in (at most 30 s).
    fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while got.len() < n && Instant::now() < deadline {
            match self.conn.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        got
    }

    /// Nothing more arrives within `wait`.
    fn quiet_for(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.conn.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(_) => {}
            }
        }
        got
    }

    /// Whether billbox closed this connection (within 10 s).
    fn closed_by_billbox(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.conn.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// A client with a 4 KiB receive buffer: what it does not read stays in
/// billbox's socket.
fn slow_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    TcpStream::from(socket)
}

fn send(pbx: &mut TcpPbx, port: &str, range: std::ops::RangeInclusive<u64>) {
    pbx.send(&records(port, range)).unwrap();
}

#[test]
fn a_reconnecting_client_resumes_after_the_last_record_written_to_it() {
    let site = Site::new();
    let bb = start(&site, &feed("office", ""));
    let addr = feed_addr(&bb, "office");
    let mut p1 = TcpPbx::connect(bb.listen_addr("p1")).unwrap();

    let mut a = Reader::connect(addr);
    send(&mut p1, "p1", 1..=10);
    let want = records("p1", 1..=10);
    assert_eq!(a.read_bytes(want.len()), want, "byte for byte");
    drop(a);
    // Stored while no client reads.
    send(&mut p1, "p1", 11..=20);
    wait_until(Duration::from_secs(10), || {
        (bb.count_logs("went away", None) > 0).then_some(())
    });
    let mut b = Reader::connect(addr);
    let want = records("p1", 11..=20);
    assert_eq!(b.read_bytes(want.len()), want, "resumes after record 10");
    // A new connection replaces the current client.
    let mut c = Reader::connect(addr);
    assert!(b.closed_by_billbox(), "the replaced client is closed");
    send(&mut p1, "p1", 21..=25);
    let want = records("p1", 21..=25);
    assert_eq!(c.read_bytes(want.len()), want);
    assert!(
        c.quiet_for(Duration::from_millis(500)).is_empty(),
        "nothing twice"
    );
    assert_eq!(bb.terminate(), Some(0));

    // The cursor is durable: after a restart the feed goes on from 25.
    let bb = start(&site, &feed("office", ""));
    let addr = feed_addr(&bb, "office");
    let mut p1 = TcpPbx::connect(bb.listen_addr("p1")).unwrap();
    let mut d = Reader::connect(addr);
    send(&mut p1, "p1", 26..=30);
    let want = records("p1", 26..=30);
    assert_eq!(d.read_bytes(want.len()), want);
    assert_eq!(bb.terminate(), Some(0));
}

/// A client that connects and never reads (a 4 KiB receive buffer): the
/// port goes on, another feed gets every record, and the
/// stalled feed is seen to be behind.
#[test]
fn a_stalled_client_holds_up_nothing() {
    let site = Site::new();
    let bb = start(
        &site,
        &(feed("stalled", "ports = [\"p1\"]") + &feed("live", "ports = [\"p1\"]")),
    );
    let stalled = slow_client(feed_addr(&bb, "stalled"));
    let mut live = Reader::connect(feed_addr(&bb, "live"));
    let n = 20_000u64;
    // 20,000 records of about 300 bytes: far more than the sockets buffer.
    let pad = "x".repeat(280);
    let want: Vec<u8> = (1..=n)
        .flat_map(|i| format!("p1 call {i:06} {pad}\n").into_bytes())
        .collect();
    let mut p1 = TcpPbx::connect(bb.listen_addr("p1")).unwrap();
    for chunk in want.chunks(64 * 1024) {
        p1.send(chunk).unwrap();
    }
    assert_eq!(
        live.read_bytes(want.len()),
        want,
        "the other feed has everything"
    );
    let metrics = bb.metrics();
    let committed = metric(&metrics, "billbox_records_received_total{port=\"p1\"}");
    assert_eq!(
        committed,
        Some(n as f64),
        "every record committed: {metrics}"
    );
    let stalled_sent =
        metric(&metrics, "billbox_feed_records_total{feed=\"stalled\"}").unwrap_or(0.0);
    assert!(
        stalled_sent < n as f64,
        "the stalled feed is behind ({stalled_sent} of {n})"
    );
    drop(stalled);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn two_feeds_carry_one_port_each() {
    let site = Site::new();
    let bb = start(
        &site,
        &(feed("one", "ports = [\"p1\"]") + &feed("two", "ports = [\"p2\"]")),
    );
    let mut one = Reader::connect(feed_addr(&bb, "one"));
    let mut two = Reader::connect(feed_addr(&bb, "two"));
    let mut p1 = TcpPbx::connect(bb.listen_addr("p1")).unwrap();
    let mut p2 = TcpPbx::connect(bb.listen_addr("p2")).unwrap();
    send(&mut p1, "p1", 1..=50);
    send(&mut p2, "p2", 1..=30);
    let (w1, w2) = (records("p1", 1..=50), records("p2", 1..=30));
    assert_eq!(one.read_bytes(w1.len()), w1);
    assert_eq!(two.read_bytes(w2.len()), w2);
    assert!(
        one.quiet_for(Duration::from_millis(300)).is_empty(),
        "no p2 record on feed one"
    );
    assert!(
        two.quiet_for(Duration::from_millis(300)).is_empty(),
        "no p1 record on feed two"
    );
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_client_outside_the_allow_list_is_refused() {
    let site = Site::new();
    let bb = start(&site, &feed("office", "allow = [\"10.9.9.0/24\"]"));
    let addr = feed_addr(&bb, "office");
    let mut p1 = TcpPbx::connect(bb.listen_addr("p1")).unwrap();
    send(&mut p1, "p1", 1..=5);
    let mut from_here = Reader::connect(addr);
    assert!(from_here.closed_by_billbox(), "127.0.0.1 is not allowed");
    bb.wait_log(
        "not in its allow list was refused",
        None,
        Duration::from_secs(5),
    )
    .expect("the refusal is logged");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn from_new_gives_a_client_only_what_is_stored_after_it_connected() {
    let site = Site::new();
    let bb = start(&site, &feed("live", "from = \"new\""));
    let addr = feed_addr(&bb, "live");
    let mut p1 = TcpPbx::connect(bb.listen_addr("p1")).unwrap();
    send(&mut p1, "p1", 1..=10);
    wait_until(Duration::from_secs(10), || {
        (metric(&bb.metrics(), "billbox_records_received_total{port=\"p1\"}") == Some(10.0))
            .then_some(())
    })
    .expect("the first ten are stored");
    let mut c = Reader::connect(addr);
    // The connection is accepted before the next records arrive.
    bb.wait_log(
        "A client connected to the TCP feed",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    send(&mut p1, "p1", 11..=15);
    let want = records("p1", 11..=15);
    assert_eq!(c.read_bytes(want.len()), want);
    assert_eq!(bb.terminate(), Some(0));
}

/// Refused connections arriving while a batch is on its way to a slow
/// client do not make the feed write any of it twice (a write interrupted
/// by the accept used to start the batch over).
#[test]
fn refused_connections_during_a_write_duplicate_nothing() {
    let site = Site::new();
    let bb = start(&site, &feed("office", "allow = [\"127.0.0.1\"]"));
    let addr = feed_addr(&bb, "office");
    let client = slow_client(addr);
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reader = Reader { conn: client };
    let pad = "y".repeat(200);
    let want: Vec<u8> = (1..=30_000u64)
        .flat_map(|i| format!("p1 call {i:06} {pad}\n").into_bytes())
        .collect();
    let mut p1 = TcpPbx::connect(bb.listen_addr("p1")).unwrap();
    p1.send(&want).unwrap();
    // While the client reads slowly, connections from 127.0.0.2 (not
    // allowed) come and are refused.
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    while got.len() < want.len() && Instant::now() < deadline {
        if refused < 40 {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
                .unwrap();
            if s.connect(&addr.into()).is_ok() {
                refused += 1;
            }
        }
        match reader.conn.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        refused >= 10,
        "connections were refused meanwhile ({refused})"
    );
    assert_eq!(got.len(), want.len(), "nothing twice, nothing missing");
    assert!(got == want, "byte for byte");
    assert!(bb.count_logs("not in its allow list was refused", None) >= 10);
    assert_eq!(bb.terminate(), Some(0));
}
