use super::*;

fn rec(s: &str) -> NewRecord {
    NewRecord {
        received_us: 1_700_000_000_000_000,
        flags: RecordFlags::NONE,
        bytes: s.as_bytes().to_vec(),
    }
}

/// Opens the store; a reopen right after a drop retries while sled's I/O
/// threads (which an async flush leaves a handle with) still hold its lock.
fn open(dir: &Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir, 8 << 20) {
            Ok(s) => return s,
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn sequences_are_per_port_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    let b: Arc<str> = Arc::from("b");
    {
        let store = open(dir.path());
        let got = store
            .append(&[
                (a.clone(), &[rec("a1\n"), rec("a2\n")][..]),
                (b.clone(), &[rec("b1\n")][..]),
                (a.clone(), &[rec("a3\n")][..]),
            ])
            .unwrap();
        assert_eq!(
            got,
            vec![
                Assigned { first: 1, count: 2 },
                Assigned { first: 1, count: 1 },
                Assigned { first: 3, count: 1 },
            ]
        );
        assert_eq!(store.durable_seq("a"), 0);
        store.flush().await.unwrap();
        store.mark_durable("a", 3);
        assert_eq!(store.durable_seq("a"), 3);
    }
    let store = open(dir.path());
    assert_eq!(store.durable_seq("a"), 3);
    assert_eq!(store.durable_seq("b"), 1);
    let got = store.append(&[(a.clone(), &[rec("a4\n")][..])]).unwrap();
    assert_eq!(got, vec![Assigned { first: 4, count: 1 }]);
    let bodies: Vec<Vec<u8>> = store
        .records("a", 1, 10)
        .map(|r| r.unwrap().bytes)
        .collect();
    assert_eq!(
        bodies,
        vec![
            b"a1\n".to_vec(),
            b"a2\n".to_vec(),
            b"a3\n".to_vec(),
            b"a4\n".to_vec()
        ]
    );
    let seqs: Vec<u64> = store.records("a", 2, 3).map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, vec![2, 3]);
    assert_eq!(store.records("a", 5, 4).count(), 0);
    assert_eq!(store.records("b", 1, 10).count(), 1);
    assert_eq!(
        store.port_stats("a").unwrap(),
        PortStats {
            records: 4,
            first_seq: Some(1),
            last_seq: 4
        }
    );
    assert_eq!(store.ports(), vec![a, b]);
}

#[test]
fn ports_with_prefix_names_do_not_mix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(&[
            (Arc::from("p"), &[rec("1")][..]),
            (Arc::from("p1"), &[rec("2"), rec("3")][..]),
        ])
        .unwrap();
    assert_eq!(store.records("p", 0, u64::MAX).count(), 1);
    assert_eq!(store.records("p1", 0, u64::MAX).count(), 2);
    assert_eq!(store.port_stats("p").unwrap().records, 1);
}

#[test]
fn metadata_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        assert_eq!(store.get_meta("p", "rotator").unwrap(), None);
        store.put_meta("p", "rotator", b"state").unwrap();
        store.put_meta("p", "other", b"x").unwrap();
        store.remove_meta("p", "other").unwrap();
        store.flush_blocking().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        store.get_meta("p", "rotator").unwrap(),
        Some(b"state".to_vec())
    );
    assert_eq!(store.get_meta("p", "other").unwrap(), None);
}

#[test]
fn records_keep_any_bytes_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let raw = NewRecord {
        received_us: -5,
        flags: RecordFlags::truncated(),
        bytes: vec![0, 0xff, 0xfe, b'\r', b'\n', 0],
    };
    store
        .append(&[(Arc::from("p"), std::slice::from_ref(&raw))])
        .unwrap();
    let back = store.records("p", 1, 1).next().unwrap().unwrap();
    assert_eq!(back.bytes, raw.bytes);
    assert_eq!(back.flags, raw.flags);
    assert_eq!(back.received_us, -5);
}

#[tokio::test]
async fn cursors_only_move_forward_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        assert_eq!(store.cursor("p", DELIVERY_CURSOR).unwrap(), 0);
        assert_eq!(store.advance_cursor("p", DELIVERY_CURSOR, 5).unwrap(), 5);
        assert_eq!(store.advance_cursor("p", DELIVERY_CURSOR, 3).unwrap(), 5);
        store
            .advance_cursor("p", &carbon_copy_cursor("audit"), 2)
            .unwrap();
        store.flush().await.unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.cursor("p", DELIVERY_CURSOR).unwrap(), 5);
    assert_eq!(store.cursor("p", &carbon_copy_cursor("audit")).unwrap(), 2);
    assert_eq!(store.cursor("q", DELIVERY_CURSOR).unwrap(), 0);
}

