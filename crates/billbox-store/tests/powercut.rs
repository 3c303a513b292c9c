//! The store on faultfs (a file system that loses what was not synced at a
//! power cut): a store that was created and closed is still a store after a
//! cut. sled writes its `conf` file in two writes and never syncs it; a cut
//! that kept the first and not the second left a store sled refused, so the
//! store syncs `conf` when it opens. Skipped (printed) without root and
//! `/dev/fuse`.

use std::sync::Arc;

use billbox_faultfs::{available, Cut, FaultFs};
use billbox_record::RecordFlags;
use billbox_store::{NewRecord, Store};

#[test]
fn a_new_store_opens_again_after_a_power_cut_whatever_the_cut_kept() {
    if let Err(why) = available() {
        eprintln!("SKIPPED: needs faultfs: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let fs = FaultFs::mount(&dir.path().join("backing"), &mnt).unwrap();
    let control = fs.control();
    // Each seed keeps another half of the unsynced writes.
    for seed in 1..=16u64 {
        let path = mnt.join(format!("store-{seed}"));
        std::fs::create_dir(&path).unwrap();
        std::fs::File::open(&mnt).unwrap().sync_all().unwrap();
        {
            let store = Store::open(&path, 1 << 20).unwrap();
            let records = [NewRecord {
                received_us: 1,
                flags: RecordFlags::NONE,
                bytes: b"one\n".to_vec(),
            }];
            store.append(&[(Arc::from("p"), &records[..])]).unwrap();
            store.flush_blocking().unwrap();
        }
        let report = control.cut(Cut::RandomSubset { seed, keep: 0.5 });
        let store = Store::open(&path, 1 << 20)
            .unwrap_or_else(|e| panic!("seed {seed}: after a cut ({report:?}): {e}"));
        assert_eq!(
            store.last_seq("p").unwrap(),
            1,
            "seed {seed}: the flushed record"
        );
    }
}
