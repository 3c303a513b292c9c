//! Faults, freezes and reported space.

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use billbox_faultfs::{Action, Cut, Fault, Op, Space};
use common::WAIT;

#[test]
fn the_mount_is_a_fuse_file_system() {
    let r = rig!();
    let st = nix::sys::statfs::statfs(r.fs.path()).unwrap();
    assert_eq!(st.filesystem_type(), nix::sys::statfs::FUSE_SUPER_MAGIC);
}

#[test]
fn error_fault_fires_on_the_nth_matching_write_only() {
    let r = rig!();
    std::fs::create_dir(r.p("spool")).unwrap();
    r.ctl.add_fault(Fault::once(
        Op::Write,
        "spool/",
        2,
        Action::Error(libc::EIO),
    ));
    let f = File::create(r.p("spool/m")).unwrap();
    let other = File::create(r.p("other")).unwrap();
    f.write_all_at(b"1", 0).unwrap();
    other.write_all_at(b"x", 0).unwrap();
    let e = f.write_all_at(b"2", 1).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    f.write_all_at(b"3", 1).unwrap();
    other.write_all_at(b"y", 1).unwrap();
    assert_eq!(
        r.read("spool/m").unwrap(),
        b"13",
        "the failed write wrote nothing"
    );
    assert_eq!(r.read("other").unwrap(), b"xy");
    assert_eq!(r.ctl.stats().faults_fired, 1);
}

/// What Linux does after a writeback error: the failed fsync's data stays
/// readable, a second fsync succeeds, and the data is still not durable.
#[test]
fn an_fsync_that_failed_losing_writes_loses_them_even_after_a_good_fsync() {
    let r = rig!();
    r.durable_file("db", b"");
    r.ctl.add_fault(Fault::once(
        Op::Fsync,
        "db",
        1,
        Action::ErrorLosingWrites(libc::EIO),
    ));
    let f = OpenOptions::new().write(true).open(r.p("db")).unwrap();
    f.write_all_at(b"lost", 0).unwrap();
    let e = f.sync_data().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(r.read("db").unwrap(), b"lost", "still readable");
    f.write_all_at(b"kept", 4).unwrap();
    f.sync_data().unwrap();
    drop(f);
    r.ctl.cut(Cut::All);
    let after = r.read("db").unwrap();
    assert_eq!(after.len(), 8);
    assert_eq!(&after[..4], &[0u8; 4], "the forgotten write is a hole");
    assert_eq!(&after[4..], b"kept");
}

#[test]
fn a_sync_after_a_write_was_lost_writes_what_readers_see() {
    let r = rig!();
    r.durable_file("db", b"");
    r.ctl.add_fault(Fault::once(
        Op::Fsync,
        "db",
        1,
        Action::ErrorLosingWrites(libc::EIO),
    ));
    let f = OpenOptions::new().write(true).open(r.p("db")).unwrap();
    f.write_all_at(b"lost", 0).unwrap();
    assert!(f.sync_data().is_err());
    drop(f);
    // Control::sync is a sync(2) of a disk that works: the page cache's
    // contents reach it, the forgotten write too.
    r.ctl.sync();
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("db").unwrap(), b"lost");
}

#[test]
#[should_panic(expected = "cannot be injected")]
fn enosys_is_not_a_fault_that_can_be_injected() {
    let r = rig!();
    // The kernel would take it as "fsync not supported" for good.
    r.ctl
        .add_fault(Fault::once(Op::Fsync, "db", 1, Action::Error(libc::ENOSYS)));
}

#[test]
fn enospc_fault_on_fsync_makes_nothing_durable() {
    let r = rig!();
    r.durable_file("db", b"");
    r.ctl
        .add_fault(Fault::once(Op::Fsync, "db", 1, Action::Error(libc::ENOSPC)));
    let f = OpenOptions::new().write(true).open(r.p("db")).unwrap();
    f.write_all_at(b"record", 0).unwrap();
    let e = f.sync_data().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    drop(f);
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("db").unwrap(), b"");
}