#[tokio::test]
async fn removal_stops_at_flushed_records_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p: Arc<str> = Arc::from("p");
    {
        let store = open(dir.path());
        let recs: Vec<NewRecord> = (0..10).map(|i| rec(&format!("r{i}\n"))).collect();
        store.append(&[(p.clone(), &recs[..])]).unwrap();
        store.flush().await.unwrap();
        store.mark_durable("p", 8);
        assert_eq!(store.first_held("p"), Some(1));
        assert_eq!(store.remove_through("p", 4).unwrap(), 4);
        assert_eq!(store.remove_through("p", 4).unwrap(), 0);
        // Not past the flushed ones.
        assert_eq!(store.remove_through("p", 100).unwrap(), 4);
        assert_eq!(store.first_held("p"), None);
        assert_eq!(store.records("p", 1, 10).count(), 2);
        assert_eq!(store.backlog("p", DELIVERY_CURSOR).unwrap(), 8);
        assert_eq!(store.total_backlog(DELIVERY_CURSOR).unwrap(), 10);
        store.flush().await.unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.first_held("p"), Some(9));
    assert_eq!(store.port_stats("p").unwrap().records, 2);
    // Sequences go on from the counter, not from what is held.
    let got = store.append(&[(p.clone(), &[rec("x\n")][..])]).unwrap();
    assert_eq!(got[0].first, 11);
}

#[tokio::test]
async fn records_too_large_for_sleds_log_pages_go_to_blobs_and_survive() {
    let dir = tempfile::tempdir().unwrap();
    let big = NewRecord {
        received_us: 1,
        flags: RecordFlags::truncated(),
        bytes: {
            // Incompressible (xorshift), so it stays over sled's limit.
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            (0..1_048_576u32)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        },
    };
    {
        let store = open(dir.path());
        store
            .append(&[(Arc::from("p"), std::slice::from_ref(&big))])
            .unwrap();
        store.flush().await.unwrap();
        // sled wrote the record as a blob file, which billbox synced.
        let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert!(blobs >= 1, "no blob file");
    }
    let store = open(dir.path());
    let back = store.records("p", 1, 1).next().unwrap().unwrap();
    assert_eq!(back.bytes, big.bytes);
}

#[tokio::test]
async fn a_large_removal_is_done_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let n = REMOVE_CHUNK * 2 + 10;
    let recs: Vec<NewRecord> = (0..n).map(|_| rec("r\n")).collect();
    let a = store.append(&[(Arc::from("p"), &recs[..])]).unwrap();
    store.flush().await.unwrap();
    store.mark_durable("p", a[0].last());
    assert_eq!(store.remove_through("p", n).unwrap(), REMOVE_CHUNK);
    assert_eq!(store.remove_through("p", n).unwrap(), REMOVE_CHUNK);
    assert_eq!(store.remove_through("p", n).unwrap(), 10);
    assert_eq!(store.remove_through("p", n).unwrap(), 0);
    assert_eq!(store.first_held("p"), None);
}

#[test]
fn submitter_ids_are_stored_with_their_record_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let port: Arc<str> = Arc::from("@transactions");
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let recs = [rec("t1\n")];
        let ids = [crate::IdEntry {
            element: 1,
            id: "order-7".into(),
            digest: [7; 32],
            at_us: 1_000,
        }];
        let got = store
            .append_indexed(
                &[(port.clone(), &recs[..]), (port.clone(), &recs[..])],
                &ids,
            )
            .unwrap();
        assert_eq!(got[1].first, 2);
        assert_eq!(
            store.lookup_id(&port, "order-7").unwrap(),
            Some((2, [7; 32]))
        );
        assert_eq!(store.lookup_id(&port, "order-8").unwrap(), None);
        store.note_ack(&port, 2, "delivery", "primary", 42).unwrap();
        store.note_ack(&port, 2, "cc:audit", "mirror", 43).unwrap();
        store
            .note_ack(&port, 20, "delivery", "primary", 44)
            .unwrap();
        store.flush_blocking().unwrap();
    }
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(
        store.lookup_id(&port, "order-7").unwrap(),
        Some((2, [7; 32]))
    );
    assert_eq!(
        store.acks(&port, 2).unwrap(),
        vec![
            ("cc:audit".to_string(), "mirror".to_string(), 43),
            ("delivery".to_string(), "primary".to_string(), 42)
        ]
    );
}

