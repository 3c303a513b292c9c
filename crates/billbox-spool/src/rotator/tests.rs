use super::*;
use billbox_record::RecordFlags;
use billbox_store::NewRecord;

const T0: i64 = 1_790_000_000_000_000;
const SEC: i64 = 1_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    spool: PathBuf,
    store_dir: PathBuf,
    store: Option<Store>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let store_dir = dir.path().join("store");
        std::fs::create_dir(&spool).unwrap();
        let store = Some(Store::open(&store_dir, 8 << 20).unwrap());
        Fixture {
            _dir: dir,
            spool,
            store_dir,
            store,
        }
    }

    fn store(&self) -> Store {
        self.store.clone().unwrap()
    }

    /// Appends `n` records `port-i\n` received one second apart from `start_us`
    /// and flushes them; returns them as stored.
    fn feed(&self, n: u64, start_us: i64) -> Vec<Record> {
        let store = self.store();
        let port: Arc<str> = Arc::from("p");
        let first = store.durable_seq("p") + 1;
        let news: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                received_us: start_us + i as i64 * SEC,
                flags: RecordFlags::NONE,
                bytes: format!("rec-{}\n", first + i).into_bytes(),
            })
            .collect();
        let assigned = store.append(&[(port, &news[..])]).unwrap();
        store.flush_blocking().unwrap();
        store.mark_durable("p", assigned[0].last());
        store
            .records("p", assigned[0].first, assigned[0].last())
            .map(|r| r.unwrap())
            .collect()
    }

    fn rotator(&self, per_file: u32, timeout: Option<Duration>) -> Rotator {
        Rotator::new(
            RotatorSettings {
                port: Arc::from("p"),
                prefix: "PABX".into(),
                dir: self.spool.clone(),
                records_per_file: per_file,
                timeout,
            },
            self.store(),
            Arc::new(crate::DirectState(self.store())),
        )
    }

    /// Simulates a crash: the store is dropped without a final flush beyond
    /// what the code did, and opened again.
    fn restart(&mut self) {
        self.store = None;
        self.store = Some(Store::open(&self.store_dir, 8 << 20).unwrap());
    }

    fn files(&self, ext: &str) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&self.spool)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Every record in `.txt` files, in name order, with per-file counts.
    fn txt_records(&self) -> (Vec<String>, Vec<usize>) {
        let mut recs = Vec::new();
        let mut counts = Vec::new();
        for (_, body) in self.files(TXT) {
            let text = String::from_utf8(body).unwrap();
            let lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
            counts.push(lines.len());
            recs.extend(lines);
        }
        (recs, counts)
    }
}

fn expected(n: u64) -> Vec<String> {
    (1..=n).map(|i| format!("rec-{i}\n")).collect()
}

#[test]
fn files_close_at_billing_records_and_keep_bytes() {
    let fx = Fixture::new();
    let mut rot = fx.rotator(50, None);
    rot.recover(T0).unwrap();
    let recs = fx.feed(120, T0);
    rot.take(&recs, T0 + 200 * SEC).unwrap();
    let closed = rot.drain_closed();
    assert_eq!(closed.len(), 2);
    assert_eq!((closed[0].first_seq, closed[0].last_seq), (1, 50));
    assert_eq!((closed[1].first_seq, closed[1].last_seq), (51, 100));
    let (txt, counts) = fx.txt_records();
    assert_eq!(counts, vec![50, 50]);
    assert_eq!(txt, expected(100));
    let tmp = fx.files(TMP);
    assert_eq!(tmp.len(), 1);
    assert_eq!(
        tmp[0].1.len(),
        recs[100..].iter().map(|r| r.bytes.len()).sum::<usize>()
    );
    // Named from the first record's arrival time.
    let first_name = crate::naming::stem("PABX", T0);
    assert!(fx.files(TXT)[0].0.starts_with(&first_name));
}

