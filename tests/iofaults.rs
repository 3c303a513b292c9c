//! I/O faults end to end, on faultfs: EIO on a spool file's write or fsync,
//! on the store's fdatasync, ENOSPC in the middle of the store's and the
//! files' writes. Each test streams records over TCP to a billbox with a
//! real receiver, lets the fault fire and clear, then cuts the power (so a
//! retried fsync that only claimed success is caught) and starts billbox
//! again. Nothing committed may be lost, filed twice or delivered twice,
//! and the fault is logged once per episode.
//!
//! A spool fault is handled in place: the rotator writes the file again
//! from the store. A store fault stops billbox (exit 3): sled cannot write
//! its log again, and a retried fdatasync proves nothing. Its next start
//! writes the store's files again before opening it; the records of the
//! commit that failed were never acknowledged, and the PBX's records it had
//! read but not committed are gone with the process (the test sends them
//! again, as it cannot know better, and counts them).
//!
//! fsync faults are Linux's (`ErrorLosingWrites`): after a failed fsync the
//! unsynced data stays readable but is never written, and the next fsync
//! succeeds; data that must survive has to be written again.
//!
//! Skipped (printed) without root and `/dev/fuse`.

use std::collections::HashMap;
use std::time::Duration;

use billbox_faultfs::{Action, Cut, Fault, Op};
use billbox_testkit::disk::{metrics_within, CutOnDrop, Disk};
use billbox_testkit::pbx::Link;
use billbox_testkit::receiver::Receiver;
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
const RECORDS: u64 = 200;

fn committed(bb: &Billbox) -> u64 {
    metrics_within(bb, Duration::from_secs(5))
        .and_then(|page| metric(&page, "billbox_port_committed_sequence{port=\"p\"}"))
        .map_or(0, |v| v as u64)
}

/// What a run under a fault logged: how often each message came.
type Logged = HashMap<&'static str, usize>;

/// A site on faultfs, a receiver, one TCP port `p`, and the records to send.
struct Rig {
    site: Site,
    disk: Disk,
    receiver: Receiver,
    config: std::path::PathBuf,
    sent: Vec<Vec<u8>>,
}

impl Rig {
    fn new() -> Option<Rig> {
        Rig::with("")
    }

    /// With `extra` config (whole sections) after the port and delivery.
    fn with(extra: &str) -> Option<Rig> {
        let site = Site::new();
        let disk = Disk::under(&site)?;
        let received = site.dir.path().join("received");
        std::fs::create_dir_all(&received).unwrap();
        let receiver = Receiver::start_in(&received, true, &[]);
        let config = site.config(&format!(
            "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 20\nbilling_timeout = \"1s\"\n\n\
             [delivery]\nprimary = \"{}\"\nretry_delay = \"50ms\"\nbatch_max = 10\n\n{extra}",
            receiver.url("http")
        ));
        let sent = (1..=RECORDS)
            .map(|i| format!("rec {i}\n").into_bytes())
            .collect();
        Some(Rig {
            site,
            disk,
            receiver,
            config,
            sent,
        })
    }

    fn start(&self, what: &str) -> Billbox {
        let bb = Billbox::start(&self.config);
        bb.wait_log("billbox is running", None, WAIT)
            .unwrap_or_else(|| panic!("billbox did not start {what}: {:?}", bb.dump()));
        bb
    }

    /// Freezes the disk, kills billbox with SIGKILL and cuts the power.
    fn cut(&self, bb: Billbox) {
        self.disk.control.freeze();
        let pid = nix::unistd::Pid::from_raw(bb.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        self.disk.control.cut(Cut::All);
        drop(bb);
    }

    fn filed(&self) -> Vec<Vec<u8>> {
        self.site.records_in_files("P", b"\n")
    }

    /// Waits until every record is delivered and filed, stops billbox, and
    /// checks each is in the files and at the receiver exactly once, and
    /// that the store was never moved aside.
    fn finish(self, bb: Billbox) {
        let receiver = &self.receiver;
        wait_until(WAIT, || {
            (receiver.records().len() as u64 >= RECORDS).then_some(())
        })
        .unwrap_or_else(|| panic!("{} delivered", receiver.records().len()));
        wait_until(WAIT, || {
            (self.filed().len() as u64 >= RECORDS).then_some(())
        })
        .unwrap_or_else(|| panic!("not all filed: {:?}", bb.dump()));
        assert_eq!(bb.terminate(), Some(0));
        assert_exactly_once(&self.sent, &self.filed(), "the files");
        assert_exactly_once(&self.sent, &receiver.records(), "the receiver");
        let moved_aside = std::fs::read_dir(self.site.data())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("store.quarantined")
            })
            .count();
        assert_eq!(moved_aside, 0, "the store was not moved aside");
        drop(self.disk.fs);
    }
}

