//! A damaged store never causes a crash loop and never lets a sequence be
//! reused: billbox moves it aside, says so at ERROR, and goes on with a fresh
//! store whose sequences start above the old ones.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use billbox_testkit::receiver::Receiver;
use billbox_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn feed(bb: &Billbox, from: u64, to: u64) {
    let data: String = (from..=to).map(|i| format!("rec {i}\n")).collect();
    bb.send("p", data.as_bytes());
}

/// Damages the store of a stopped billbox and starts it again. With
/// `must_quarantine`, the damage is such that the store cannot be used.
fn damage_then_restart(must_quarantine: bool, damage: impl FnOnce(&Path)) {
    let site = Site::new();
    let config = site.config(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 50\nbilling_timeout = \"1s\"\n",
    );
    let bb = Billbox::start(&config);
    feed(&bb, 1, 3000);
    wait_until(WAIT, || {
        (site.records_in_files("P", b"\n").len() >= 3000).then_some(())
    })
    .unwrap();
    assert_eq!(bb.terminate(), Some(0));
    let before = site.inspect()["p"]["last_seq"].as_u64().unwrap();
    assert_eq!(before, 3000);

    damage(&site.data().join("store"));

    let mut bb = Billbox::start(&config);
    bb.wait_log("billbox is running", None, WAIT)
        .unwrap_or_else(|| panic!("billbox did not start; logs: {:?}", bb.dump()));
    let quarantined = bb.count_logs("The store is damaged and was moved aside", None) == 1;
    assert!(
        quarantined || !must_quarantine,
        "no quarantine; logs: {:?}",
        bb.dump()
    );
    eprintln!("damaged store quarantined: {quarantined}");
    feed(&bb, 3001, 3010);
    wait_until(WAIT, || {
        (site.records_in_files("P", b"\n").len() >= 3010).then_some(())
    })
    .unwrap();
    assert!(bb.alive(), "billbox keeps running");
    assert_eq!(bb.terminate(), Some(0));
    // The damaged store is kept, not deleted.
    let kept: Vec<_> = std::fs::read_dir(site.data())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("store.quarantined-")
        })
        .collect();
    assert_eq!(kept.len(), usize::from(quarantined));
    // New sequences start above every one handed out before.
    let stats = site.inspect();
    let last = stats["p"]["last_seq"].as_u64().unwrap();
    assert!(last > before + 10 - 1 && last >= 3010, "last_seq {last}");
    assert!(
        stats["p"]["first_seq"].as_u64().is_none_or(|f| f > before),
        "{:?}",
        stats["p"]
    );
    // Every record is still in the files, once.
    let filed = site.records_in_files("P", b"\n");
    let sent: Vec<Vec<u8>> = (1..=3010)
        .map(|i| format!("rec {i}\n").into_bytes())
        .collect();
    assert_exactly_once(&sent, &filed, "p");
    // A third start is clean.
    let bb = Billbox::start(&config);
    bb.wait_log("billbox is running", None, WAIT).unwrap();
    assert_eq!(bb.count_logs("moved aside", None), 0);
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn a_truncated_store_is_moved_aside_and_billbox_goes_on() {
    damage_then_restart(true, |store| {
        let db = std::fs::OpenOptions::new()
            .write(true)
            .open(store.join("db"))
            .unwrap();
        let len = db.metadata().unwrap().len();
        db.set_len(len / 4).unwrap();
    });
}

#[test]
fn a_bit_flipped_store_never_crash_loops_or_reuses_a_sequence() {
    // 32 flipped bytes every 32 KiB over the whole log: sled either recovers
    // what is intact (billbox goes on), reports damage, or panics while
    // recovering (caught); billbox never exits and never reuses a sequence.
    damage_then_restart(false, |store| {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(store.join("db"))
            .unwrap();
        let len = f.metadata().unwrap().len();
        let mut at = 4096;
        while at + 32 < len {
            let mut buf = [0u8; 32];
            f.seek(SeekFrom::Start(at)).unwrap();
            f.read_exact(&mut buf).unwrap();
            buf.iter_mut().for_each(|b| *b ^= 0x5a);
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&buf).unwrap();
            at += 32 * 1024;
        }
    });
}

#[test]
fn salvage_files_and_delivers_what_a_moved_aside_store_still_holds() {
    use billbox_testkit::billing::{BillingServer, Log};
    let site = Site::new();
    let log = Log::default();
    let mut a = BillingServer::start("A", &log);
    a.down();
    let config = site.config(&format!(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 1000\nbilling_timeout = \"1h\"\n\
         [delivery]\nprimary = \"{}\"\nretry_delay = \"50ms\"\nrequest_timeout = \"1s\"\nbatch_max = 7\n",
        a.url()
    ));
    let bb = Billbox::start(&config);
    feed(&bb, 1, 100);
    // All 100 committed and in the open .tmp file; none filed or delivered.
    wait_until(WAIT, || {
        let tmp = site.tmp_files();
        (tmp.len() == 1 && split_records(&std::fs::read(&tmp[0]).unwrap(), b"\n").len() == 100)
            .then_some(())
    })
    .expect("the records reached the open file");
    bb.kill9();
    // The store is set aside, as billbox does with a damaged one.
    let moved = site.data().join("store.quarantined-test");
    std::fs::rename(site.data().join("store"), &moved).unwrap();
    a.up();
    let out = std::process::Command::new(bin())
        .args(["salvage", "--wait", "30s", "--config"])
        .arg(site.dir.path().join("billbox.toml"))
        .arg(&moved)
        .output()
        .unwrap();
    let stdout = assert_exit(&out, 0);
    assert!(stdout.contains("\"filed_records\":100"), "{stdout}");
    assert!(stdout.contains("\"delivered_records\":100"), "{stdout}");
    // The open file was completed and closed; nothing left as .tmp.
    assert!(site.tmp_files().is_empty());
    let sent: Vec<Vec<u8>> = (1..=100)
        .map(|i| format!("rec {i}\n").into_bytes())
        .collect();
    assert_exactly_once(&sent, &site.records_in_files("P", b"\n"), "salvaged files");
    // Delivered with their original sequences.
    let seqs: Vec<u64> = a.acked().into_iter().map(|(_, s)| s).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
}

