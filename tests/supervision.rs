//! Supervision end to end: faults injected into the real binary's actors
//! (`BILLBOX_FAILPOINTS`, compiled into test builds only) while records
//! stream in over TCP and a pty. A panicking actor is restarted (logged
//! once at ERROR, counted), every port keeps its link (a restarted reader
//! too: it keeps its connection or device), and every record is in exactly
//! one file and acknowledged once. An actor that keeps failing stops
//! billbox with status 3, and the next start loses nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use billbox_testkit::billing::{BillingServer, Log};
use billbox_testkit::pbx::{Link, ListeningPbx, PtyPbx, TcpPbx};
use billbox_testkit::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// Records each port gets.
const RECORDS: u64 = 200;

/// Two TCP ports (`p` connects out to `pbx`, `q` listens), a serial port
/// `s` on `pty` if any, a primary, and `extra` config.
fn config(
    site: &Site,
    pbx: SocketAddr,
    pty: Option<&PtyPbx>,
    primary: &BillingServer,
    extra: &str,
) -> std::path::PathBuf {
    let serial = pty.map_or(String::new(), |pty| {
        format!(
            "[[ports]]\nname = \"s\"\ndevice = \"{}\"\nalias = \"S\"\nbilling_records = 40\nbilling_timeout = \"1s\"\n",
            pty.path().display()
        )
    });
    site.config(&format!(
        r#"
{serial}
[[ports]]
name = "p"
connect = "{pbx}"
alias = "P"
billing_records = 40
billing_timeout = "1s"
reconnect_max = "1s"

[[ports]]
name = "q"
listen = "127.0.0.1:0"
alias = "Q"
billing_records = 40
billing_timeout = "1s"

# One packet in flight (one connection, window 1): a destination loop that
# panics then has no answer on its way, so every record is acknowledged
# exactly once (with more in flight, the packets whose answers were on their
# way go again: at least once, as after a SIGKILL).
[delivery]
primary = "{}"
retry_delay = "100ms"
window = 1
connections = 1
{extra}
"#,
        primary.url()
    ))
}

fn record(port: &str, i: u64) -> Vec<u8> {
    format!("{port} call {i:05}\n").into_bytes()
}