#[test]
fn fault_times_and_forever() {
    let r = rig!();
    let id = r.ctl.add_fault(Fault {
        op: Op::Create,
        path: ".tmp".into(),
        nth: 2,
        times: Some(2),
        action: Action::Error(libc::ENOSPC),
    });
    let results: Vec<bool> = (0..5)
        .map(|i| File::create(r.p(&format!("f{i}.tmp"))).is_ok())
        .collect();
    assert_eq!(results, [true, false, false, true, true]);
    assert!(r.ctl.remove_fault(id));
    assert!(!r.ctl.remove_fault(id));

    std::fs::create_dir(r.p("locked")).unwrap();
    r.ctl
        .add_fault(Fault::always(Op::Any, "locked/", Action::Error(libc::EIO)));
    for _ in 0..3 {
        let e = std::fs::write(r.p("locked/x"), b"").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
    }
    r.ctl.clear_faults();
    std::fs::write(r.p("locked/x"), b"").unwrap();
}

#[test]
fn fault_on_a_non_matching_path_does_not_fire() {
    let r = rig!();
    r.ctl.add_fault(Fault::always(
        Op::Write,
        "store/db",
        Action::Error(libc::EIO),
    ));
    r.ctl.add_fault(Fault::always(
        Op::Rename,
        "nothing-like-this",
        Action::Error(libc::EIO),
    ));
    std::fs::create_dir(r.p("store")).unwrap();
    std::fs::write(r.p("store/conf"), b"ok").unwrap();
    std::fs::rename(r.p("store/conf"), r.p("store/conf2")).unwrap();
    assert_eq!(r.read("store/conf2").unwrap(), b"ok");
    assert_eq!(r.ctl.stats().faults_fired, 0);
    let e = std::fs::write(r.p("store/db"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
}

#[test]
fn rename_fault_matches_the_old_or_the_new_path() {
    let r = rig!();
    r.ctl.add_fault(Fault::always(
        Op::Rename,
        ".quarantined",
        Action::Error(libc::EIO),
    ));
    std::fs::create_dir(r.p("store")).unwrap();
    let e = std::fs::rename(r.p("store"), r.p("store.quarantined-1")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert!(r.exists("store"));
}

#[test]
fn delayed_fsync_does_not_block_other_requests() {
    let r = rig!();
    r.durable_file("slow", b"");
    r.durable_file("fast", b"readable");
    let delay = Duration::from_millis(300);
    r.ctl
        .add_fault(Fault::once(Op::Fsync, "slow", 1, Action::Delay(delay)));
    let slow = OpenOptions::new().write(true).open(r.p("slow")).unwrap();
    slow.write_all_at(b"data", 0).unwrap();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let res = slow.sync_all();
        tx.send((res.map_err(|e| e.to_string()), start.elapsed()))
            .unwrap();
    });
    let (_, delayed) = r.ctl.wait_stats(WAIT, |s| s.delayed_requests == 1);
    assert!(delayed, "the fsync reached the timer");
    // Meanwhile the session loop answers another file's read.
    assert_eq!(r.read("fast").unwrap(), b"readable");
    assert!(rx.try_recv().is_err(), "the fsync is still waiting");
    let (res, took) = rx.recv_timeout(WAIT).expect("the delayed fsync ends");
    t.join().unwrap();
    res.unwrap();
    assert!(took >= delay, "took {took:?}");
    // Applied when it completed: the data is durable.
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("slow").unwrap(), b"data");
}

