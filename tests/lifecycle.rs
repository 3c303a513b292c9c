//! Stopping and reloading the real binary: SIGTERM in the middle of a busy
//! stream, and SIGHUP with ports added and removed and a bad config refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_testkit::billing::{BillingServer, Log, Mode};
use billbox_testkit::pbx::{Format, Link, PtyPbx, TcpPbx};
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn signal(bb: &Billbox, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(bb.child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// Every (port, seq) the servers acknowledged, with how often.
fn acked_counts(servers: &[&BillingServer]) -> HashMap<(String, u64), u64> {
    let mut counts = HashMap::new();
    for s in servers {
        for k in s.acked() {
            *counts.entry(k).or_default() += 1;
        }
    }
    counts
}

#[test]
fn sigterm_during_a_busy_stream_loses_nothing() {
    const N: u64 = 3000;
    let log = Log::default();
    let server = BillingServer::start("a", &log);
    // Slow answers: POSTs are in flight when the stop comes.
    server.set(Mode::Delay(150));
    let site = Site::new();
    let mut pty = PtyPbx::open().unwrap();
    let config = site.config(&format!(
        "[[ports]]\nname = \"p\"\ndevice = \"{}\"\nalias = \"P\"\nbilling_eor = \"\\r\\n\"\n\
         billing_records = 100\nbilling_timeout = \"1s\"\n\
         [delivery]\nprimary = \"{}\"\nbatch_max = 20\nretry_delay = \"50ms\"\n",
        pty.path().display(),
        server.url()
    ));
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    let records: Vec<Vec<u8>> = (1..=N)
        .map(|n| {
            let at = chrono::DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap();
            Format::AvayaIpOffice.record(n, at)
        })
        .collect();
    let to_send = records.clone();
    let bb = Billbox::start(&config);
    bb.wait_log("billbox is running", None, WAIT)
        .expect("running");
    // The PBX keeps sending through the stop and the restart: the pty holds
    // what nobody reads meanwhile.
    let feeder = std::thread::spawn(move || {
        for chunk in to_send.chunks(10) {
            pty.send(&chunk.concat()).unwrap();
            sent2.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        pty
    });
    wait_until(WAIT, || {
        (sent.load(Ordering::SeqCst) >= N / 3).then_some(())
    })
    .expect("the feed started");
    let logs = bb.logs.clone();
    let start = Instant::now();
    let mut bb = bb;
    signal(&bb, nix::sys::signal::Signal::SIGTERM);
    let status = wait_until(Duration::from_secs(40), || bb.child.try_wait().unwrap());
    let Some(status) = status else {
        let tail: Vec<String> = bb
            .dump()
            .iter()
            .rev()
            .take(15)
            .map(|v| v.to_string())
            .collect();
        panic!("billbox did not stop on SIGTERM; last logs: {tail:#?}");
    };
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    drop(bb);
    let stop_took = start.elapsed();
    let stopped = logs.lock().unwrap().iter().any(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("every record read is committed"))
    });
    assert!(stopped, "billbox did not report a clean stop");
    assert!(sent.load(Ordering::SeqCst) < N, "the stop came mid-stream");
    // Restart: the rest of the stream, and what waited, goes through.
    let bb = Billbox::start(&config);
    let _pty = feeder.join().unwrap();
    let counts = wait_until(WAIT, || {
        let c = acked_counts(&[&server]);
        (c.len() as u64 >= N).then_some(c)
    })
    .unwrap_or_else(|| {
        panic!(
            "only {} of {N} acknowledged",
            acked_counts(&[&server]).len()
        )
    });
    for n in 1..=N {
        assert!(
            counts.contains_key(&("p".to_string(), n)),
            "record {n} never acknowledged"
        );
    }
    assert_eq!(bb.terminate(), Some(0));
    let found = site.records_in_files("P", b"\r\n");
    assert_exactly_once(&records, &found, "files");
    eprintln!("stop took {stop_took:?}");
}

fn port(name: &str, alias: &str) -> String {
    format!(
        "[[ports]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nalias = \"{alias}\"\nbilling_eor = \"\\n\"\n\
         billing_records = 10\nbilling_timeout = \"1s\"\n"
    )
}

fn send(conn: &mut TcpPbx, port: &str, from: u64, to: u64) -> Vec<Vec<u8>> {
    let recs: Vec<Vec<u8>> = (from..=to)
        .map(|i| format!("{port} record {i}\n").into_bytes())
        .collect();
    conn.send(&recs.concat()).unwrap();
    recs
}

#[test]
fn sighup_adds_and_removes_ports_and_refuses_a_bad_config() {
    let log = Log::default();
    let server = BillingServer::start("a", &log);
    let site = Site::new();
    let delivery = format!(
        "[delivery]\nprimary = \"{}\"\nbatch_max = 5\nretry_delay = \"50ms\"\n",
        server.url()
    );
    let config = site.config(&format!("{}{}{delivery}", port("a", "A"), port("b", "B")));
    let bb = Billbox::start(&config);
    let mut conn_a = TcpPbx::connect(bb.listen_addr("a")).unwrap();
    let mut conn_b = TcpPbx::connect(bb.listen_addr("b")).unwrap();
    let mut sent_a = send(&mut conn_a, "a", 1, 25);
    let sent_b = send(&mut conn_b, "b", 1, 25);
    wait_until(WAIT, || {
        (acked_counts(&[&server]).len() >= 30).then_some(())
    })
    .expect("some delivered before the reload");

    // A bad config is refused and the old one keeps running.
    std::fs::write(&config, "[[ports]]\nname = \"a\"\nspeed = \"fast\"\n").unwrap();
    signal(&bb, nix::sys::signal::Signal::SIGHUP);
    bb.wait_log("The new config is not valid", None, WAIT)
        .expect("the bad config refused");
    sent_a.extend(send(&mut conn_a, "a", 26, 30));

    // b removed, c added; a unchanged keeps its connection.
    site.config(&format!("{}{}{delivery}", port("a", "A"), port("c", "C")));
    signal(&bb, nix::sys::signal::Signal::SIGHUP);
    let reloaded = bb
        .wait_log("The config is reloaded", None, WAIT)
        .unwrap_or_else(|| panic!("no reload; logs: {:?}", bb.dump()));
    assert_eq!(reloaded["added"].as_str(), Some(r#"["c"]"#), "{reloaded}");
    assert_eq!(reloaded["removed"].as_str(), Some(r#"["b"]"#), "{reloaded}");
    assert_eq!(reloaded["changed"].as_str(), Some("[]"), "{reloaded}");
    sent_a.extend(send(&mut conn_a, "a", 31, 45));
    let mut conn_c = TcpPbx::connect(bb.listen_addr("c")).unwrap();
    let sent_c = send(&mut conn_c, "c", 1, 15);

    let want = sent_a.len() + sent_b.len() + sent_c.len();
    let counts = wait_until(WAIT, || {
        let c = acked_counts(&[&server]);
        (c.len() >= want).then_some(c)
    })
    .unwrap_or_else(|| {
        panic!(
            "not all {want} acknowledged: {:?}",
            acked_counts(&[&server]).len()
        )
    });
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "acknowledged twice: {dups:?}");
    for (p, n) in [("a", 45), ("b", 25), ("c", 15)] {
        for s in 1..=n {
            assert!(counts.contains_key(&(p.to_string(), s)), "{p}/{s} missing");
        }
    }
    // Every record is in exactly one file, b's included (its rotator
    // finished its files after the port was removed).
    // (Delivery may be ahead of the files: wait for both.)
    wait_until(WAIT, || {
        let filed = site.records_in_files("A", b"\n").len() >= sent_a.len()
            && site.records_in_files("C", b"\n").len() >= sent_c.len();
        (filed && site.tmp_files().is_empty()).then_some(())
    })
    .expect("every file closed");
    assert_exactly_once(&sent_a, &site.records_in_files("A", b"\n"), "port a files");
    assert_exactly_once(&sent_b, &site.records_in_files("B", b"\n"), "port b files");
    assert_exactly_once(&sent_c, &site.records_in_files("C", b"\n"), "port c files");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn files_and_the_store_are_private_to_billboxs_user_and_group() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let config = site.config(&port("a", "A"));
    let bb = Billbox::start(&config);
    let mut conn = TcpPbx::connect(bb.listen_addr("a")).unwrap();
    let sent = send(&mut conn, "a", 1, 20);
    wait_until(WAIT, || {
        (site.records_in_files("A", b"\n").len() == sent.len()).then_some(())
    })
    .expect("records filed");
    assert_eq!(bb.terminate(), Some(0));
    let mut checked = 0;
    let mut stack = vec![site.data(), site.spool()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(
                mode & 0o027,
                0,
                "{} is {mode:o}, wider than 0750",
                path.display()
            );
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(
                mode & 0o137,
                0,
                "{} is {mode:o}, wider than 0640",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 5, "only {checked} paths checked");
}

/// Regression: the signal handlers were installed only after billbox said
/// it runs, so a SIGTERM sent right then killed it (status by signal).
#[test]
fn a_sigterm_the_moment_billbox_says_it_runs_stops_it_cleanly() {
    let site = Site::new();
    let config = site.config(&port("p", "P"));
    for start in 0..10 {
        // terminate() sends SIGTERM as soon as "billbox is running" is logged.
        let bb = Billbox::start(&config);
        assert_eq!(bb.terminate(), Some(0), "start {start}");
    }
}

/// A billing server that is down and a site whose `[store]` holds input
/// at 10 records waiting for it (`when_full = "block"`): the server, the
/// site, and the `[store]` and `[delivery]` sections.
fn held_store() -> (BillingServer, Site, String) {
    let log = Log::default();
    let mut server = BillingServer::start("a", &log);
    server.down();
    let sections = format!(
        "[store]\nmax_records = 10\nwhen_full = \"block\"\n[delivery]\nprimary = \"{}\"\nretry_delay = \"1s\"\n",
        server.url()
    );
    (server, Site::new(), sections)
}

/// Sends 30 calls to port `a`, one by one: each append is small, so a
/// store that holds at 10 does.
fn send_30_calls(bb: &Billbox) -> TcpPbx {
    let mut conn = TcpPbx::connect(bb.listen_addr("a")).unwrap();
    for i in 1..=30u64 {
        conn.send(format!("a call {i:05}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    conn
}

/// Regression: a store held full stayed "full" (its alarm on the status
/// page, `billbox_store_full` 1) after a reload took the capacity away.
#[test]
fn a_reload_without_delivery_releases_a_full_store() {
    let (_server, site, full) = held_store();
    let config = site.config(&format!("{}{full}", port("a", "A")));
    let bb = Billbox::start(&config);
    let _conn = send_30_calls(&bb);
    bb.wait_log("The store is full", None, WAIT)
        .expect("the store holds input at max_records");
    wait_until(WAIT, || {
        bb.get("/status.json")
            .1
            .contains("\"kind\":\"store_full\"")
            .then_some(())
    })
    .expect("the status page shows the full store");
    // The same config without [delivery]: nothing counts against the
    // capacity any more.
    site.config(&port("a", "A"));
    signal(&bb, nix::sys::signal::Signal::SIGHUP);
    bb.wait_log("The store has space again", None, Duration::from_secs(15))
        .unwrap_or_else(|| {
            let said: Vec<String> = bb.dump().iter().map(|v| v["message"].to_string()).collect();
            panic!("the full store is not released by the reload: {said:#?}")
        });
    let page = wait_until(Duration::from_secs(20), || {
        let (_, page) = bb.get("/metrics");
        (metric(&page, "billbox_records_received_total{port=\"a\"}") == Some(30.0)).then_some(page)
    })
    .expect("every record is taken in after the reload");
    assert_eq!(metric(&page, "billbox_store_full"), Some(0.0));
    wait_until(WAIT, || {
        (!bb.get("/status.json").1.contains("\"kind\":\"store_full\"")).then_some(())
    })
    .expect("the status page no longer shows the full store");
    assert_eq!(bb.terminate(), Some(0));
}

/// Regression: a reload that stopped readers left the store "draining"
/// for good, so `max_records` with `when_full = "block"` no longer held
/// anything back after the first SIGHUP.
#[test]
fn a_full_store_still_holds_input_after_a_reload() {
    let (_server, site, store) = held_store();
    let config = site.config(&format!("{}{store}", port("a", "A")));
    let bb = Billbox::start(&config);
    bb.wait_log("billbox is running", None, WAIT).unwrap();
    // A reload that stops and starts a reader (b added, then removed).
    site.config(&format!("{}{}{store}", port("a", "A"), port("b", "B")));
    signal(&bb, nix::sys::signal::Signal::SIGHUP);
    bb.wait_log("The config is reloaded", None, WAIT)
        .expect("reloaded");
    site.config(&format!("{}{store}", port("a", "A")));
    signal(&bb, nix::sys::signal::Signal::SIGHUP);
    wait_until(WAIT, || {
        (bb.count_logs("The config is reloaded", None) >= 2).then_some(())
    })
    .expect("reloaded again");
    let _conn = send_30_calls(&bb);
    bb.wait_log("The store is full", None, WAIT)
        .expect("the capacity holds input after the reloads");
    std::thread::sleep(Duration::from_millis(500));
    let (_, page) = bb.get("/metrics");
    let taken = metric(&page, "billbox_records_received_total{port=\"a\"}").unwrap_or(0.0);
    assert!(taken < 30.0, "{taken} of 30 taken in past max_records = 10");
    assert_eq!(bb.terminate(), Some(0));
}
