//! Model-based test of the store, in the style of vector's disk-buffer model
//! test: random sequences of append, flush, acknowledge (primary/secondary),
//! carbon-copy acknowledge, remove, crash (drop without a flush) and reopen, checked against a plain model of what must
//! survive.

use std::collections::BTreeMap;
use std::sync::Arc;

use billbox_record::RecordFlags;
use billbox_store::{carbon_copy_cursor, NewRecord, Store, DELIVERY_CURSOR};
use proptest::prelude::*;

const PORTS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Action {
    Append {
        port: usize,
        n: usize,
    },
    Flush,
    Ack {
        port: usize,
        n: u64,
    },
    /// A reliable carbon copy acknowledges records (its own cursor).
    CarbonCopy {
        port: usize,
        n: u64,
    },
    /// Removes what both the delivery and the carbon copy are done with.
    Remove {
        port: usize,
    },
    Crash,
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..2usize, 1..5usize).prop_map(|(port, n)| Action::Append { port, n }),
        3 => Just(Action::Flush),
        2 => (0..2usize, 1..6u64).prop_map(|(port, n)| Action::Ack { port, n }),
        2 => (0..2usize, 1..6u64).prop_map(|(port, n)| Action::CarbonCopy { port, n }),
        1 => (0..2usize).prop_map(|port| Action::Remove { port }),
        1 => Just(Action::Crash),
        1 => Just(Action::Reopen),
    ]
}

/// What the model knows of one port.
#[derive(Debug, Default, Clone)]
struct PortModel {
    /// Every record ever appended, by sequence (the bytes must never change).
    records: BTreeMap<u64, Vec<u8>>,
    /// Highest flushed sequence: these must survive any crash.
    durable: u64,
    /// Cursor as of the last flush (must survive), and as last set.
    cursor_flushed: u64,
    cursor: u64,
    /// The reliable carbon copy's cursor, likewise.
    cc_flushed: u64,
    cc: u64,
    /// Everything up to here may be gone (removed); above must stay.
    removed: u64,
}

fn body(port: &str, seq: u64) -> Vec<u8> {
    format!("{port}-{seq}\r\n").into_bytes()
}

fn check(store: &Store, models: &[PortModel; 2]) {
    for (i, m) in models.iter().enumerate() {
        let port = PORTS[i];
        // Flushed records that were not removed are all there, byte for byte.
        let last = store.last_seq(port).unwrap();
        assert!(
            last >= m.durable,
            "{port}: last_seq {last} < durable {}",
            m.durable
        );
        for seq in m.removed + 1..=m.durable {
            let got = store.records(port, seq, seq).next();
            let rec = got.unwrap_or_else(|| panic!("{port}/{seq} lost")).unwrap();
            assert_eq!(rec.bytes, m.records[&seq], "{port}/{seq} changed");
        }
        // Whatever is held matches what was appended under that sequence.
        for rec in store.records(port, 1, u64::MAX) {
            let rec = rec.unwrap();
            assert_eq!(
                Some(&rec.bytes),
                m.records.get(&rec.seq),
                "{port}/{} unknown",
                rec.seq
            );
        }
        let cursor = store.cursor(port, DELIVERY_CURSOR).unwrap();
        assert!(cursor >= m.cursor_flushed, "{port}: cursor went back");
        let cc = store.cursor(port, &carbon_copy_cursor("audit")).unwrap();
        assert!(cc >= m.cc_flushed, "{port}: carbon-copy cursor went back");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_keeps_what_it_promised(actions in proptest::collection::vec(action(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let open = || Store::open(dir.path(), 4 << 20).unwrap();
        let mut store = Some(open());
        let mut models: [PortModel; 2] = Default::default();
        for a in actions {
            let s = store.as_ref().unwrap();
            match a {
                Action::Append { port, n } => {
                    let name: Arc<str> = Arc::from(PORTS[port]);
                    let first = s.last_seq(PORTS[port]).unwrap().max(models[port].durable) + 1;
                    // Bodies name their sequence; the store must give out the
                    // sequence after the last one it knows.
                    let news: Vec<NewRecord> = (0..n as u64)
                        .map(|i| NewRecord { received_us: 0, flags: RecordFlags::NONE, bytes: body(PORTS[port], first + i) })
                        .collect();
                    let got = s.append(&[(name, &news[..])]).unwrap();
                    // Never reuse a sequence that was flushed.
                    prop_assert!(got[0].first > models[port].durable);
                    prop_assert_eq!(got[0].first, first);
                    for (i, r) in news.into_iter().enumerate() {
                        models[port].records.insert(first + i as u64, r.bytes);
                    }
                }
                Action::Flush => {
                    s.flush_blocking().unwrap();
                    for (i, m) in models.iter_mut().enumerate() {
                        let last = s.last_seq(PORTS[i]).unwrap();
                        s.mark_durable(PORTS[i], last);
                        m.durable = last;
                        m.cursor_flushed = m.cursor;
                        m.cc_flushed = m.cc;
                    }
                }
                Action::Ack { port, n } => {
                    let m = &mut models[port];
                    let to = (m.cursor + n).min(m.durable);
                    m.cursor = s.advance_cursor(PORTS[port], DELIVERY_CURSOR, to).unwrap();
                }
                Action::CarbonCopy { port, n } => {
                    let m = &mut models[port];
                    let to = (m.cc + n).min(m.durable);
                    m.cc = s.advance_cursor(PORTS[port], &carbon_copy_cursor("audit"), to).unwrap();
                }
                Action::Remove { port } => {
                    let m = &mut models[port];
                    let done = m.cursor.min(m.cc);
                    s.remove_through(PORTS[port], done).unwrap();
                    m.removed = m.removed.max(done.min(m.durable));
                }
                Action::Crash | Action::Reopen => {
                    if matches!(a, Action::Reopen) {
                        s.flush_blocking().unwrap();
                        for (i, m) in models.iter_mut().enumerate() {
                            m.durable = s.last_seq(PORTS[i]).unwrap();
                            m.cursor_flushed = m.cursor;
                            m.cc_flushed = m.cc;
                        }
                    }
                    // One sled Db per directory at a time: close before reopening.
                    drop(store.take());
                    store = Some(open());
                    let s = store.as_ref().unwrap();
                    for (i, m) in models.iter_mut().enumerate() {
                        // What survived beyond the flush point now counts as durable.
                        m.durable = m.durable.max(s.durable_seq(PORTS[i]));
                        m.cursor = s.cursor(PORTS[i], DELIVERY_CURSOR).unwrap().max(m.cursor_flushed);
                        m.cc = s
                            .cursor(PORTS[i], &carbon_copy_cursor("audit"))
                            .unwrap()
                            .max(m.cc_flushed);
                    }
                }
            }
            check(store.as_ref().unwrap(), &models);
        }
    }
}
