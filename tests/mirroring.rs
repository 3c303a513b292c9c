//! Bill-record mirroring end to end: the real binary, real HTTP servers on
//! 127.0.0.1 that answer well, badly or not at all.

use std::time::{Duration, Instant};

use billbox_testkit::billing::{BillingServer, Log, Mode};
use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn port_toml() -> &'static str {
    "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 100\nbilling_timeout = \"1s\"\n"
}

fn send(bb: &Billbox, from: u64, to: u64) {
    let data: String = (from..=to).map(|i| format!("rec {i}\n")).collect();
    bb.send("p", data.as_bytes());
}

/// Waits until the servers together acknowledged every seq in `1..=n`.
fn wait_delivered(servers: &[&BillingServer], n: u64) {
    wait_until(WAIT, || {
        let mut seqs: Vec<u64> = servers
            .iter()
            .flat_map(|s| s.acked())
            .map(|(_, s)| s)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        (seqs.len() as u64 >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("not all {n} records were acknowledged"));
}

/// Checks every seq 1..=n was acknowledged, each server got them in order.
fn assert_all_in_order(servers: &[&BillingServer], n: u64) {
    let mut all: Vec<u64> = Vec::new();
    for s in servers {
        let seqs: Vec<u64> = s.acked().into_iter().map(|(_, s)| s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{}: out of order: {seqs:?}",
            s.name
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
}

fn delivery(a: &BillingServer, b: Option<&BillingServer>, extra: &str) -> String {
    let mut s = format!("[delivery]\nprimary = \"{}\"\n", a.url());
    if let Some(b) = b {
        s.push_str(&format!("secondary = \"{}\"\n", b.url()));
    }
    s.push_str("retry_delay = \"50ms\"\nrequest_timeout = \"2s\"\n");
    s.push_str(extra);
    s
}

/// The order of attempts ('A', 'B') and outcomes from the request log.
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

#[test]
fn failover_tries_the_primary_attempts_times_then_the_secondary_and_returns() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    let config = site.config(&format!(
        "{}{}",
        port_toml(),
        delivery(
            &a,
            Some(&b),
            // One packet at a time: each request is one attempt (with a
            // window, the packets in flight when a server starts failing
            // are one attempt; see failing_window_is_one_attempt_...).
            "method = \"failover\"\nattempts = 3\nfailback_after = \"2s\"\nwindow = 1\n"
        )
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 10);
    wait_delivered(&[&a], 10);
    // The primary fails: three attempts on it, then the secondary.
    a.set(Mode::Status(500));
    send(&bb, 11, 20);
    wait_delivered(&[&a, &b], 20);
    let order = attempts(&log);
    assert!(order.starts_with("AAAAAAAAAAaaaB"), "{order}");
    // Delivery stays on the secondary while it answers.
    assert!(order[13..].chars().all(|c| c == 'B'), "{order}");
    // The primary comes back; after failback_after, delivery returns to it.
    a.set(Mode::Ack);
    std::thread::sleep(Duration::from_millis(2200));
    send(&bb, 21, 30);
    wait_delivered(&[&a, &b], 30);
    let order = attempts(&log);
    assert!(order.ends_with('A'), "{order}");
    assert_all_in_order(&[&a, &b], 30);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn failover_when_the_primary_refuses_connections() {
    let site = Site::new();
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    let config = site.config(&format!(
        "{}{}",
        port_toml(),
        delivery(&a, Some(&b), "attempts = 3\nfailback_after = \"1s\"\n")
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 10);
    wait_delivered(&[&a], 10);
    a.down();
    send(&bb, 11, 40);
    wait_delivered(&[&a, &b], 40);
    assert!(b.acked().len() >= 30);
    a.up();
    std::thread::sleep(Duration::from_millis(1200));
    send(&bb, 41, 50);
    wait_delivered(&[&a, &b], 50);
    assert!(
        a.acked().iter().any(|(_, s)| *s > 40),
        "back on the primary"
    );
    assert_all_in_order(&[&a, &b], 50);
    bb.wait_log("Delivery failed", None, WAIT).unwrap();
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn round_robin_alternates_servers_on_every_failed_attempt() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    a.set(Mode::Status(503));
    b.set(Mode::AckError);
    let config = site.config(&format!(
        "{}{}",
        port_toml(),
        delivery(&a, Some(&b), "method = \"round_robin\"\nwindow = 1\n")
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 5);
    wait_until(WAIT, || (attempts(&log).len() >= 6).then_some(())).unwrap();
    b.set(Mode::Ack);
    wait_delivered(&[&a, &b], 5);
    let order = attempts(&log);
    assert!(order.starts_with("abab"), "{order}");
    assert!(order.ends_with("BBBBB"), "{order}");
    assert_all_in_order(&[&a, &b], 5);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn both_servers_down_and_a_sigkill_lose_nothing() {
    let site = Site::new();
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    let mut b = BillingServer::start("B", &log);
    a.down();
    b.down();
    let config = site.config(&format!(
        "{}{}",
        port_toml(),
        delivery(&a, Some(&b), "attempts = 2\n")
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 5000);
    // All 5,000 are in the files, so all are committed.
    wait_until(WAIT, || {
        (site.records_in_files("P", b"\n").len() >= 5000).then_some(())
    })
    .expect("5,000 records committed");
    bb.kill9();
    let bb = Billbox::start(&config);
    bb.wait_log("hold every record", Some("p"), WAIT).unwrap();
    a.up();
    b.up();
    wait_delivered(&[&a, &b], 5000);
    assert_all_in_order(&[&a, &b], 5000);
    // No ack was in flight at the kill: no record was delivered twice.
    let total: usize = a.acked().len() + b.acked().len();
    assert_eq!(total, 5000, "duplicates delivered");
    // Delivered and filed records leave the store (removal runs every second).
    wait_until(WAIT, || site.tmp_files().is_empty().then_some(())).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bb.terminate(), Some(0));
    let stats = site.inspect();
    assert_eq!(stats["p"]["last_seq"], 5000);
    assert_eq!(stats["p"]["records"], 0, "{:?}", stats["p"]);
}

/// A primary that misbehaves in `mode`: every record still reaches the
/// secondary, and a carbon copy is not held up.
fn fault_test(mode: Mode, timeout: &str) {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    let cc = BillingServer::start("C", &log);
    a.set(mode);
    let config = site.config(&format!(
        "{}{}[[carbon_copy]]\nurl = \"{}\"\n",
        port_toml(),
        delivery(&a, Some(&b), "attempts = 1\nfailback_after = \"0\"\n").replace(
            "request_timeout = \"2s\"",
            &format!("request_timeout = \"{timeout}\"")
        ),
        cc.url()
    ));
    let mut bb = Billbox::start(&config);
    send(&bb, 1, 20);
    // The mirror gets every record on arrival, whatever the primary does.
    wait_delivered(&[&cc], 20);
    wait_delivered(&[&a, &b], 20);
    assert_all_in_order(&[&a, &b], 20);
    assert!(a.requests().iter().all(|r| !r.acked()));
    assert!(!a.requests().is_empty(), "the primary was tried");
    assert_eq!(cc.acked().len(), 20);
    assert!(bb.alive());
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_primary_answering_http_500_loses_nothing() {
    fault_test(Mode::Status(500), "2s");
}

#[test]
fn a_primary_answering_ack_error_loses_nothing() {
    fault_test(Mode::AckError, "2s");
}

#[test]
fn a_primary_answering_garbage_loses_nothing() {
    fault_test(Mode::Garbage, "2s");
}

#[test]
fn a_primary_answering_an_empty_body_loses_nothing() {
    fault_test(Mode::Empty, "2s");
}

#[test]
fn a_primary_that_never_answers_loses_nothing() {
    fault_test(Mode::Hang, "500ms");
}

#[test]
fn a_primary_that_resets_mid_answer_loses_nothing() {
    fault_test(Mode::Reset, "2s");
}

#[test]
fn a_primary_answering_one_byte_per_second_loses_nothing() {
    fault_test(Mode::Slow, "1s");
}

#[test]
fn a_hanging_mirror_does_not_hold_up_the_primary() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let cc = BillingServer::start("C", &log);
    cc.set(Mode::Hang);
    // The mirror's requests would each take 30 s to time out; the primary
    // must get all 200 records long before the first of them does.
    let config = site.config(&format!(
        "{}{}[[carbon_copy]]\nurl = \"{}\"\n",
        port_toml(),
        delivery(&a, None, "").replace("request_timeout = \"2s\"", "request_timeout = \"30s\""),
        cc.url()
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 200);
    wait_until(Duration::from_secs(20), || {
        (a.acked().len() >= 200).then_some(())
    })
    .expect("all 200 reached the primary while the mirror hung");
    assert_eq!(
        cc.requests().len(),
        1,
        "the mirror is stuck on its first request"
    );
    assert_all_in_order(&[&a], 200);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn fire_once_mirrors_get_no_retransmissions_and_reliable_mirrors_catch_up() {
    let site = Site::new();
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    let once = BillingServer::start("C", &log);
    let mut sure = BillingServer::start("R", &log);
    once.set(Mode::Status(500));
    sure.down();
    a.down();
    let config = site.config(&format!(
        "{}{}[[carbon_copy]]\nname = \"once\"\nurl = \"{}\"\n[[carbon_copy]]\nname = \"sure\"\nurl = \"{}\"\nreliable = true\n",
        port_toml(),
        delivery(&a, None, ""),
        once.url(),
        sure.url()
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 30);
    // The fire-once mirror saw each record once (and refused it).
    wait_until(WAIT, || (once.requests().len() >= 30).then_some(())).unwrap();
    once.set(Mode::Ack);
    // The primary comes back and retransmits; the mirrors get nothing again.
    a.up();
    wait_delivered(&[&a], 30);
    sure.up();
    wait_delivered(&[&sure], 30);
    send(&bb, 31, 35);
    wait_delivered(&[&a], 35);
    wait_delivered(&[&sure], 35);
    wait_until(WAIT, || (once.acked().len() >= 5).then_some(())).unwrap();
    let mut seen: Vec<u64> = once
        .requests()
        .iter()
        .flat_map(|r| r.records.clone())
        .map(|(_, s)| s)
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=35).collect::<Vec<_>>(),
        "each record offered to the fire-once mirror exactly once"
    );
    assert_all_in_order(&[&sure], 35);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_full_store_blocks_ingest_and_drops_nothing() {
    let site = Site::new();
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    a.down();
    let config = site.config(&format!(
        "[store]\nmax_records = 100\nwhen_full = \"block\"\n{}{}",
        port_toml(),
        delivery(&a, None, "")
    ));
    let bb = Billbox::start(&config);
    let addr = bb.listen_addr("p");
    let feeder = std::thread::spawn(move || {
        let mut conn = TcpPbx::connect(addr).unwrap();
        for i in 1..=300 {
            conn.send(format!("rec {i}\n").as_bytes()).unwrap();
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    bb.wait_log("The store is full", None, WAIT)
        .expect("the store filled up and said so");
    // While full, reading stops: the files do not grow past the capacity.
    std::thread::sleep(Duration::from_millis(1500));
    let held = site.records_in_files("P", b"\n").len();
    assert!(held <= 100 + 10, "{held} records taken in while full");
    a.up();
    feeder.join().unwrap();
    wait_delivered(&[&a], 300);
    assert_all_in_order(&[&a], 300);
    assert_eq!(
        bb.count_logs("delivery of the oldest records is given up", None),
        0
    );
    bb.wait_log("has space again", None, WAIT).unwrap();
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn drop_oldest_drops_exactly_the_counted_records() {
    let site = Site::new();
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    a.down();
    let config = site.config(&format!(
        "[store]\nmax_records = 100\nwhen_full = \"drop_oldest\"\n{}{}",
        port_toml(),
        delivery(&a, None, "")
    ));
    let bb = Billbox::start(&config);
    send(&bb, 1, 300);
    wait_until(WAIT, || {
        (site.records_in_files("P", b"\n").len() >= 300).then_some(())
    })
    .expect("all 300 taken in and filed");
    let dropped: u64 = bb
        .dump()
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("oldest records is given up"))
        })
        .map(|v| v["records"].as_u64().unwrap())
        .sum();
    assert_eq!(dropped, 200);
    a.up();
    wait_delivered(&[&a], 100);
    std::thread::sleep(Duration::from_millis(500));
    let seqs: Vec<u64> = a.acked().into_iter().map(|(_, s)| s).collect();
    // Exactly the 200 oldest were given up; the newest 100 were delivered.
    assert_eq!(seqs, (201..=300).collect::<Vec<_>>());
    // The files keep every record, dropped or not.
    assert_eq!(site.records_in_files("P", b"\n").len(), 300);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn max_in_flight_posts_for_several_ports_at_once_each_in_order() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    a.set(Mode::Delay(200));
    let ports = "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\n\
                 [[ports]]\nname = \"q\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\n";
    let config = site.config(&format!(
        "{ports}{}",
        delivery(&a, None, "max_in_flight = 2\n")
    ));
    let bb = Billbox::start(&config);
    for port in ["p", "q"] {
        let mut conn = TcpPbx::connect(bb.listen_addr(port)).unwrap();
        let data: String = (1..=6).map(|i| format!("{port} {i}\n")).collect();
        conn.send(data.as_bytes()).unwrap();
    }
    wait_until(WAIT, || (a.acked().len() >= 12).then_some(())).expect("all 12 acknowledged");
    let requests = a.requests();
    // Requests for the two ports overlapped: some arrived within the 200 ms
    // another was being answered.
    let overlapping = requests
        .windows(2)
        .filter(|w| w[1].at.duration_since(w[0].at) < Duration::from_millis(150))
        .count();
    assert!(overlapping >= 3, "requests did not overlap: {requests:?}");
    for port in ["p", "q"] {
        let seqs: Vec<u64> = a
            .acked()
            .into_iter()
            .filter(|(p, _)| p == port)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "{port} in order");
    }
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_primary_answering_a_huge_body_loses_nothing() {
    fault_test(Mode::Huge(10 << 20), "5s");
}

#[test]
fn a_primary_answering_deeply_nested_xml_loses_nothing() {
    static NESTED: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| {
        let s = format!(
            "<USG COMMAND=\"RMTLOG_ACK\">{}<ACK_VALUE>OK</ACK_VALUE><ERROR_CODE>1</ERROR_CODE>{}</USG>",
            "<A>".repeat(5000),
            "</A>".repeat(5000)
        );
        Box::leak(s.into_boxed_str())
    });
    fault_test(Mode::Body(&NESTED), "2s");
}

#[test]
fn a_primary_answering_with_entities_loses_nothing() {
    fault_test(
        Mode::Body(
            "<?xml version=\"1.0\"?><!DOCTYPE USG [<!ENTITY ok \"OK\"><!ENTITY lol \"lol&lol;&lol;\">]>\
             <USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>&ok;</ACK_VALUE><ERROR_CODE>1</ERROR_CODE></USG>",
        ),
        "2s",
    );
}

#[test]
fn a_primary_answering_malformed_xml_loses_nothing() {
    fault_test(
        Mode::Body("<USG COMMAND=\"RMTLOG_ACK\"><ACK_VALUE>OK</ERROR_CODE><ERROR_CODE>1</USG"),
        "2s",
    );
}

#[test]
fn sigterm_while_the_store_is_full_commits_what_was_read_and_exits() {
    let site = Site::new();
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    a.down();
    let config = site.config(&format!(
        "[store]\nmax_records = 50\nwhen_full = \"block\"\n{}{}",
        port_toml(),
        delivery(&a, None, "")
    ));
    let bb = Billbox::start(&config);
    let addr = bb.listen_addr("p");
    let feeder = std::thread::spawn(move || {
        let mut conn = TcpPbx::connect(addr).unwrap();
        for i in 1..=2000 {
            if conn.send(format!("rec {i}\n").as_bytes()).is_err() {
                return;
            }
            // Paced, so the records come in several appends (one read of
            // everything would be one commit, and the store would never be
            // asked for more while full).
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    bb.wait_log("The store is full", None, WAIT).unwrap();
    // Readers wait for a commit the full store holds back; SIGTERM must
    // still commit what they read and exit cleanly.
    assert_eq!(bb.terminate(), Some(0));
    feeder.join().unwrap();
    let stats = site.inspect();
    let last = stats["p"]["last_seq"].as_u64().unwrap();
    assert!(
        last > 50,
        "the held records were committed at the stop: last_seq {last}"
    );
    // Nothing committed is lost: the next start files every record.
    let bb = Billbox::start(&config);
    wait_until(WAIT, || {
        (site.records_in_files("P", b"\n").len() as u64 >= last).then_some(())
    })
    .expect("every committed record filed");
    assert_eq!(bb.terminate(), Some(0));
    let filed = site.records_in_files("P", b"\n");
    let sent: Vec<Vec<u8>> = (1..=last)
        .map(|i| format!("rec {i}\n").into_bytes())
        .collect();
    assert_exactly_once(&sent, &filed, "p");
}

// Retransmission the way the AG configures it: `attempts` on each server
// make a round; after a whole failed round the task suspends until a new
// record arrives or `suspend` has passed; nothing is given up.

/// A port and both servers, failing over after 2 attempts (the AG's
/// retransmission settings), one packet at a time (so each request the
/// servers see is one attempt), plus `extra` [delivery] lines.
fn retransmission_config(
    site: &Site,
    a: &BillingServer,
    b: &BillingServer,
    extra: &str,
) -> std::path::PathBuf {
    site.config(&format!(
        "{}[delivery]\nprimary = \"{}\"\nsecondary = \"{}\"\nretry_delay = \"100ms\"\nrequest_timeout = \"5s\"\nattempts = 2\nwindow = 1\n{extra}",
        port_toml(),
        a.url(),
        b.url(),
    ))
}

/// Both servers answering 500 to a billbox with the AG's retransmission
/// settings plus `extra`, and records 1..=3 sent.
struct Retransmitting {
    _site: Site,
    log: Log,
    a: BillingServer,
    b: BillingServer,
    bb: Billbox,
}

fn retransmitting(extra: &str) -> Retransmitting {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("A", &log);
    let b = BillingServer::start("B", &log);
    a.set(Mode::Status(500));
    b.set(Mode::Status(500));
    let bb = Billbox::start(&retransmission_config(&site, &a, &b, extra));
    send(&bb, 1, 3);
    Retransmitting {
        _site: site,
        log,
        a,
        b,
        bb,
    }
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
    let Retransmitting {
        log,
        a,
        b,
        bb,
        _site,
    } = retransmitting("method = \"failover\"\nsuspend = \"2s\"\n");

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
    wait_delivered(&[&a, &b], 3);
    assert_all_in_order(&[&a, &b], 3);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn round_robin_suspends_after_a_round_and_a_new_record_resumes_it() {
    let Retransmitting {
        log,
        a,
        b,
        bb,
        _site,
    } = retransmitting("method = \"round_robin\"\nsuspend = \"30s\"\n");

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
    wait_delivered(&[&a, &b], 4);
    assert_all_in_order(&[&a, &b], 4);
    let order = attempts(&log);
    assert!(order.starts_with("ababaB"), "{order}");
    assert_eq!(bb.terminate(), Some(0));
}
