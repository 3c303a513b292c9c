//! Real programs on the mount: sled the way billbox's store uses it, and
//! concurrent writers.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use billbox_faultfs::Cut;
use common::WAIT;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("record {i:05} {}", "x".repeat(50)).into_bytes()
}

fn open_sled(dir: &Path) -> sled::Db {
    // The previous Db's files may still be held for a moment by sled's
    // threads (its lock on `db` with them): retry that, boundedly.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("sled opens: {e:?}"),
        }
    }
}

/// What billbox's store does after sled's flush: fdatasync of sled's log,
/// fsync of the store directory.
fn billbox_sync(dir: &Path) {
    File::open(dir.join("db")).unwrap().sync_data().unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

/// Drops a Db whose handles the cut made stale, within a bounded time. Its
/// last flush gets EIO, on which sled 0.34.7 panics (logger.rs unwraps the
/// write's result): the drop happens on a thread of its own, and a panic
/// there is expected (its files are closed while unwinding, which lets go of
/// sled's lock on `db`).
fn drop_stale(db: sled::Db) {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _tx = tx;
        drop(db);
    });
    match rx.recv_timeout(WAIT) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the old Db does not drop"),
    }
}

#[test]
fn sled_keeps_what_was_flushed_and_synced() {
    let r = rig!();
    let dir = r.p("store");
    let db = open_sled(&dir);
    for i in 0..1000 {
        db.insert(key(i), value(i)).unwrap();
    }
    db.flush().unwrap();
    billbox_sync(&dir);
    let s = r.ctl.stats();
    println!("sled's requests: {:?}", s.requests);
    let report = r.ctl.cut(Cut::All);
    println!("cut: {report:?}");
    drop_stale(db);

    let db = open_sled(&dir);
    assert_eq!(db.len(), 1000);
    for i in 0..1000 {
        assert_eq!(db.get(key(i)).unwrap().as_deref(), Some(&value(i)[..]));
    }
}

#[test]
fn sled_recovers_after_a_cut_that_drops_unsynced_inserts() {
    let r = rig!();
    let cuts = [
        Cut::All,
        Cut::Tear { seed: 5 },
        Cut::RandomSubset { seed: 9, keep: 0.5 },
    ];
    for (n, how) in cuts.into_iter().enumerate() {
        let dir = r.p(&format!("store-{n}"));
        let db = open_sled(&dir);
        for i in 0..1000 {
            db.insert(key(i), value(i)).unwrap();
        }
        db.flush().unwrap();
        billbox_sync(&dir);
        // sled writes `conf` once, in two writes (settings, then their
        // crc), and never syncs it; billbox's store does not either. A cut
        // that keeps the first write only leaves a conf sled rejects as
        // corrupt, so for the partial cuts it is synced here: this test is
        // about sled's log recovery.
        File::open(dir.join("conf")).unwrap().sync_all().unwrap();
        // More inserts, some written out by sled, none synced.
        for i in 1000..3000 {
            db.insert(key(i), value(i)).unwrap();
        }
        let report = r.ctl.cut(how);
        println!("cut {how:?}: {report:?}");
        drop_stale(db);

        let db = open_sled(&dir);
        for i in 0..1000 {
            assert_eq!(
                db.get(key(i)).unwrap().as_deref(),
                Some(&value(i)[..]),
                "{how:?}: synced key {i}"
            );
        }
        let mut survived = 0;
        for i in 1000..3000 {
            if let Some(v) = db.get(key(i)).unwrap() {
                assert_eq!(
                    &v[..],
                    &value(i)[..],
                    "{how:?}: a key that survived is whole"
                );
                survived += 1;
            }
        }
        println!("{how:?}: {survived} of 2000 unsynced inserts survived");
        // Still usable after recovery.
        db.insert(b"after", &b"recovery"[..]).unwrap();
        db.flush().unwrap();
    }
}

#[test]
fn concurrent_writers_keep_every_fsynced_prefix() {
    let r = rig!();
    const THREADS: usize = 4;
    const ROUNDS: usize = 200;
    let record = |t: usize, i: usize| format!("thread {t} record {i:04}\n").into_bytes();
    for t in 0..THREADS {
        File::create(r.p(&format!("w{t}"))).unwrap();
    }
    r.sync_dir("");
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = r.p(&format!("w{t}"));
            std::thread::spawn(move || {
                let mut f = OpenOptions::new().append(true).open(path).unwrap();
                for i in 0..ROUNDS {
                    f.write_all(&record(t, i)).unwrap();
                    f.sync_data().unwrap();
                }
                // One more, never synced.
                f.write_all(b"unsynced tail\n").unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = r.ctl.stats();
    assert_eq!(s.fdatasyncs, (THREADS * ROUNDS) as u64);
    assert_eq!(s.unsynced_writes, THREADS as u64);
    let report = r.ctl.cut(Cut::All);
    assert_eq!(report.writes_dropped, THREADS as u64);
    for t in 0..THREADS {
        let want: Vec<u8> = (0..ROUNDS).flat_map(|i| record(t, i)).collect();
        assert_eq!(r.read(&format!("w{t}")).unwrap(), want, "thread {t}");
    }
}