#[test]
fn timeout_closes_a_partly_filled_file_and_an_empty_lifetime_saves_nothing() {
    let fx = Fixture::new();
    let mut rot = fx.rotator(50, Some(Duration::from_secs(60)));
    rot.recover(T0).unwrap();
    rot.tick(T0 + 3600 * SEC).unwrap();
    assert!(fx.files(TMP).is_empty() && fx.files(TXT).is_empty());
    let recs = fx.feed(10, T0);
    rot.take(&recs, T0 + 10 * SEC).unwrap();
    assert_eq!(rot.deadline_us(), Some(T0 + 60 * SEC));
    rot.tick(T0 + 59 * SEC).unwrap();
    assert!(fx.files(TXT).is_empty());
    rot.tick(T0 + 60 * SEC).unwrap();
    let (txt, counts) = fx.txt_records();
    assert_eq!(counts, vec![10]);
    assert_eq!(txt, expected(10));
    assert!(fx.files(TMP).is_empty());
    assert_eq!(rot.deadline_us(), None);
}

#[test]
fn a_record_after_the_lifetime_starts_a_new_file() {
    let fx = Fixture::new();
    let mut rot = fx.rotator(50, Some(Duration::from_secs(30)));
    // 40 records one second apart: lifetimes of 30 s split them 30 + 10.
    let recs = fx.feed(40, T0);
    rot.take(&recs, T0 + 39 * SEC).unwrap();
    let (_, counts) = fx.txt_records();
    assert_eq!(counts, vec![30]);
    rot.tick(T0 + 30 * SEC + 30 * SEC).unwrap();
    let (txt, counts) = fx.txt_records();
    assert_eq!(counts, vec![30, 10]);
    assert_eq!(txt, expected(40));
}

#[test]
fn a_gap_in_notifications_is_filled_from_the_store() {
    let fx = Fixture::new();
    let mut rot = fx.rotator(5, None);
    let recs = fx.feed(12, T0);
    rot.take(&recs[7..], T0).unwrap();
    rot.take(&recs[2..4], T0).unwrap();
    let (txt, counts) = fx.txt_records();
    assert_eq!(counts, vec![5, 5]);
    assert_eq!(txt, expected(10));
    assert_eq!(rot.next_seq(), 13);
}

#[test]
fn catch_up_writes_what_is_flushed_and_no_further() {
    let fx = Fixture::new();
    let mut rot = fx.rotator(4, None);
    fx.feed(8, T0);
    // Appended but not marked durable: must not be written.
    fx.store()
        .append(&[(
            Arc::from("p"),
            &[NewRecord {
                received_us: T0,
                flags: RecordFlags::NONE,
                bytes: b"late\n".to_vec(),
            }][..],
        )])
        .unwrap();
    rot.catch_up(T0).unwrap();
    assert_eq!(fx.txt_records().0, expected(8));
    assert!(fx.files(TMP).is_empty());
}

#[test]
fn crash_with_a_half_written_tmp_completes_it_from_the_journal() {
    let mut fx = Fixture::new();
    {
        let mut rot = fx.rotator(50, None);
        let recs = fx.feed(70, T0);
        rot.take(&recs, T0).unwrap();
        // The process dies: the open file lost its last bytes (not synced).
        let (name, body) = fx.files(TMP).pop().unwrap();
        std::fs::write(fx.spool.join(&name), &body[..body.len() - 7]).unwrap();
    }
    fx.restart();
    fx.feed(5, T0 + 100 * SEC);
    let mut rot = fx.rotator(50, None);
    rot.recover(T0 + 101 * SEC).unwrap();
    // The open file was completed from the journal (with records that arrived
    // since, up to 50) and closed: 50 + 25.
    let (txt, counts) = fx.txt_records();
    assert_eq!(counts, vec![50, 25]);
    assert_eq!(txt, expected(75));
    assert!(fx.files(TMP).is_empty());
}

#[test]
fn crash_after_marking_closing_before_rename_renames_on_recovery() {
    let mut fx = Fixture::new();
    fx.feed(3, T0);
    let stem = crate::naming::stem("PABX", T0);
    let state = FileState {
        cursor: 0,
        open: Some(OpenState {
            stem: stem.clone(),
            first: 1,
            closing_last: Some(3),
        }),
    };
    fx.store()
        .put_meta("p", META_NAME, &state.encode())
        .unwrap();
    std::fs::write(fx.spool.join(format!("{stem}.tmp")), b"rec-1\nre").unwrap();
    fx.store().flush_blocking().unwrap();
    fx.restart();
    let mut rot = fx.rotator(50, None);
    rot.recover(T0).unwrap();
    assert_eq!(fx.txt_records(), (expected(3), vec![3]));
    assert_eq!(rot.cursor(), 3);
}