#[test]
fn ids_are_forgotten_only_once_old_and_their_records_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    let port: Arc<str> = Arc::from("@transactions");
    let recs = [rec("t\n")];
    let entry = |element: usize, id: &str, at_us| crate::IdEntry {
        element,
        id: id.into(),
        digest: [1; 32],
        at_us,
    };
    store
        .append_indexed(
            &[
                (port.clone(), &recs[..]),
                (port.clone(), &recs[..]),
                (port.clone(), &recs[..]),
            ],
            &[
                entry(0, "old", 10),
                entry(1, "old-pending", 10),
                entry(2, "new", 500),
            ],
        )
        .unwrap();
    store.mark_durable(&port, 3);
    store.note_ack(&port, 1, "delivery", "primary", 20).unwrap();
    // Nothing removed yet: nothing is forgotten, however old.
    assert_eq!(store.forget_ids(&port, 1_000, 100).unwrap(), 0);
    store.remove_through(&port, 1).unwrap();
    assert_eq!(store.forget_ids(&port, 100, 100).unwrap(), 1);
    assert_eq!(store.lookup_id(&port, "old").unwrap(), None);
    assert!(store.acks(&port, 1).unwrap().is_empty());
    assert_eq!(
        store.lookup_id(&port, "old-pending").unwrap().map(|f| f.0),
        Some(2)
    );
    store.remove_through(&port, 3).unwrap();
    // Too young.
    assert_eq!(store.forget_ids(&port, 100, 100).unwrap(), 1);
    assert_eq!(store.lookup_id(&port, "new").unwrap().map(|f| f.0), Some(3));
}

/// The epochs of a port's records `from..=to`, in order.
fn epochs(store: &Store, port: &str, from: u64, to: u64) -> Vec<Epoch> {
    store
        .records(port, from, to)
        .map(|r| r.unwrap().epoch)
        .collect()
}

#[tokio::test]
async fn each_run_stamps_its_records_with_its_own_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    let first = {
        let store = open(dir.path());
        store
            .append(&[(a.clone(), &[rec("1\n"), rec("2\n")][..])])
            .unwrap();
        store.append(&[(a.clone(), &[rec("3\n")][..])]).unwrap();
        store.flush().await.unwrap();
        assert!(!store.epoch().is_none());
        assert_eq!(epochs(&store, "a", 1, 3), vec![store.epoch(); 3]);
        store.epoch()
    };
    let store = open(dir.path());
    assert_ne!(store.epoch(), first, "a new run draws a new epoch");
    store.append(&[(a.clone(), &[rec("4\n")][..])]).unwrap();
    assert_eq!(
        epochs(&store, "a", 1, 4),
        vec![first, first, first, store.epoch()]
    );
    assert_eq!(store.epoch_of("a", 2), first);
    assert_eq!(store.epoch_of("a", 4), store.epoch());
    assert_eq!(store.epoch_of("nowhere", 1), Epoch::NONE);
}

#[tokio::test]
async fn a_store_put_back_from_a_copy_gives_its_reused_sequences_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let backup = dir.path().join("backup");
    let a: Arc<str> = Arc::from("a");
    {
        let store = open(&live);
        store
            .append(&[(a.clone(), &[rec("1\n"), rec("2\n")][..])])
            .unwrap();
        store.flush_blocking().unwrap();
    }
    copy_dir(&live, &backup);
    let after_backup = {
        let store = open(&live);
        store.append(&[(a.clone(), &[rec("3\n")][..])]).unwrap();
        store.flush_blocking().unwrap();
        store.epoch_of("a", 3)
    };
    // The copy is put back: sequence 3 is handed out again.
    let store = open(&backup);
    let got = store.append(&[(a.clone(), &[rec("3'\n")][..])]).unwrap();
    assert_eq!(got, vec![Assigned { first: 3, count: 1 }]);
    assert_ne!(store.epoch_of("a", 3), after_backup);
    assert_eq!(store.epoch_of("a", 1), store.epoch_of("a", 2));
    assert_ne!(store.epoch_of("a", 2), store.epoch_of("a", 3));
}

#[test]
fn records_of_a_store_older_than_epochs_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // What an older build wrote: a record and its counter, no epoch entry.
    let mut batch = sled::Batch::default();
    batch.insert(keys::record_key("a", 1), chunk::encode(&[rec("old\n")]));
    batch.insert(keys::seq_key("a"), &1u64.to_be_bytes());
    store.journal.apply_batch(batch).unwrap();
    store.flush_blocking().unwrap();
    drop(store);
    let store = open(dir.path());
    store
        .append(&[(Arc::from("a"), &[rec("new\n")][..])])
        .unwrap();
    assert_eq!(epochs(&store, "a", 1, 2), vec![Epoch::NONE, store.epoch()]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
