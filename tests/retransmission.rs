//! Retransmission the way the AG configures it, end to end: `attempts` on
//! each server make a round; after a whole failed round the task suspends
//! until a new record arrives or `suspend` has passed; nothing is given up.
//! The real binary, real HTTP servers on 127.0.0.1.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::billing::{BillingServer, Log, Mode};
use common::*;

const WAIT: Duration = Duration::from_secs(60);

fn port_toml() -> &'static str {
    "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 100\nbilling_timeout = \"1s\"\n"
}

fn config(site: &Site, a: &BillingServer, b: &BillingServer, extra: &str) -> std::path::PathBuf {
    site.config(&format!(
        "{}[delivery]\nprimary = \"{}\"\nsecondary = \"{}\"\nretry_delay = \"100ms\"\nrequest_timeout = \"5s\"\nattempts = 2\n{extra}",
        port_toml(),
        a.url(),
        b.url(),
    ))
}

/// Feeds records `from..=to` to port `p` over one TCP connection.
fn send(bb: &Billbox, from: u64, to: u64) {
    let mut conn = TcpStream::connect(bb.listen_addr("p")).unwrap();
    let data: String = (from..=to).map(|i| format!("rec {i}\n")).collect();
    conn.write_all(data.as_bytes()).unwrap();
}

/// The attempts in order: 'A'/'B' acknowledged, 'a'/'b' failed.
fn attempts(log: &Log) -> String {
    log.lock()
        .unwrap()
        .iter()
        .map(|r| {
            let c = if r.server == "A" { 'A' } else { 'B' };
            if r.acked() {
                c
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// When the server side saw each request.
fn times(log: &Log) -> Vec<Instant> {
    log.lock().unwrap().iter().map(|r| r.at).collect()
}

/// Waits until the servers saw at least `n` requests.
fn wait_requests(log: &Log, n: usize, limit: Duration) {
    wait_until(limit, || (log.lock().unwrap().len() >= n).then_some(()))
        .unwrap_or_else(|| panic!("fewer than {n} requests: {}", attempts(log)));
}

/// Waits until the servers together acknowledged every seq in `1..=n`,
/// and checks each server got its records in order.
fn assert_all_delivered(servers: &[&BillingServer], n: u64) {
    wait_until(WAIT, || {
        let mut seqs: Vec<u64> = servers
            .iter()
            .flat_map(|s| s.acked())
            .map(|(_, s)| s)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        (seqs == (1..=n).collect::<Vec<_>>()).then_some(())
    })
    .unwrap_or_else(|| panic!("not all {n} records were acknowledged"));
    for s in servers {
        let seqs: Vec<u64> = s.acked().into_iter().map(|(_, s)| s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{}: out of order: {seqs:?}",
            s.name
        );
    }
}

/// The `reason` of every "Delivery resumes" log line, in order.
fn resume_reasons(bb: &Billbox) -> Vec<String> {
    bb.dump()
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("Delivery resumes"))
        })
        .map(|v| v["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn failover_suspends_after_a_round_and_resumes_after_the_interval() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    a.set(Mode::Status(500));
    b.set(Mode::Status(500));
    let config = config(&site, &a, &b, "method = \"failover\"\nsuspend = \"2s\"\n");
    let bb = Billbox::start(&config);
    send(&bb, 1, 3);

    // One round: A-A-B-B, then the task suspends.
    wait_requests(&log, 4, WAIT);
    assert_eq!(&attempts(&log)[..4], "aabb");
    bb.wait_log("Delivery is suspended", None, WAIT)
        .unwrap_or_else(|| panic!("no suspension logged: {:?}", bb.dump()));

    // No attempt during the suspension; the interval ends it, on A.
    wait_requests(&log, 5, WAIT);
    let at = times(&log);
    let gap = at[4].duration_since(at[3]);
    assert!(gap >= Duration::from_millis(1500), "suspended only {gap:?}");
    assert_eq!(&attempts(&log)[..5], "aabba");

    // The next round goes the same way, and suspends again.
    wait_requests(&log, 9, WAIT);
    let order = attempts(&log);
    assert_eq!(&order[..9], "aabbaabba", "{order}");
    let at = times(&log);
    let gap = at[8].duration_since(at[7]);
    assert!(gap >= Duration::from_millis(1500), "suspended only {gap:?}");
    let reasons = resume_reasons(&bb);
    assert!(reasons.len() >= 2, "{reasons:?}");
    assert!(reasons.iter().all(|r| r == "interval"), "{reasons:?}");

    // The servers recover: nothing was given up.
    a.set(Mode::Ack);
    b.set(Mode::Ack);
    assert_all_delivered(&[&a, &b], 3);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn round_robin_suspends_after_a_round_and_a_new_record_resumes_it() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    a.set(Mode::Status(500));
    b.set(Mode::Status(500));
    let config = config(
        &site,
        &a,
        &b,
        "method = \"round_robin\"\nsuspend = \"30s\"\n",
    );
    let bb = Billbox::start(&config);
    send(&bb, 1, 3);

    // One round: A-B-A-B, then the task suspends.
    wait_requests(&log, 4, WAIT);
    assert_eq!(&attempts(&log)[..4], "abab");
    bb.wait_log("Delivery is suspended", None, WAIT)
        .unwrap_or_else(|| panic!("no suspension logged: {:?}", bb.dump()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(attempts(&log), "abab", "an attempt while suspended");

    // The secondary recovers; a new record wakes the task long before the
    // 30 s interval, and the new round starts with the primary.
    b.set(Mode::Ack);
    let fed = Instant::now();
    send(&bb, 4, 4);
    wait_requests(&log, 5, Duration::from_secs(15));
    let at = times(&log);
    assert!(
        at[4].duration_since(fed) < Duration::from_secs(15),
        "the new record did not end the suspension"
    );
    assert_eq!(&attempts(&log)[..5], "ababa");
    bb.wait_log("Delivery resumes", None, WAIT).unwrap();
    assert_eq!(resume_reasons(&bb)[0], "new_record");

    // Round robin stays on the server that answers; every record arrives.
    a.set(Mode::Ack);
    assert_all_delivered(&[&a, &b], 4);
    let order = attempts(&log);
    assert!(order.starts_with("ababaB"), "{order}");
    assert_eq!(bb.terminate(), Some(0));
}