/// The PBX that billbox's port `p` connects to: sends `RECORDS` records in
/// bursts of 10, each once the previous burst is committed, on whatever
/// connection billbox has open (a restarted reader connects again).
fn serve_pbx(pbx: ListeningPbx, metrics: SocketAddr) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let committed = || {
            let (_, page) = http_get(metrics, "/metrics");
            metric(&page, "billbox_records_received_total{port=\"p\"}").unwrap_or(0.0) as u64
        };
        let mut conn: Option<TcpPbx> = None;
        let mut sent = 0;
        let deadline = std::time::Instant::now() + WAIT;
        while sent < RECORDS && std::time::Instant::now() < deadline {
            // A connection whose far end went away reads as end of stream.
            let alive = conn.as_ref().is_some_and(|c| {
                let mut s = c.stream();
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 1];
                let gone = matches!(s.read(&mut b), Ok(0));
                s.set_nonblocking(false).unwrap();
                !gone
            });
            if !alive {
                conn = Some(pbx.accept(WAIT).unwrap());
            }
            let burst: Vec<u8> = (sent + 1..=sent + 10)
                .flat_map(|i| record("p", i))
                .collect();
            conn.as_mut().unwrap().send(&burst).unwrap();
            let target = sent + 10;
            wait_until(WAIT, || (committed() >= target).then_some(()))
                .expect("the burst is committed");
            sent = target;
            // Give a failing reader time to fail before the next burst.
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Feeds port `q` over one connection that must stay up throughout,
/// without waiting for commits (a restarted reader finds the bytes sent
/// meanwhile in the kernel's buffer).
fn feed_q(addr: SocketAddr) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = TcpPbx::connect(addr).unwrap();
        for i in 1..=RECORDS {
            conn.send(&record("q", i)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Feeds serial port `s` as a PBX does: records at its own pace.
fn feed_s(mut pty: PtyPbx) -> std::thread::JoinHandle<PtyPbx> {
    std::thread::spawn(move || {
        for i in 1..=RECORDS {
            pty.send(&record("s", i)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        pty
    })
}

/// The ports of a [`stream_through`] run.
const PORTS: [&str; 3] = ["p", "q", "s"];

/// A run of [`stream_through`]: billbox still running, and its servers.
/// Bind `_site` and `_pty` where it is taken apart (`..` would drop them at
/// once: billbox's spool gone, and its pty's number free for another test
/// while billbox still reads it).
struct Run {
    _site: Site,
    _pty: PtyPbx,
    bb: Billbox,
    /// The fire-once carbon copy `mirror` and the reliable one `audit`.
    mirror: BillingServer,
    audit: BillingServer,
}

/// The sequences of `port` that `server` acknowledged, sorted.
fn acked_by(server: &BillingServer, port: &str) -> Vec<u64> {
    let mut seqs: Vec<u64> = server
        .acked()
        .into_iter()
        .filter(|(p, _)| p == port)
        .map(|(_, s)| s)
        .collect();
    seqs.sort_unstable();
    seqs
}

/// Runs billbox with `failpoints` under a steady stream on both ports, with
/// a primary, a fire-once carbon copy (`mirror`) and a reliable one
/// (`audit`), and checks that nothing was lost or doubled: every record in
/// exactly one file, acknowledged once by the primary and by `audit`, and
/// never twice by `mirror`.
fn stream_through(failpoints: &str) -> Run {
    let site = Site::new();
    let log = Log::default();
    let primary = BillingServer::start("A", &log);
    let mirror = BillingServer::start("M", &log);
    let audit = BillingServer::start("R", &log);
    let pbx = ListeningPbx::bind().unwrap();
    let extra = format!(
        "\n[[carbon_copy]]\nname = \"mirror\"\nurl = \"{}\"\n\n[[carbon_copy]]\nname = \"audit\"\nurl = \"{}\"\nreliable = true\n",
        mirror.url(),
        audit.url()
    );
    let pty = PtyPbx::open().unwrap();
    let config = config(&site, pbx.addr(), Some(&pty), &primary, &extra);
    let bb = Billbox::start_with_env(&config, &[("BILLBOX_FAILPOINTS", failpoints)]);
    let q = bb.listen_addr("q");
    let p_feed = serve_pbx(pbx, bb.metrics_addr());
    let q_feed = feed_q(q);
    // Bytes sent before billbox opened the device would not reach it.
    bb.wait_log("link is up", Some("s"), WAIT)
        .expect("port s's link comes up");
    let s_feed = feed_s(pty);
    q_feed.join().unwrap();
    p_feed.join().unwrap();
    // The device stays until the records are checked.
    let _pty = s_feed.join().unwrap();
    for port in PORTS {
        let alias = port.to_uppercase();
        let sent: Vec<Vec<u8>> = (1..=RECORDS).map(|i| record(port, i)).collect();
        wait_until(WAIT, || {
            (site.records_in_files(&alias, b"\n").len() >= sent.len()).then_some(())
        });
        assert_exactly_once(&sent, &site.records_in_files(&alias, b"\n"), &alias);
        for server in [&primary, &audit] {
            wait_until(WAIT, || {
                (acked_by(server, port).len() as u64 >= RECORDS).then_some(())
            });
            assert_eq!(
                acked_by(server, port),
                (1..=RECORDS).collect::<Vec<_>>(),
                "{}, port {port}: acknowledged once each",
                server.name
            );
        }
        let copies = acked_by(&mirror, port);
        let mut distinct = copies.clone();
        distinct.dedup();
        assert_eq!(
            copies, distinct,
            "port {port}: the fire-once copy got a record twice"
        );
    }
    Run {
        _site: site,
        _pty,
        bb,
        mirror,
        audit,
    }
}

/// The restarts logged: (actor, subject, cause).
fn restarts(bb: &Billbox) -> Vec<(String, String, String)> {
    bb.dump()
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("An actor failed and is restarted"))
        })
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("actor"), s("subject"), s("cause"))
        })
        .collect()
}