#[test]
fn freeze_before_fsync_holds_it_and_the_cut_fails_it() {
    let r = rig!();
    r.durable_file("db", b"old");
    r.ctl
        .add_fault(Fault::once(Op::Fsync, "db", 1, Action::FreezeBefore));
    let f = OpenOptions::new().write(true).open(r.p("db")).unwrap();
    f.write_all_at(b"new", 0).unwrap();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(f.sync_data().map_err(|e| e.raw_os_error()))
            .unwrap();
    });
    let at = r.ctl.wait_frozen(WAIT).expect("frozen by the fault");
    assert_eq!(
        (at.op, at.path.as_str(), at.applied),
        (Some(Op::Fsync), "db", false)
    );
    assert_eq!(r.ctl.stats().held_requests, 1);
    // statfs (and path lookups) still answer while frozen.
    nix::sys::statvfs::statvfs(r.fs.path()).unwrap();
    nix::sys::statvfs::statvfs(&r.p("db")).unwrap();
    assert!(r.exists("db"));
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "the fsync is held");

    let report = r.ctl.cut(Cut::All);
    assert_eq!(report.requests_failed, 1);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Err(Some(libc::EIO)));
    t.join().unwrap();
    assert!(r.ctl.frozen().is_none());
    assert_eq!(r.read("db").unwrap(), b"old");
}

#[test]
fn freeze_after_fsync_keeps_its_data() {
    let r = rig!();
    r.durable_file("db", b"old");
    r.ctl
        .add_fault(Fault::once(Op::Fsync, "db", 1, Action::FreezeAfter));
    let f = OpenOptions::new().write(true).open(r.p("db")).unwrap();
    f.write_all_at(b"new", 0).unwrap();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(f.sync_data().map_err(|e| e.raw_os_error()))
            .unwrap();
    });
    let at = r.ctl.wait_frozen(WAIT).expect("frozen by the fault");
    assert!(at.applied);
    r.ctl.cut(Cut::All);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Err(Some(libc::EIO)));
    t.join().unwrap();
    assert_eq!(r.read("db").unwrap(), b"new", "applied before the freeze");
}

#[test]
fn manual_freeze_holds_writes_unapplied() {
    let r = rig!();
    r.durable_file("f", b"");
    let f = OpenOptions::new().write(true).open(r.p("f")).unwrap();
    r.ctl.freeze();
    assert!(r.ctl.frozen().is_some_and(|a| a.fault.is_none()));
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(f.write_all_at(b"late", 0).map_err(|e| e.raw_os_error()))
            .unwrap();
    });
    let (_, held) = r.ctl.wait_stats(WAIT, |s| s.held_requests == 1);
    assert!(held);
    assert_eq!(std::fs::metadata(r.p("f")).unwrap().len(), 0, "not applied");
    let report = r.ctl.cut(Cut::All);
    assert_eq!(report.writes_dropped, 0, "a held write was never applied");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Err(Some(libc::EIO)));
    t.join().unwrap();
}

#[test]
fn thaw_applies_the_held_requests() {
    let r = rig!();
    r.durable_file("f", b"");
    let f = OpenOptions::new().write(true).open(r.p("f")).unwrap();
    r.ctl.freeze();
    let t = std::thread::spawn(move || f.write_all_at(b"paused", 0).map_err(|e| e.to_string()));
    let (_, held) = r.ctl.wait_stats(WAIT, |s| s.held_requests == 1);
    assert!(held);
    r.ctl.thaw();
    t.join().unwrap().unwrap();
    assert_eq!(r.read("f").unwrap(), b"paused");
}

#[test]
fn set_space_reports_given_numbers_and_none_restores_the_backing() {
    let r = rig!();
    let backing = nix::sys::statvfs::statvfs(r.fs.path()).unwrap();
    assert!(backing.blocks() > 0);
    r.ctl.set_space(Some(Space {
        total: 1 << 30,
        free: 0,
    }));
    let v = nix::sys::statvfs::statvfs(r.fs.path()).unwrap();
    assert_eq!(v.blocks() * v.fragment_size(), 1 << 30);
    assert_eq!((v.blocks_free(), v.blocks_available()), (0, 0));

    r.ctl.set_space(Some(Space { total: 0, free: 0 }));
    assert_eq!(nix::sys::statvfs::statvfs(r.fs.path()).unwrap().blocks(), 0);

    r.ctl.set_space(Some(Space {
        total: 100 << 20,
        free: 40 << 20,
    }));
    let v = nix::sys::statvfs::statvfs(r.fs.path()).unwrap();
    assert_eq!(v.blocks_available() * v.fragment_size(), 40 << 20);

    r.ctl.set_space(None);
    let v = nix::sys::statvfs::statvfs(r.fs.path()).unwrap();
    assert_eq!(v.blocks(), backing.blocks());
    assert_eq!(v.fragment_size(), backing.fragment_size());
}

