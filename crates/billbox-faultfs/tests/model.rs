//! The durability model, each rule through real std::fs calls on a mount.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use billbox_faultfs::Cut;

#[test]
fn write_without_fsync_is_lost_at_a_cut() {
    let r = rig!();
    r.durable_file("f", b"durable");
    let mut f = OpenOptions::new().append(true).open(r.p("f")).unwrap();
    f.write_all(b" and volatile").unwrap();
    assert_eq!(r.read("f").unwrap(), b"durable and volatile");
    let s = r.ctl.stats();
    assert_eq!((s.unsynced_writes, s.unsynced_bytes), (1, 13));

    let report = r.ctl.cut(Cut::All);
    assert_eq!(r.read("f").unwrap(), b"durable");
    assert_eq!(report.writes_dropped, 1);
    assert_eq!(report.bytes_dropped, 13);
    assert_eq!(report.writes_kept, 0);
    assert_eq!(r.ctl.stats().unsynced_bytes, 0);
}

#[test]
fn truncate_without_fsync_is_undone_at_a_cut() {
    let r = rig!();
    r.durable_file("f", b"0123456789");
    OpenOptions::new()
        .write(true)
        .open(r.p("f"))
        .unwrap()
        .set_len(3)
        .unwrap();
    assert_eq!(r.read("f").unwrap(), b"012");
    let report = r.ctl.cut(Cut::All);
    assert_eq!(report.size_changes_dropped, 1);
    assert_eq!(r.read("f").unwrap(), b"0123456789");
}

#[test]
fn fsync_keeps_writes() {
    let r = rig!();
    r.durable_file("f", b"");
    let f = OpenOptions::new().write(true).open(r.p("f")).unwrap();
    f.write_all_at(b"kept", 0).unwrap();
    f.sync_all().unwrap();
    f.write_all_at(b"lost", 4).unwrap();
    let s = r.ctl.stats();
    assert_eq!((s.fsyncs, s.unsynced_writes), (2, 1));
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("f").unwrap(), b"kept");
}

#[test]
fn fdatasync_keeps_writes_and_size() {
    let r = rig!();
    r.durable_file("f", b"");
    let f = OpenOptions::new().write(true).open(r.p("f")).unwrap();
    f.write_all_at(&[7u8; 10_000], 0).unwrap();
    f.sync_data().unwrap();
    assert_eq!(r.ctl.stats().fdatasyncs, 1);
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("f").unwrap(), vec![7u8; 10_000]);
}

#[test]
fn fsync_of_a_file_does_not_make_its_name_durable() {
    let r = rig!();
    let f = File::create(r.p("new")).unwrap();
    f.write_all_at(b"data", 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let report = r.ctl.cut(Cut::All);
    assert!(
        !r.exists("new"),
        "strict POSIX: the entry needs a dir fsync"
    );
    assert_eq!(report.namespace_ops_dropped, 1);
    assert_eq!(report.orphans_freed, 1);
}

#[test]
fn dir_fsync_makes_a_created_file_durable_but_not_its_data() {
    let r = rig!();
    let f = File::create(r.p("new")).unwrap();
    f.write_all_at(b"never synced", 0).unwrap();
    r.sync_dir("");
    drop(f);
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("new").unwrap(), b"", "the name survives, empty");
}

#[test]
fn fsync_of_a_directory_arrives_as_fsyncdir() {
    let r = rig!();
    std::fs::create_dir(r.p("d")).unwrap();
    let before = r.ctl.stats();
    File::open(r.p("d")).unwrap().sync_all().unwrap();
    File::open(r.p("d")).unwrap().sync_data().unwrap();
    let after = r.ctl.stats();
    assert_eq!(after.fsyncdirs - before.fsyncdirs, 2);
    assert_eq!(
        after.fsyncs + after.fdatasyncs,
        before.fsyncs + before.fdatasyncs
    );
    // The mkdir touched the root, not d: it is still pending.
    assert_eq!(after.pending_namespace_ops, 1);
}

#[test]
fn rename_without_dir_fsync_is_undone() {
    let r = rig!();
    let f = File::create(r.p("a.tmp")).unwrap();
    r.sync_dir("");
    f.write_all_at(b"synced data", 0).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(r.p("a.tmp"), r.p("a.txt")).unwrap();
    drop(f);
    assert!(!r.exists("a.tmp"));
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("a.tmp").unwrap(), b"synced data");
    assert!(!r.exists("a.txt"));
}

#[test]
fn rename_with_dir_fsync_is_durable() {
    let r = rig!();
    r.durable_file("a.tmp", b"synced data");
    std::fs::rename(r.p("a.tmp"), r.p("a.txt")).unwrap();
    r.sync_dir("");
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("a.txt").unwrap(), b"synced data");
    assert!(!r.exists("a.tmp"));
}

