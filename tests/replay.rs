//! `billbox replay`: the running daemon sends a range of stored records
//! again, over its admin socket, as ordinary packets with their original
//! ids. Real billbox, real servers on 127.0.0.1, the CLI as a child.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use billbox_testkit::billing::{BillingServer, Log, Mode};
use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::*;

fn config(site: &Site, store: &str, delivery: &str) -> std::path::PathBuf {
    site.config(&format!(
        "[store]\n{store}\n\n\
         [[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\nbilling_records = 10\nbilling_timeout = 0\n\n\
         [delivery]\nprimary = \"{delivery}\"\nretry_delay = \"50ms\"\n"
    ))
}

fn replay_command(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("replay").arg("--config").arg(config).args(args);
    c
}

fn replay(config: &Path, args: &[&str]) -> Output {
    replay_command(config, args).output().unwrap()
}

/// REC_ID by sequence, from the packets `server` acknowledged.
fn ids(log: &Log, server: &str) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for r in log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.server == server && r.acked())
    {
        let body = String::from_utf8_lossy(&r.body);
        for id in body
            .split("<REC_ID>")
            .skip(1)
            .filter_map(|s| s.split("</REC_ID>").next())
        {
            let seq = id
                .rsplit('/')
                .next()
                .and_then(|s| s.split('@').next())
                .unwrap()
                .parse()
                .unwrap();
            out.entry(seq).or_default().insert(id.to_string());
        }
    }
    out
}

fn acked_records(log: &Log, server: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.server == server && r.acked())
        .map(|r| r.records.len())
        .sum()
}

fn send(bb: &Billbox, range: std::ops::RangeInclusive<u64>) {
    let mut pbx = TcpPbx::connect(bb.listen_addr("p")).unwrap();
    for i in range {
        pbx.send(format!("call {i}\n").as_bytes()).unwrap();
    }
}

fn wait_delivered(log: &Log, n: usize) {
    wait_until(Duration::from_secs(30), || {
        (acked_records(log, "a") >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("{n} records delivered to a"));
}

#[test]
fn a_replay_stopped_and_resumed_across_a_restart_sends_every_record_with_its_original_id() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("a", &log);
    let b = BillingServer::start("b", &log);
    let config = config(&site, "retain = \"1h\"", &a.url());
    let bb = Billbox::start(&config);
    send(&bb, 1..=200);
    wait_delivered(&log, 200);
    let original = ids(&log, "a");
    assert_eq!(original.len(), 200);

    // A slow server: the replay is stopped (its client killed) half way.
    b.set(Mode::Delay(20));
    let mut child = replay_command(&config, &["--port", "p", "--from", "1", "--url", &b.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), || {
        (acked_records(&log, "b") >= 40).then_some(())
    })
    .expect("the replay is under way");
    child.kill().unwrap();
    child.wait().unwrap();
    bb.wait_log(
        "A replay stopped before its end",
        Some("p"),
        Duration::from_secs(20),
    )
    .expect("the daemon sees the client gone and stops");
    assert_eq!(bb.terminate(), Some(0));
    let before = acked_records(&log, "b");
    assert!(before < 200, "stopped half way ({before})");

    // billbox again; the same command resumes.
    let bb = Billbox::start(&config);
    bb.wait_log("billbox is running", None, Duration::from_secs(30))
        .expect("billbox starts again");
    b.set(Mode::Ack);
    let out = replay(&config, &["--port", "p", "--from", "1", "--url", &b.url()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{:?}", bb.dump());
    assert!(stderr.contains("resuming at"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    let replayed = ids(&log, "b");
    assert_eq!(replayed, original, "every record, with its original id");
    // At least once: what was on its way at the stop may have gone twice
    // (servers drop it by REC_ID), at most a window of packets.
    let sent = acked_records(&log, "b");
    assert!((200..=200 + 32).contains(&sent), "{sent} records posted");
    // Delivery itself was not touched: a got each record once.
    assert_eq!(acked_records(&log, "a"), 200);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_range_partly_past_retain_is_reported_exactly_and_the_rest_replayed() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("a", &log);
    let b = BillingServer::start("b", &log);
    let config = config(&site, "retain = \"2s\"", &a.url());
    let bb = Billbox::start(&config);
    send(&bb, 1..=10);
    wait_delivered(&log, 10);
    // Older than retain: removed.
    wait_until(Duration::from_secs(20), || {
        (metric(&bb.metrics(), "billbox_store_held_records{port=\"p\"}") == Some(0.0)).then_some(())
    })
    .expect("records 1 to 10 removed");
    send(&bb, 11..=20);
    wait_delivered(&log, 20);
    let out = replay(
        &config,
        &[
            "--port",
            "p",
            "--from",
            "1",
            "--to",
            "20",
            "--destination",
            "delivery",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("records 1 to 10 can no longer be replayed")
            && stderr.contains("the ACS files still hold them"),
        "{stderr}"
    );
    // To the [delivery] servers: a got 11..=20 once more.
    let again: Vec<u64> = ids(&log, "a").into_keys().collect();
    assert_eq!(again, (1..=20).collect::<Vec<_>>());
    assert_eq!(acked_records(&log, "a"), 30);
    drop(b);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("a", &log);
    let config = config(&site, "", &a.url());
    // Not running: exit 2.
    let out = replay(
        &config,
        &["--port", "p", "--from", "1", "--destination", "delivery"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("billbox is not running"));
    let bb = Billbox::start(&config);
    send(&bb, 1..=5);
    wait_delivered(&log, 5);
    for (args, expected) in [
        (
            vec!["--port", "q", "--from", "1", "--destination", "delivery"],
            "\"q\" is not a port of the config (p)",
        ),
        (
            vec![
                "--port",
                "p",
                "--from",
                "yesterday",
                "--destination",
                "delivery",
            ],
            "\"yesterday\" is not an RFC 3339 time",
        ),
        (
            vec!["--port", "p", "--from", "9", "--destination", "delivery"],
            "the range starts after the port's last record (5)",
        ),
        (
            vec!["--port", "p", "--from", "1", "--destination", "mirror"],
            "\"mirror\" is not a destination",
        ),
    ] {
        let out = replay(&config, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // Without retain nothing is held once delivered and filed (files of 10:
    // the 5 are still held for their file).
    let out = replay(
        &config,
        &[
            "--port",
            "p",
            "--from",
            "2026-01-01T00:00:00Z",
            "--destination",
            "delivery",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(bb.terminate(), Some(0));
}

/// The socket is billbox's user's only: another user cannot use it.
#[test]
fn the_admin_socket_refuses_another_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: needs root to run the client as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let site = Site::new();
    let log = Log::default();
    let a = BillingServer::start("a", &log);
    let config = config(&site, "", &a.url());
    let bb = Billbox::start(&config);
    send(&bb, 1..=5);
    wait_delivered(&log, 5);
    let socket = site.data().join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is its owner's only");
    // The config readable by anyone, the data directory as billbox made it.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let readable = shared.path().join("billbox.toml");
    std::fs::copy(&config, &readable).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = replay_command(
        &readable,
        &["--port", "p", "--from", "1", "--destination", "delivery"],
    )
    .uid(65534)
    .gid(65534)
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert_eq!(acked_records(&log, "a"), 5, "nothing was replayed");
    assert_eq!(bb.terminate(), Some(0));
}