#[test]
fn crash_after_rename_before_cursor_writes_nothing_twice() {
    let mut fx = Fixture::new();
    fx.feed(3, T0);
    let stem = crate::naming::stem("PABX", T0);
    let state = FileState {
        cursor: 0,
        open: Some(OpenState {
            stem: stem.clone(),
            first: 1,
            closing_last: Some(3),
        }),
    };
    fx.store()
        .put_meta("p", META_NAME, &state.encode())
        .unwrap();
    fx.store().flush_blocking().unwrap();
    // The operator's transfer job already took the renamed file away.
    fx.restart();
    let mut rot = fx.rotator(50, None);
    rot.recover(T0).unwrap();
    assert!(fx.files(TXT).is_empty() && fx.files(TMP).is_empty());
    assert_eq!(rot.cursor(), 3);
    let more = fx.feed(2, T0 + SEC);
    rot.take(&more, T0 + 2 * SEC).unwrap();
    assert_eq!(fx.files(TMP).len(), 1);
    assert_eq!(fx.files(TMP)[0].1, b"rec-4\nrec-5\n");
}

#[test]
fn crash_after_opening_before_creating_the_tmp() {
    let mut fx = Fixture::new();
    fx.feed(2, T0);
    let state = FileState {
        cursor: 0,
        open: Some(OpenState {
            stem: crate::naming::stem("PABX", T0),
            first: 1,
            closing_last: None,
        }),
    };
    fx.store()
        .put_meta("p", META_NAME, &state.encode())
        .unwrap();
    fx.store().flush_blocking().unwrap();
    fx.restart();
    let mut rot = fx.rotator(50, None);
    rot.recover(T0).unwrap();
    assert_eq!(fx.txt_records(), (expected(2), vec![2]));
}

#[test]
fn a_failed_write_is_retried_from_the_journal() {
    let fx = Fixture::new();
    let mut rot = fx.rotator(3, None);
    let recs = fx.feed(2, T0);
    rot.take(&recs, T0).unwrap();
    // The spool directory disappears (unmounted, removed): writing fails.
    let moved = fx.spool.with_extension("away");
    std::fs::rename(&fx.spool, &moved).unwrap();
    let more = fx.feed(2, T0 + SEC);
    assert!(rot.take(&more, T0 + SEC).is_err());
    std::fs::rename(&moved, &fx.spool).unwrap();
    rot.catch_up(T0 + 2 * SEC).unwrap();
    let (txt, counts) = fx.txt_records();
    assert_eq!(counts, vec![3]);
    assert_eq!(txt, expected(3));
    assert_eq!(fx.files(TMP)[0].1, b"rec-4\n");
}

#[test]
fn an_open_file_removed_under_billbox_is_written_again_at_close() {
    let fx = Fixture::new();
    let mut rot = fx.rotator(10, None);
    rot.recover(T0).unwrap();
    rot.take(&fx.feed(4, T0), T0 + 5 * SEC).unwrap();
    // A collector deletes the .tmp; billbox goes on writing its handle.
    let tmp = fx.files(TMP);
    assert_eq!(tmp.len(), 1);
    std::fs::remove_file(fx.spool.join(&tmp[0].0)).unwrap();
    rot.take(&fx.feed(6, T0 + 10 * SEC), T0 + 20 * SEC).unwrap();
    let closed = rot.drain_closed();
    assert_eq!(closed.len(), 1);
    assert!(closed[0].rewritten);
    assert_eq!((closed[0].first_seq, closed[0].last_seq), (1, 10));
    let (txt, counts) = fx.txt_records();
    assert_eq!(counts, vec![10]);
    assert_eq!(txt, expected(10), "every record, once");
    assert!(fx.files(TMP).is_empty());
    // The next file is an ordinary one.
    rot.take(&fx.feed(10, T0 + 30 * SEC), T0 + 50 * SEC)
        .unwrap();
    assert!(!rot.drain_closed()[0].rewritten);
    assert_eq!(fx.txt_records().0, expected(20));
}
