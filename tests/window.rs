//! The send window end to end: several packets in flight on a keep-alive
//! connection (HTTP/1.1 pipelining), the cursor moving over the
//! acknowledged prefix only, servers that fail in the middle of a window,
//! close after each answer, or must see one request at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use billbox_testkit::billing::{BillingServer, Log, Mode};
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn port_toml() -> &'static str {
    "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\n"
}

fn send(bb: &Billbox, from: u64, to: u64) {
    let data: String = (from..=to).map(|i| format!("rec {i}\n")).collect();
    bb.send("p", data.as_bytes());
}

fn config(site: &Site, primary: &str, extra: &str) -> std::path::PathBuf {
    site.config(&format!(
        "{}[delivery]\nprimary = \"{primary}\"\nretry_delay = \"50ms\"\nrequest_timeout = \"5s\"\n{extra}",
        port_toml()
    ))
}

/// Waits until `server` acknowledged every seq in `1..=n`.
fn wait_acked(server: &BillingServer, n: u64) {
    wait_until(WAIT, || {
        let mut seqs: Vec<u64> = server.acked().into_iter().map(|(_, s)| s).collect();
        seqs.sort_unstable();
        seqs.dedup();
        (seqs.len() as u64 >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("not all {n} records were acknowledged"));
}

/// How often each seq was in a request, in the order first seen.
fn requested(server: &BillingServer) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = Vec::new();
    for r in server.requests() {
        for (_, seq) in r.records {
            match out.iter_mut().find(|(s, _)| *s == seq) {
                Some((_, n)) => *n += 1,
                None => out.push((seq, 1)),
            }
        }
    }
    out
}

#[test]
fn a_packet_refused_in_the_middle_of_a_window_goes_again_and_its_successors_do_not() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    // Slow answers keep the window full; the fifth record's packet is
    // refused once while those after it are in flight.
    a.set(Mode::Delay(20));
    a.refuse_once(5);
    let config = config(&site, &a.url(), "window = 16\n");
    let bb = Billbox::start(&config);
    send(&bb, 1, 40);
    wait_acked(&a, 40);
    let seen = requested(&a);
    // First sent in sequence order (pipelined, nothing failed before 5).
    let order: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(order, (1..=40).collect::<Vec<_>>());
    // Only the refused one went twice: the acknowledgements of its
    // successors were kept while the cursor waited at it.
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| *n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(twice, vec![5], "{seen:?}");
    let mut acked: Vec<u64> = a.acked().into_iter().map(|(_, s)| s).collect();
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=40).collect::<Vec<_>>(),
        "each acknowledged once"
    );
    assert_eq!(bb.terminate(), Some(0));
    // The cursor is past all 40: a restart sends only what is new.
    let bb = Billbox::start(&config);
    send(&bb, 41, 41);
    wait_acked(&a, 41);
    std::thread::sleep(Duration::from_millis(300));
    let again: Vec<(u64, usize)> = requested(&a)
        .into_iter()
        .filter(|&(s, n)| n > 1 && s != 5)
        .collect();
    assert!(again.is_empty(), "sent again after the restart: {again:?}");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_failing_window_is_one_attempt_and_then_one_packet_at_a_time() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    a.set(Mode::Status(500));
    let config = site.config(&format!(
        "{}[delivery]\nprimary = \"{}\"\nsecondary = \"{}\"\nretry_delay = \"50ms\"\nattempts = 2\nwindow = 8\n",
        port_toml(),
        a.url(),
        b.url()
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 20);
    wait_acked(&b, 20);
    // The first window went to A at once and failed as one attempt; one
    // more packet alone was A's second attempt; then B took everything.
    let requests = log.lock().unwrap().clone();
    let to_a = requests.iter().filter(|r| r.server == "A").count();
    assert!(requests.iter().take(to_a).all(|r| r.server == "A"));
    assert!((2..=9).contains(&to_a), "{to_a} requests to A");
    let last_a = requests.iter().rposition(|r| r.server == "A").unwrap();
    // The packet of A's second attempt went alone: nothing else was in
    // flight to A, so it carried the first record again.
    assert_eq!(requests[last_a].records[0].1, 1);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_server_that_closes_after_each_answer_gets_every_record_once_without_failures() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    a.set(Mode::AckClose);
    let bb = Billbox::start(&config(&site, &a.url(), ""));
    send(&bb, 1, 30);
    wait_acked(&a, 30);
    let mut acked: Vec<u64> = a.acked().into_iter().map(|(_, s)| s).collect();
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "in order: {acked:?}");
    acked.dedup();
    assert_eq!(acked.len(), 30);
    // The packets queued behind each close were not attempts.
    let failures = bb
        .dump()
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("Delivery failed"))
        })
        .count();
    assert_eq!(failures, 0, "a close after an answer counted as a failure");
    assert_eq!(bb.terminate(), Some(0));
}

/// A server on one connection that, after reading each request, waits
/// 100 ms and notes whether the next request had already arrived (the
/// client pipelines), then acknowledges. Serves `n` requests.
fn peeking_server(n: usize) -> (SocketAddr, JoinHandle<Vec<bool>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn.set_nodelay(true).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut out = conn.try_clone().unwrap();
        let peek = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let mut ahead = Vec::new();
        for _ in 0..n {
            let mut length = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    return ahead;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; length];
            r.read_exact(&mut body).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let mut byte = [0u8; 1];
            peek.set_nonblocking(true).unwrap();
            let waiting = !r.buffer().is_empty() || peek.peek(&mut byte).is_ok_and(|n| n > 0);
            peek.set_nonblocking(false).unwrap();
            ahead.push(waiting);
            let ack = billbox_testkit::billing::ACK_OK;
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{ack}",
                ack.len()
            )
            .unwrap();
        }
        ahead
    });
    (addr, handle)
}

#[test]
fn with_window_1_a_request_waits_for_the_answer_before() {
    let site = Site::new();
    let (addr, server) = peeking_server(6);
    let bb = Billbox::start(&config(
        &site,
        &format!("http://{addr}/billing"),
        "window = 1\nconnections = 1\n",
    ));
    send(&bb, 1, 6);
    let ahead = server.join().unwrap();
    assert_eq!(ahead, vec![false; 6], "a request came before an answer");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn with_a_window_requests_go_out_before_the_answers_come_back() {
    let site = Site::new();
    let (addr, server) = peeking_server(6);
    let bb = Billbox::start(&config(
        &site,
        &format!("http://{addr}/billing"),
        "window = 8\n",
    ));
    send(&bb, 1, 6);
    let ahead = server.join().unwrap();
    // All six are out at once: each but the last had the next behind it.
    assert_eq!(ahead[..5], [true; 5], "{ahead:?}");
    assert_eq!(bb.terminate(), Some(0));
}