#[test]
fn rename_over_a_file_without_dir_fsync_brings_the_old_one_back() {
    let r = rig!();
    r.durable_file("cur", b"old");
    r.durable_file("cur.tmp", b"new");
    std::fs::rename(r.p("cur.tmp"), r.p("cur")).unwrap();
    assert_eq!(r.read("cur").unwrap(), b"new");
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("cur").unwrap(), b"old");
    assert_eq!(r.read("cur.tmp").unwrap(), b"new");
}

#[test]
fn unlink_without_dir_fsync_is_undone() {
    let r = rig!();
    r.durable_file("f", b"still here");
    std::fs::remove_file(r.p("f")).unwrap();
    assert!(!r.exists("f"));
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("f").unwrap(), b"still here");

    std::fs::remove_file(r.p("f")).unwrap();
    r.sync_dir("");
    r.ctl.cut(Cut::All);
    assert!(!r.exists("f"));
}

#[test]
fn mkdir_without_dir_fsync_is_undone() {
    let r = rig!();
    std::fs::create_dir(r.p("d")).unwrap();
    r.durable_file("d/f", b"x");
    // d/f's fsyncdir(d) came after mkdir d: journal order made d durable.
    std::fs::create_dir(r.p("e")).unwrap();
    r.ctl.cut(Cut::All);
    assert!(r.exists("d"));
    assert_eq!(r.read("d/f").unwrap(), b"x");
    assert!(!r.exists("e"));
}

#[test]
fn rmdir_without_dir_fsync_is_undone() {
    let r = rig!();
    std::fs::create_dir(r.p("d")).unwrap();
    r.sync_dir("");
    std::fs::remove_dir(r.p("d")).unwrap();
    r.ctl.cut(Cut::All);
    assert!(std::fs::metadata(r.p("d")).unwrap().is_dir());
}

#[test]
fn directory_rename_without_dir_fsync_is_undone() {
    let r = rig!();
    std::fs::create_dir(r.p("store")).unwrap();
    r.durable_file("store/db", b"records");
    std::fs::rename(r.p("store"), r.p("store.quarantined-1")).unwrap();
    std::fs::create_dir(r.p("store")).unwrap();
    assert!(!r.exists("store/db"));
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("store/db").unwrap(), b"records");
    assert!(!r.exists("store.quarantined-1"));

    std::fs::rename(r.p("store"), r.p("store.quarantined-2")).unwrap();
    r.sync_dir("");
    r.ctl.cut(Cut::All);
    assert!(!r.exists("store"));
    assert_eq!(r.read("store.quarantined-2/db").unwrap(), b"records");
}

/// The rule: an fsync of directory D commits every pending namespace
/// operation up to and including the last one touching D, in whatever
/// directory; nothing after it.
#[test]
fn dir_fsync_commits_the_journal_in_order() {
    let r = rig!();
    std::fs::create_dir(r.p("x")).unwrap();
    std::fs::create_dir(r.p("y")).unwrap();
    r.sync_dir("");
    File::create(r.p("x/before")).unwrap();
    File::create(r.p("y/b")).unwrap();
    File::create(r.p("x/after")).unwrap();
    assert_eq!(r.ctl.stats().pending_namespace_ops, 3);
    r.sync_dir("y");
    assert_eq!(r.ctl.stats().pending_namespace_ops, 1);
    r.ctl.cut(Cut::All);
    assert!(r.exists("x/before"), "earlier op in x committed with y's");
    assert!(r.exists("y/b"));
    assert!(!r.exists("x/after"), "later op in x not committed");
}

#[test]
fn rename_between_directories_is_one_op_touching_both() {
    let r = rig!();
    std::fs::create_dir(r.p("spool")).unwrap();
    std::fs::create_dir(r.p("sent")).unwrap();
    r.sync_dir("");
    r.durable_file("spool/m1", b"m1");
    std::fs::rename(r.p("spool/m1"), r.p("sent/m1")).unwrap();
    r.sync_dir("sent");
    r.ctl.cut(Cut::All);
    assert!(!r.exists("spool/m1"));
    assert_eq!(r.read("sent/m1").unwrap(), b"m1");
}

#[test]
fn unlinked_open_file_keeps_working_until_closed() {
    let r = rig!();
    r.durable_file("f", b"");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(r.p("f"))
        .unwrap();
    std::fs::remove_file(r.p("f")).unwrap();
    r.sync_dir("");
    f.write_all_at(b"still works", 0).unwrap();
    f.sync_all().unwrap();
    let mut back = vec![0u8; 11];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, b"still works");
    drop(f);
    r.ctl.cut(Cut::All);
    assert!(!r.exists("f"));
}