/// Streams [`RECORDS`] records with `fault` armed; once billbox has
/// committed and filed them all, cuts the power and starts it again.
/// Returns what the first run logged of `messages`.
fn stream_through(fault: Fault, messages: &[&'static str]) -> Option<Logged> {
    let rig = Rig::new()?;
    let bb = rig.start("");
    let _cut_on_drop = CutOnDrop(rig.disk.control.clone());
    rig.disk.control.add_fault(fault.clone());
    // In small writes, so the store commits many times.
    let mut pbx = bb.send("p", b"");
    for chunk in rig.sent.chunks(5) {
        pbx.send(&chunk.concat()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_until(WAIT, || (committed(&bb) >= RECORDS).then_some(()))
        .unwrap_or_else(|| panic!("{} of {RECORDS} committed: {:?}", committed(&bb), bb.dump()));
    wait_until(WAIT, || (rig.filed().len() as u64 >= RECORDS).then_some(()))
        .unwrap_or_else(|| panic!("not all filed: {:?}", bb.dump()));
    assert!(
        rig.disk.control.stats().faults_fired >= 1,
        "the fault {fault:?} never fired"
    );
    let logged: Logged = messages
        .iter()
        .map(|m| (*m, bb.count_logs(m, None)))
        .collect();
    // The power goes: what billbox said it committed must be on the disk.
    rig.cut(bb);
    rig.disk.control.clear_faults();
    drop(pbx);

    let bb = rig.start("after the cut");
    assert_eq!(
        committed(&bb),
        RECORDS,
        "committed records after the cut: {:?}",
        bb.dump()
    );
    rig.finish(bb);
    Some(logged)
}

const SPOOL_FAILED: &str = "Records cannot be written to billing files";
const SPOOL_RECOVERED: &str = "Billing files are written again";

#[test]
fn eio_on_spool_writes_is_logged_once_and_every_record_is_filed_once() {
    let Some(logged) = stream_through(
        Fault {
            op: Op::Write,
            path: "spool/cycP-".into(),
            nth: 3,
            times: Some(3),
            action: Action::Error(nix::libc::EIO),
        },
        &[SPOOL_FAILED, SPOOL_RECOVERED],
    ) else {
        return;
    };
    assert_eq!(logged[SPOOL_FAILED], 1, "one episode, one error");
    assert_eq!(logged[SPOOL_RECOVERED], 1);
}

#[test]
fn enospc_on_spool_writes_is_logged_once_and_every_record_is_filed_once() {
    let Some(logged) = stream_through(
        Fault {
            op: Op::Write,
            path: "spool/cycP-".into(),
            nth: 2,
            times: Some(4),
            action: Action::Error(nix::libc::ENOSPC),
        },
        &[SPOOL_FAILED, SPOOL_RECOVERED],
    ) else {
        return;
    };
    assert_eq!(logged[SPOOL_FAILED], 1);
    assert_eq!(logged[SPOOL_RECOVERED], 1);
}

#[test]
fn eio_on_a_spool_fsync_rewrites_the_file_and_loses_nothing_at_a_cut() {
    let Some(logged) = stream_through(
        Fault::once(
            Op::Fsync,
            "spool/cycP-",
            2,
            Action::ErrorLosingWrites(nix::libc::EIO),
        ),
        &[SPOOL_FAILED, SPOOL_RECOVERED],
    ) else {
        return;
    };
    assert_eq!(logged[SPOOL_FAILED], 1);
    assert_eq!(logged[SPOOL_RECOVERED], 1);
}

/// Streams records with a store `fault` armed: billbox gives up the store
/// and stops with exit 3, leaving the mark for the next start. It starts
/// again, writes the store again, and has at least what it had committed;
/// then the power is cut, and it still has all of it. The records after
/// that are sent again and everything ends up filed and delivered once.
fn store_fault_stops_billbox(fault: Fault, extra: &str) {
    let Some(rig) = Rig::with(extra) else {
        return;
    };
    let mut bb = rig.start("");
    let _cut_on_drop = CutOnDrop(rig.disk.control.clone());
    rig.disk.control.add_fault(fault.clone());
    let mut pbx = bb.send("p", b"");
    let mut oracle = 0;
    for chunk in rig.sent.chunks(5) {
        if pbx.send(&chunk.concat()).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        match metrics_within(&bb, Duration::from_secs(2)) {
            Some(page) => {
                if let Some(v) = metric(&page, "billbox_port_committed_sequence{port=\"p\"}") {
                    oracle = v as u64;
                }
            }
            None => break,
        }
    }
    assert_eq!(
        bb.wait_exit(WAIT),
        Some(3),
        "billbox stops after a failed sync: {:?}",
        bb.dump()
    );
    assert!(
        rig.disk.control.stats().faults_fired >= 1,
        "{fault:?} never fired"
    );
    let failed = bb
        .wait_log("The store's disk failed a sync", None, Duration::ZERO)
        .unwrap_or_else(|| panic!("not logged: {:?}", bb.dump()));
    assert_eq!(bb.count_logs("The store's disk failed a sync", None), 1);
    assert!(
        rig.site.data().join("store.resync").exists(),
        "the mark for the next start"
    );
    drop(pbx);
    drop(bb);
    rig.disk.control.clear_faults();

    // Started again (as its container or unit would): the store is written
    // again first, so what the failed writeback dropped reaches the disk.
    let bb = rig.start("again");
    assert_eq!(
        bb.count_logs("were written again", None),
        1,
        "{:?}",
        bb.dump()
    );
    assert!(!rig.site.data().join("store.resync").exists());
    let restarted = committed(&bb);
    assert!(
        restarted >= oracle,
        "{oracle} committed before the failure, {restarted} after the restart"
    );
    // Then the power goes: everything this run holds must be on the disk.
    rig.cut(bb);

    let bb = rig.start("after the cut");
    // Without the store written again, sled's log has a hole where the
    // failed writeback was: the store comes back short and is moved aside.
    assert_eq!(
        bb.count_logs("moved aside", None),
        0,
        "the store survived the cut: {:?}",
        bb.dump()
    );
    let kept = committed(&bb);
    assert!(
        (restarted..=RECORDS).contains(&kept),
        "{restarted} committed after the restart, {kept} after the cut"
    );
    eprintln!(
        "{fault:?}: {oracle} committed before the failure, {} given up ({}), {restarted} after the restart, {kept} after the cut",
        failed["records"], failed["error"]
    );
    // The rest, sent again.
    bb.send("p", &rig.sent[kept as usize..].concat());
    rig.finish(bb);
}

#[test]
fn eio_on_the_stores_fdatasync_stops_billbox_and_loses_nothing_committed_at_a_cut() {
    store_fault_stops_billbox(
        Fault::once(
            Op::Fsync,
            "data/store/db",
            8,
            Action::ErrorLosingWrites(nix::libc::EIO),
        ),
        "",
    );
}

#[test]
fn enospc_in_the_middle_of_the_stores_writes_stops_billbox_and_loses_nothing_committed() {
    store_fault_stops_billbox(
        Fault {
            op: Op::Write,
            path: "data/store/db".into(),
            nth: 6,
            times: Some(3),
            action: Action::Error(nix::libc::ENOSPC),
        },
        "",
    );
}

#[test]
fn a_store_fdatasync_that_does_not_return_in_time_stops_billbox_and_loses_nothing_committed() {
    store_fault_stops_billbox(
        Fault::once(
            Op::Fsync,
            "data/store/db",
            8,
            Action::Delay(Duration::from_secs(4)),
        ),
        "[store]\nflush_timeout = \"1s\"\n",
    );
}