fn assert_restarted(bb: &Billbox, actor: &str, subject: &str, label: &str) {
    let seen = restarts(bb);
    assert!(
        seen.iter()
            .any(|(a, s, c)| a == actor && s == subject && c.contains("injected panic")),
        "no restart of {actor} {subject}: {seen:?}"
    );
    let (_, page) = bb.get("/metrics");
    let series = if label.is_empty() {
        format!("billbox_actor_restarts_total{{actor=\"{actor}\"}}")
    } else {
        format!("billbox_actor_restarts_total{{actor=\"{actor}\",{label}=\"{subject}\"}}")
    };
    assert!(
        metric(&page, &series).is_some_and(|n| n >= 1.0),
        "{series} in\n{page}"
    );
    // Every port's link stayed up the whole time (a restarted reader's
    // too): one link each, never again.
    for port in PORTS {
        let links: Vec<Value> = bb
            .dump()
            .into_iter()
            .filter(|v| {
                v["port"] == port && v["message"].as_str().is_some_and(|m| m.contains("link"))
            })
            .collect();
        assert_eq!(
            link_ups(bb, port),
            1,
            "port {port}'s link went down and up: {links:?}"
        );
    }
}

/// How often `port`'s link came up.
fn link_ups(bb: &Billbox, port: &str) -> usize {
    bb.dump()
        .iter()
        .filter(|v: &&Value| {
            v["port"] == port
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("link is up"))
        })
        .count()
}