#[test]
fn a_cut_during_a_delay_fails_the_delayed_request_unapplied() {
    let r = rig!();
    r.durable_file("slow", b"");
    r.ctl.add_fault(Fault::once(
        Op::Fsync,
        "slow",
        1,
        Action::Delay(Duration::from_secs(3)),
    ));
    let f = OpenOptions::new().write(true).open(r.p("slow")).unwrap();
    f.write_all_at(b"data", 0).unwrap();
    let t = std::thread::spawn(move || f.sync_all().map_err(|e| e.raw_os_error()));
    let (_, delayed) = r.ctl.wait_stats(WAIT, |s| s.delayed_requests == 1);
    assert!(delayed);
    let start = Instant::now();
    let report = r.ctl.cut(Cut::All);
    assert_eq!(report.requests_failed, 1);
    assert_eq!(t.join().unwrap(), Err(Some(libc::EIO)));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "answered at the cut"
    );
    assert_eq!(r.read("slow").unwrap(), b"");
}

#[test]
fn a_directory_fault_path_with_a_slash_matches_the_directory_itself() {
    let r = rig!();
    r.ctl.add_fault(Fault::always(
        Op::FsyncDir,
        "spool/",
        Action::Error(libc::EIO),
    ));
    r.ctl.add_fault(Fault::always(
        Op::Mkdir,
        "out/",
        Action::Error(libc::ENOSPC),
    ));
    std::fs::create_dir(r.p("spool")).unwrap();
    std::fs::create_dir(r.p("spoolish")).unwrap();
    let e = File::open(r.p("spool")).unwrap().sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    File::open(r.p("spoolish")).unwrap().sync_all().unwrap();
    File::open(r.p("")).unwrap().sync_all().unwrap();
    let e = std::fs::create_dir(r.p("out")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    std::fs::write(r.p("out.txt"), b"a file, not the directory").unwrap();
}

/// The power-cut recipe for a child process: freeze, kill it, cut. A
/// process blocked on a held request cannot die (not even of SIGKILL) until
/// the cut answers it.
#[test]
fn a_killed_child_blocked_on_a_held_request_exits_at_the_cut() {
    let r = rig!();
    r.ctl.freeze();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo data > '{}'", r.p("f").display()))
        .spawn()
        .unwrap();
    let (_, held) = r.ctl.wait_stats(WAIT, |s| s.held_requests >= 1);
    assert!(held, "the child's create is held");
    child.kill().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "unkillable while held");
    r.ctl.cut(Cut::All);
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the child exits after the cut");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!r.exists("f"));
}

#[test]
fn mount_refuses_a_used_or_nested_backing_directory() {
    drop(rig!());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let used = dir.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("x"), b"").unwrap();
    assert!(matches!(
        billbox_faultfs::FaultFs::mount(&used, &mnt),
        Err(billbox_faultfs::MountError::BackingNotEmpty { .. })
    ));
    assert!(matches!(
        billbox_faultfs::FaultFs::mount(&mnt.join("inside"), &mnt),
        Err(billbox_faultfs::MountError::BackingInsideMount { .. })
    ));
    assert!(matches!(
        billbox_faultfs::FaultFs::mount(&dir.path().join("b"), &dir.path().join("missing")),
        Err(billbox_faultfs::MountError::Mountpoint { .. })
    ));
}

#[test]
fn a_killed_child_with_open_files_exits_during_a_freeze() {
    let r = rig!();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3>'{}'; exec sleep 10", r.p("f").display()))
        .spawn()
        .unwrap();
    let (_, opened) = r
        .ctl
        .wait_stats(WAIT, |s| s.requests.contains_key("create"));
    assert!(opened);
    std::thread::sleep(Duration::from_millis(50));
    r.ctl.freeze();
    child.kill().unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "close's flush is answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    r.ctl.cut(Cut::All);
    assert!(!r.exists("f"));
}
