//! Metrics and health end to end: the real binary, its metrics listener on
//! 127.0.0.1, a real billing server, and a known workload.

use std::process::Command;
use std::time::Duration;

use billbox_testkit::billing::{BillingServer, Log};
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn send(bb: &Billbox, from: u64, to: u64) -> u64 {
    let data: String = (from..=to).map(|i| format!("rec {i:05}\n")).collect();
    bb.send("p", data.as_bytes());
    data.len() as u64
}

/// Waits until the series reaches `want` on /metrics; returns the page.
fn wait_metric(bb: &Billbox, series: &str, want: f64) -> String {
    let mut last = String::new();
    wait_until(WAIT, || {
        last = bb.get("/metrics").1;
        (metric(&last, series) == Some(want)).then_some(())
    })
    .unwrap_or_else(|| panic!("{series} never became {want}; page:\n{last}"));
    last
}

/// The names of billbox's threads, from /proc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn thread_names(bb: &Billbox) -> Vec<String> {
    let tasks = format!("/proc/{}/task", bb.child.id());
    std::fs::read_dir(tasks)
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn metrics_count_a_known_workload_and_reconcile() {
    let log = Log::default();
    let mut server = BillingServer::start("a", &log);
    let site = Site::new();
    let config = site.config(&format!(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\n\
         billing_records = 10\nbilling_timeout = \"1s\"\n\
         [delivery]\nprimary = \"{}\"\nbatch_max = 7\nretry_delay = \"100ms\"\n",
        server.url()
    ));
    let bb = Billbox::start(&config);
    let bytes = send(&bb, 1, 50);
    wait_until(WAIT, || (server.acked().len() >= 50).then_some(())).expect("all 50 acknowledged");
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    assert!(
        thread_names(&bb).iter().any(|n| n == "billbox-trim"),
        "the memory trimmer runs beside the collector: {:?}",
        thread_names(&bb)
    );
    let page = wait_metric(
        &bb,
        r#"billbox_delivered_records_total{destination="delivery",port="p"}"#,
        50.0,
    );
    let m = |s: &str| metric(&page, s).unwrap_or_else(|| panic!("{s} missing:\n{page}"));
    assert_eq!(m(r#"billbox_records_received_total{port="p"}"#), 50.0);
    assert_eq!(m(r#"billbox_bytes_received_total{port="p"}"#), bytes as f64);
    assert_eq!(m(r#"billbox_port_committed_sequence{port="p"}"#), 50.0);
    assert_eq!(
        m(r#"billbox_backlog_records{destination="delivery",port="p"}"#),
        0.0
    );
    assert!(m(r#"billbox_last_delivery_timestamp_seconds{destination="delivery"}"#) > 1.7e9);
    assert!(m("billbox_store_bytes") > 0.0);
    assert_eq!(m("billbox_ready"), 1.0);
    // 50 records, 10 per file: every record lands in a closed file, in five
    // files or more (under load a file may close at its 1 s timeout first).
    wait_metric(
        &bb,
        r#"billbox_backlog_records{destination="files",port="p"}"#,
        0.0,
    );
    // The counter follows the files cursor once the rotator's call ends.
    let closed = wait_until(WAIT, || {
        let page = bb.get("/metrics").1;
        metric(&page, r#"billbox_files_closed_total{port="p"}"#).filter(|n| *n >= 5.0)
    });
    assert!(closed.is_some(), "fewer than 5 files closed for 50 records");

    // The server goes away; 20 more records wait.
    server.down();
    send(&bb, 51, 70);
    let page = wait_metric(
        &bb,
        r#"billbox_backlog_records{destination="delivery",port="p"}"#,
        20.0,
    );
    let m = |s: &str| metric(&page, s).unwrap_or_else(|| panic!("{s} missing:\n{page}"));
    let received = m(r#"billbox_records_received_total{port="p"}"#);
    let delivered = m(r#"billbox_delivered_records_total{destination="delivery",port="p"}"#);
    let waiting = m(r#"billbox_backlog_records{destination="delivery",port="p"}"#);
    assert_eq!((received, delivered, waiting), (70.0, 50.0, 20.0));
    assert_eq!(
        received,
        delivered + waiting,
        "received = delivered + waiting"
    );
    // The first failed attempt may come just after the records are counted.
    let failed = wait_until(WAIT, || {
        let page = bb.get("/metrics").1;
        metric(
            &page,
            r#"billbox_delivery_failures_total{destination="delivery",server="primary"}"#,
        )
        .filter(|n| *n >= 1.0)
    });
    assert!(failed.is_some(), "no failed delivery attempt counted");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn readiness_and_the_quiet_port_and_stalled_delivery_alarms() {
    let log = Log::default();
    let mut server = BillingServer::start("a", &log);
    server.down();
    let site = Site::new();
    let config = site.config(&format!(
        "[metrics]\ndelivery_alarm = \"2s\"\n\
         [[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nquiet_alarm = \"2s\"\n\
         [delivery]\nprimary = \"{}\"\nretry_delay = \"100ms\"\n",
        server.url()
    ));
    let bb = Billbox::start(&config);
    let addr = bb.metrics_addr();
    wait_until(WAIT, || (http_get(addr, "/readyz").0 == 200).then_some(()))
        .expect("ready once the store is open");

    // No record for longer than quiet_alarm: unhealthy, with the reason.
    let body = wait_until(WAIT, || {
        let (status, body) = http_get(addr, "/healthz");
        (status == 503 && body.contains("port_quiet")).then_some(body)
    })
    .expect("the quiet port alarm");
    assert!(body.contains(r#""port":"p""#), "{body}");
    assert!(bb
        .wait_log(
            "has received no record for longer than its quiet_alarm",
            Some("p"),
            WAIT
        )
        .is_some());
    // `billbox health` says so too, with exit status 1.
    let health = |extra: &[&str]| {
        Command::new(bin())
            .args(["health", "--addr", &addr.to_string()])
            .args(extra)
            .output()
            .unwrap()
    };
    assert_eq!(health(&[]).status.code(), Some(1));
    assert_eq!(health(&["--ready"]).status.code(), Some(0));

    // Records arrive but the server is down: the quiet alarm clears (until
    // the port is quiet again), and after delivery_alarm the
    // stalled-delivery alarm holds.
    send(&bb, 1, 3);
    let cleared = bb
        .wait_log("An alarm has cleared", None, WAIT)
        .expect("the quiet alarm cleared");
    assert_eq!(cleared["subject"].as_str(), Some("p"), "{cleared}");
    let body = wait_until(WAIT, || {
        let (status, body) = http_get(addr, "/healthz");
        (status == 503 && body.contains("delivery_stalled")).then_some(body)
    })
    .expect("the stalled delivery alarm");
    assert!(body.contains(r#""waiting":3"#), "{body}");

    // The server returns: once everything is acknowledged and records keep
    // coming, billbox is healthy again.
    server.up();
    wait_until(WAIT, || (server.acked().len() >= 3).then_some(())).expect("delivered");
    let mut n = 3;
    wait_until(WAIT, || {
        n += 1;
        send(&bb, n, n);
        std::thread::sleep(Duration::from_millis(300));
        (http_get(addr, "/healthz").0 == 200).then_some(())
    })
    .expect("healthy again");
    assert_eq!(health(&[]).status.code(), Some(0));
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_metrics_address_in_use_stops_billbox_at_start_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let site = Site::new();
    let config =
        site.config("[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\n");
    let out = Command::new(bin())
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env(
            "BILLBOX__METRICS__LISTEN",
            taken.local_addr().unwrap().to_string(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}