#[test]
fn a_rotator_that_panics_is_restarted_and_files_every_record_once() {
    let Run {
        bb, _site, _pty, ..
    } = stream_through("rotator.write=panic@6");
    let seen = restarts(&bb);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "rotator");
    let subject = seen[0].1.clone();
    assert_restarted(&bb, "rotator", &subject, "port");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn the_store_actor_restarts_after_a_panic_and_readers_send_again() {
    let Run {
        bb, _site, _pty, ..
    } = stream_through("store.commit=panic@8");
    assert_restarted(&bb, "store", "store", "");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_store_actor_panic_after_a_flush_keeps_its_answers_and_doubles_nothing() {
    // The records of that commit are durable and answered before the
    // fault; after the restart no reader sends them again.
    let Run {
        bb, _site, _pty, ..
    } = stream_through("store.committed=panic@10");
    assert_restarted(&bb, "store", "store", "");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_store_actor_panic_recording_an_ack_records_it_after_the_restart() {
    // The server had the batch: its acknowledgement is recorded once the
    // store actor is back, not the batch sent again (acknowledged once).
    let Run {
        bb, _site, _pty, ..
    } = stream_through("store.ack=panic@30");
    assert_restarted(&bb, "store", "store", "");
    assert!(bb.count_logs("Recording an acknowledgement failed; trying again", None) >= 1);
    assert_eq!(bb.count_logs("the records will be sent again", None), 0);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_delivery_loop_that_panics_is_restarted_and_delivers_everything() {
    let Run {
        bb, _site, _pty, ..
    } = stream_through("destination.post:delivery=panic@20");
    assert_restarted(&bb, "destination", "delivery", "destination");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn carbon_copy_loops_that_panic_are_restarted_and_the_reliable_one_gets_everything() {
    let Run {
        bb,
        mirror,
        audit,
        _site,
        _pty,
    } = stream_through("destination.post:cc:audit=panic@15,destination.post:cc:mirror=panic@25");
    assert_restarted(&bb, "destination", "cc:audit", "destination");
    assert_restarted(&bb, "destination", "cc:mirror", "destination");
    // The fire-once copy goes on after its restart (it lost at most the
    // batch it was posting: a copy, never retransmitted, as the AG's).
    assert!(acked_by(&mirror, "q").len() as u64 >= RECORDS / 2);
    assert_eq!(acked_by(&audit, "q").len() as u64, RECORDS);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_connecting_reader_that_panics_is_restarted_and_keeps_its_connection() {
    let Run {
        bb, _site, _pty, ..
    } = stream_through("reader.read:p=panic@4");
    assert_restarted(&bb, "reader", "p", "port");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_listening_reader_that_panics_is_restarted_and_keeps_its_connection() {
    let Run {
        bb, _site, _pty, ..
    } = stream_through("reader.read:q=panic@30");
    assert_restarted(&bb, "reader", "q", "port");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_serial_reader_that_panics_is_restarted_and_keeps_its_device() {
    let Run {
        bb, _site, _pty, ..
    } = stream_through("reader.read:s=panic@30");
    assert_restarted(&bb, "reader", "s", "port");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn injected_io_errors_are_handled_in_place_without_a_restart() {
    let Run {
        bb, _site, _pty, ..
    } = stream_through("rotator.write=error@5,reader.read:p=error@6,reader.read:s=error@20");
    assert!(restarts(&bb).is_empty(), "{:?}", restarts(&bb));
    assert!(bb.count_logs("cannot be written to billing files", None) >= 1);
    // A reader's injected read error is a link that went down: reopened.
    for port in ["p", "s"] {
        assert!(bb.count_logs("Port link went down", Some(port)) >= 1);
        assert_eq!(link_ups(&bb, port), 2, "port {port} reopened once");
    }
    assert_eq!(link_ups(&bb, "q"), 1);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn injected_delivery_and_listen_errors_are_handled_in_place_without_a_restart() {
    // Failed attempts of the sender and the reliable copy are retried (each
    // record still acknowledged once); the fire-once copy misses that batch
    // and counts it; a listening port that cannot bind at first retries.
    let Run {
        bb,
        mirror,
        audit: _audit,
        _site,
        _pty,
    } = stream_through(
        "destination.post:delivery=error@20,destination.post:cc:audit=error@15,destination.post:cc:mirror=error@25,reader.listen:q=error@1",
    );
    assert!(restarts(&bb).is_empty(), "{:?}", restarts(&bb));
    assert!(bb.count_logs("Port cannot be opened", Some("q")) >= 1);
    let (_, page) = bb.get("/metrics");
    for destination in ["delivery", "cc:audit", "cc:mirror"] {
        let failures = format!("billbox_delivery_failures_total{{destination=\"{destination}\",");
        assert!(page.contains(&failures), "{failures} in\n{page}");
    }
    let missed = metric(
        &page,
        "billbox_carbon_copy_missed_records_total{destination=\"cc:mirror\"}",
    );
    assert!(missed.is_some_and(|n| n >= 1.0), "{page}");
    // (stream_through checked: every record acknowledged once by the
    // primary and audit, never twice by mirror.)
    assert!(acked_by(&mirror, "q").len() as u64 + acked_by(&mirror, "p").len() as u64 > 0);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_rotator_that_keeps_failing_stops_billbox_and_a_restart_recovers_everything() {
    let site = Site::new();
    let log = Log::default();
    let primary = BillingServer::start("A", &log);
    let pbx = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config(&site, pbx.local_addr().unwrap(), None, &primary, "");
    drop(pbx);
    let mut bb = Billbox::start_with_env(
        &config,
        &[("BILLBOX_FAILPOINTS", "rotator.write:q=panic@3+")],
    );
    let q = bb.listen_addr("q");
    let mut conn = TcpStream::connect(q).unwrap();
    let sent: Vec<Vec<u8>> = (1..=50).map(|i| record("q", i)).collect();
    for r in &sent {
        // The connection ends when billbox stops: what it took is stored.
        if conn.write_all(r).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(bb.wait_exit(WAIT), Some(3), "{:?}", bb.dump());
    assert!(bb.count_logs("An actor keeps failing", None) == 1);
    drop(bb);
    let taken = site.inspect()["q"]["last_seq"].as_u64().unwrap();
    assert!(taken >= 3, "{taken} records taken in before the stop");

    let bb = Billbox::start(&config);
    wait_until(WAIT, || {
        (site.records_in_files("Q", b"\n").len() as u64 >= taken).then_some(())
    });
    let filed = site.records_in_files("Q", b"\n");
    assert_eq!(
        filed.len() as u64,
        taken,
        "every committed record filed once"
    );
    assert_exactly_once(&sent[..taken as usize], &filed, "Q");
    assert_eq!(bb.terminate(), Some(0));
}