#[test]
fn handles_from_before_a_cut_are_stale() {
    let r = rig!();
    r.durable_file("f", b"abc");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(r.p("f"))
        .unwrap();
    r.ctl.cut(Cut::All);
    let mut buf = [0u8; 3];
    let e = f.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let e = f.write_at(b"x", 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(f.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    drop(f);
    // Reopened by path, the file works.
    assert_eq!(r.read("f").unwrap(), b"abc");
}

#[test]
fn readdir_lists_the_current_entries_and_after_a_cut_the_durable_ones() {
    let r = rig!();
    r.durable_file("a", b"");
    File::create(r.p("b")).unwrap();
    let names = |r: &common::Rig| {
        let mut v: Vec<String> = std::fs::read_dir(r.p(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&r), ["a", "b"]);
    r.ctl.cut(Cut::All);
    assert_eq!(names(&r), ["a"]);
}

#[test]
fn random_subset_keeps_about_the_fraction_deterministically() {
    let r = rig!();
    const BLOCK: usize = 4096;
    const N: usize = 200;
    let run = |name: &str, seed: u64| {
        r.durable_file(name, b"");
        let f = OpenOptions::new().write(true).open(r.p(name)).unwrap();
        for i in 0..N {
            f.write_all_at(&[(i % 250 + 1) as u8; BLOCK], (i * BLOCK) as u64)
                .unwrap();
        }
        drop(f);
        let report = r.ctl.cut(Cut::RandomSubset { seed, keep: 0.5 });
        let data = r.read(name).unwrap();
        let mut kept = Vec::new();
        for (i, block) in data.chunks(BLOCK).enumerate() {
            if block.iter().all(|b| *b == (i % 250 + 1) as u8) {
                kept.push(i);
            } else {
                assert!(block.iter().all(|b| *b == 0), "block {i} is mixed");
            }
        }
        assert_eq!(kept.len() as u64, report.writes_kept);
        assert_eq!(report.writes_kept + report.writes_dropped, N as u64);
        kept
    };
    let first = run("r1", 42);
    assert!(
        (60..=140).contains(&first.len()),
        "kept {} of {N}",
        first.len()
    );
    assert_eq!(run("r2", 42), first, "same seed and history, same subset");
    assert_ne!(run("r3", 43), first, "another seed, another subset");
}

#[test]
fn random_subset_edges_keep_nothing_or_everything() {
    let r = rig!();
    r.durable_file("f", b"");
    let f = OpenOptions::new().write(true).open(r.p("f")).unwrap();
    f.write_all_at(b"one", 0).unwrap();
    drop(f);
    let report = r.ctl.cut(Cut::RandomSubset { seed: 1, keep: 0.0 });
    assert_eq!((report.writes_kept, report.writes_dropped), (0, 1));
    let f = OpenOptions::new().write(true).open(r.p("f")).unwrap();
    f.write_all_at(b"two", 0).unwrap();
    drop(f);
    let report = r.ctl.cut(Cut::RandomSubset { seed: 1, keep: 1.0 });
    assert_eq!((report.writes_kept, report.writes_dropped), (1, 0));
    assert_eq!(r.read("f").unwrap(), b"two");
}

#[test]
fn tear_keeps_a_sector_aligned_prefix_of_one_write() {
    let r = rig!();
    let data: Vec<u8> = (0..4196u32).map(|i| (i % 251) as u8 + 1).collect();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..4u64 {
        let name = format!("t{seed}");
        r.durable_file(&name, b"");
        let f = OpenOptions::new().write(true).open(r.p(&name)).unwrap();
        f.write_all_at(&data, 100).unwrap();
        drop(f);
        let report = r.ctl.cut(Cut::Tear { seed });
        let torn = report.torn.expect("a write with a sector boundary inside");
        assert_eq!(
            (torn.path.as_str(), torn.offset, torn.len),
            (name.as_str(), 100, 4196)
        );
        assert_eq!((torn.offset + torn.kept) % 512, 0);
        assert!(torn.kept > 0 && torn.kept < torn.len);
        let back = r.read(&name).unwrap();
        assert_eq!(back.len() as u64, 100 + torn.kept);
        assert!(back[..100].iter().all(|b| *b == 0));
        assert_eq!(&back[100..], &data[..torn.kept as usize]);
        seen.insert(torn.kept);
    }
    assert!(seen.len() > 1, "seeds pick different boundaries: {seen:?}");
}

#[test]
fn sync_makes_everything_durable() {
    let r = rig!();
    std::fs::create_dir(r.p("d")).unwrap();
    std::fs::write(r.p("d/f"), b"all of it").unwrap();
    r.ctl.sync();
    let s = r.ctl.stats();
    assert_eq!((s.unsynced_writes, s.pending_namespace_ops), (0, 0));
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("d/f").unwrap(), b"all of it");
}

#[test]
fn fallocate_extends_and_is_volatile() {
    let r = rig!();
    r.durable_file("f", b"ab");
    let f = OpenOptions::new().write(true).open(r.p("f")).unwrap();
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FallocateFlags::empty(),
        0,
        8192,
    )
    .unwrap();
    assert_eq!(std::fs::metadata(r.p("f")).unwrap().len(), 8192);
    drop(f);
    r.ctl.cut(Cut::All);
    assert_eq!(r.read("f").unwrap(), b"ab");
}