/// Regression: two quarantines within one second took the same directory
/// name; the rename failed and billbox exited 2 (a crash loop then stops a
/// gateway for good).
#[test]
fn a_quarantine_whose_name_is_taken_moves_the_store_under_another() {
    let site = Site::new();
    let config = site.config(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 50\nbilling_timeout = \"1s\"\n",
    );
    let bb = Billbox::start(&config);
    feed(&bb, 1, 100);
    wait_until(WAIT, || {
        (site.records_in_files("P", b"\n").len() >= 100).then_some(())
    })
    .unwrap();
    assert_eq!(bb.terminate(), Some(0));
    // An earlier quarantine of this second (and the next few) holds the name.
    let now = chrono::Utc::now();
    for s in -1..=20 {
        let stamp = (now + chrono::Duration::seconds(s)).format("%Y%m%dT%H%M%SZ");
        let taken = site.data().join(format!("store.quarantined-{stamp}"));
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("db"), b"an earlier damaged store").unwrap();
    }
    let db = std::fs::OpenOptions::new()
        .write(true)
        .open(site.data().join("store").join("db"))
        .unwrap();
    db.set_len(db.metadata().unwrap().len() / 4).unwrap();
    drop(db);

    let mut bb = Billbox::start(&config);
    bb.wait_log("billbox is running", None, WAIT)
        .unwrap_or_else(|| panic!("billbox did not start: {:?}", bb.dump()));
    assert_eq!(bb.count_logs("moved aside", None), 1, "{:?}", bb.dump());
    assert!(bb.alive());
    feed(&bb, 101, 110);
    wait_until(WAIT, || {
        (site.records_in_files("P", b"\n").len() >= 110).then_some(())
    })
    .unwrap();
    assert_eq!(bb.terminate(), Some(0));
    let second: Vec<String> = std::fs::read_dir(site.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("store.quarantined-") && n.ends_with("-2"))
        .collect();
    assert_eq!(second.len(), 1, "the store moved under a second name");
    // The earlier ones are untouched.
    let earlier = site
        .data()
        .join(second[0].trim_end_matches("-2"))
        .join("db");
    assert_eq!(std::fs::read(earlier).unwrap(), b"an earlier damaged store");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// An operator puts back a copy of the data directory (the store with its
/// `sequences` guard) taken 100 records earlier. The store hands those
/// sequences out again; the server still files the new records (under new
/// ids), and drops nothing as a duplicate.
#[test]
fn a_data_dir_put_back_from_an_old_backup_sends_new_records_under_new_ids() {
    let site = Site::new();
    let received = site.dir.path().join("received");
    std::fs::create_dir_all(&received).unwrap();
    let receiver = Receiver::start_in(&received, true, &[]);
    let config = site.config(&format!(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nalias = \"P\"\nbilling_eor = \"\\n\"\nbilling_records = 50\nbilling_timeout = \"1s\"\n\n\
         [delivery]\nprimary = \"{}\"\nretry_delay = \"50ms\"\nbatch_max = 20\n",
        receiver.url("http")
    ));
    let delivered = |n: usize| {
        wait_until(WAIT, || (receiver.records().len() >= n).then_some(()))
            .unwrap_or_else(|| panic!("{} of {n} delivered", receiver.records().len()))
    };
    let run = |from: u64, to: u64, text: &str, total: usize| {
        let bb = Billbox::start(&config);
        let data: String = (from..=to).map(|i| format!("{text} {i}\n")).collect();
        bb.send("p", data.as_bytes());
        delivered(total);
        assert_eq!(bb.terminate(), Some(0));
    };
    run(1, 100, "rec", 100);
    let backup = site.dir.path().join("backup");
    copy_tree(&site.data(), &backup);
    assert!(
        backup.join("sequences").exists(),
        "the guard is in the copy"
    );
    run(101, 200, "rec", 200);

    // Put back: the store and its guard as they were 100 records ago.
    std::fs::remove_dir_all(site.data()).unwrap();
    copy_tree(&backup, &site.data());
    run(101, 200, "new", 300);

    let mut sent: Vec<Vec<u8>> = (1..=200)
        .map(|i| format!("rec {i}\n").into_bytes())
        .collect();
    sent.extend((101..=200).map(|i| format!("new {i}\n").into_bytes()));
    assert_exactly_once(&sent, &receiver.records(), "the server");
    // The sequences were handed out again (the receiver says so), under ids
    // it had not seen.
    assert!(
        receiver.count_logs("reuses a sequence held under another epoch") >= 100,
        "{:?}",
        receiver.logs.lock().unwrap()
    );
    let ids = billbox_receiver::held_ids(&received.join("gw-test")).unwrap();
    let epochs: std::collections::HashSet<_> = ids.iter().map(|(_, _, e)| *e).collect();
    assert_eq!(ids.len(), 300);
    assert!(epochs.len() >= 3 && !epochs.contains(&billbox_record::Epoch::NONE));
}
