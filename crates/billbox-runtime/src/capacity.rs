//! The store's rules for taking records in and letting them go, as plain
//! types the store actor asks (unit-tested without actix or I/O):
//! - [`Capacity`]: `store.max_records` and `when_full`: hold new records
//!   (`block`), or give the oldest up for delivery (`drop_oldest`);
//! - [`DiskReserve`]: `store.min_free_mb` on the data disk, and
//!   [`free_bytes`], which reads a file system without a size as unknown;
//! - [`Latch`]: a condition that is reported once when it starts and once
//!   when it ends (a full store, a low disk, a full mirror queue);
//! - [`done_through`]: the removal watermark of a port;
//! - [`plan_drops`]: with `drop_oldest`, which records are given up, the
//!   oldest arrivals first across ports;
//! - [`CopyQueue`]: a fire-once carbon copy's bounded queue of batches.

use billbox_config::WhenFull;

/// `store.max_records` with `store.when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub max_records: u64,
    pub when_full: WhenFull,
}

impl Capacity {
    /// Whether `incoming` new records must wait while `backlog` records
    /// await delivery: only with `block`, and never for an empty backlog
    /// (so one append larger than the capacity still goes in). (While
    /// billbox stops, the store actor does not ask: what readers already
    /// took in is committed.)
    pub fn holds(&self, backlog: u64, incoming: u64) -> bool {
        self.when_full == WhenFull::Block
            && backlog > 0
            && backlog.saturating_add(incoming) > self.max_records
    }

    /// With `drop_oldest`: how many of the oldest undelivered records to
    /// give up for delivery so that `backlog` fits again; 0 with `block`.
    pub fn excess(&self, backlog: u64) -> u64 {
        match self.when_full {
            WhenFull::DropOldest => backlog.saturating_sub(self.max_records),
            WhenFull::Block => 0,
        }
    }
}

/// `store.min_free_mb`: the free bytes kept on the data disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskReserve {
    pub min_free_bytes: u64,
}

impl DiskReserve {
    /// Whether `free_bytes` is below the reserve (`None`: the free space
    /// could not be read; sled then reports real errors itself).
    pub fn low(&self, free_bytes: Option<u64>) -> bool {
        free_bytes.is_some_and(|free| free < self.min_free_bytes)
    }
}

/// The free bytes a file system reports (`statvfs`: total and available
/// blocks, block size), or `None` when it reports no size at all (some
/// FUSE and network file systems say 0 blocks): unknown then, not full.
pub fn free_bytes(total_blocks: u64, available_blocks: u64, block_size: u64) -> Option<u64> {
    (total_blocks > 0).then(|| available_blocks.saturating_mul(block_size))
}

/// A condition reported when it starts and when it ends, not every time
/// it is seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latch {
    on: bool,
}

/// What [`Latch::set`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Started,
    Ended,
    Same,
}

impl Latch {
    /// Notes whether the condition holds now.
    pub fn set(&mut self, on: bool) -> Change {
        let was = std::mem::replace(&mut self.on, on);
        match (was, on) {
            (false, true) => Change::Started,
            (true, false) => Change::Ended,
            _ => Change::Same,
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }
}

/// The last sequence of a port that every consumer is done with: the
/// lowest of their cursors (0 without consumers: nothing is removed).
pub fn done_through(cursors: impl IntoIterator<Item = u64>) -> u64 {
    cursors.into_iter().min().unwrap_or(0)
}

/// The most records one step of [`plan_drops`] gives up from one port
/// before it looks again which port's head is oldest.
pub const DROP_STEP: u64 = 1000;

/// A port's undelivered records: past `cursor`, through `durable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub port: std::sync::Arc<str>,
    pub cursor: u64,
    pub durable: u64,
}

/// Records given up for delivery: `first..=last` of `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub port: std::sync::Arc<str>,
    pub first: u64,
    pub last: u64,
}

/// With `drop_oldest`: gives up `excess` records, taking each step (at
/// most [`DROP_STEP`]) from the port whose oldest undelivered record
/// arrived first; `received_at(port, seq)` says when a record arrived
/// (`i64::MIN` when unknown: taken first).
pub fn plan_drops(
    mut ports: Vec<Undelivered>,
    mut excess: u64,
    received_at: impl Fn(&str, u64) -> i64,
) -> Vec<Dropped> {
    let mut heads: Vec<i64> = ports
        .iter()
        .map(|p| received_at(&p.port, p.cursor + 1))
        .collect();
    let mut out = Vec::new();
    while excess > 0 {
        let oldest = (0..ports.len())
            .filter(|&i| ports[i].durable > ports[i].cursor)
            .min_by_key(|&i| heads[i]);
        let Some(i) = oldest else {
            break;
        };
        let p = &mut ports[i];
        let n = excess.min(p.durable - p.cursor).min(DROP_STEP);
        out.push(Dropped {
            port: p.port.clone(),
            first: p.cursor + 1,
            last: p.cursor + n,
        });
        p.cursor += n;
        excess -= n;
        if p.durable > p.cursor {
            heads[i] = received_at(&p.port, p.cursor + 1);
        }
    }
    out
}

/// A fire-once carbon copy's queue: up to `limit` batches wait to be
/// posted; beyond that a new batch is not copied (fire-once: it stays in
/// the store for the files and the other destinations), reported once per
/// episode.
#[derive(Debug)]
pub struct CopyQueue<T> {
    items: std::collections::VecDeque<T>,
    limit: usize,
    full: Latch,
}

/// What [`CopyQueue::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// Not copied: the queue is full; `first` of this episode.
    Refused {
        first: bool,
    },
}

impl<T> CopyQueue<T> {
    pub fn new(limit: usize) -> CopyQueue<T> {
        CopyQueue {
            items: std::collections::VecDeque::new(),
            limit,
            full: Latch::default(),
        }
    }

    pub fn offer(&mut self, item: T) -> Offered {
        let full = self.items.len() >= self.limit;
        let change = self.full.set(full);
        if full {
            return Offered::Refused {
                first: change == Change::Started,
            };
        }
        self.items.push_back(item);
        Offered::Queued
    }

    /// The oldest batch, to post next.
    pub fn take_next(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Drops what waits (billbox stops: fire-once copies are not kept).
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_queue_refuses_beyond_its_limit_and_reports_each_episode_once() {
        let mut q = CopyQueue::new(2);
        assert_eq!(q.offer('a'), Offered::Queued);
        assert_eq!(q.offer('b'), Offered::Queued);
        assert_eq!(q.offer('c'), Offered::Refused { first: true });
        assert_eq!(q.offer('d'), Offered::Refused { first: false });
        assert_eq!(q.take_next(), Some('a'));
        assert_eq!(q.offer('e'), Offered::Queued);
        assert_eq!(q.offer('f'), Offered::Refused { first: true });
        assert_eq!(
            (q.take_next(), q.take_next(), q.take_next()),
            (Some('b'), Some('e'), None)
        );
        q.offer('g');
        q.clear();
        assert_eq!(q.take_next(), None);
    }

    #[test]
    fn drops_take_the_oldest_arrivals_first_across_ports() {
        let ports = vec![
            Undelivered {
                port: "a".into(),
                cursor: 0,
                durable: 3000,
            },
            Undelivered {
                port: "b".into(),
                cursor: 10,
                durable: 12,
            },
            Undelivered {
                port: "c".into(),
                cursor: 5,
                durable: 5,
            },
        ];
        // Port a's records arrived at seq * 10; b's at 15_000 onwards.
        let at = |port: &str, seq: u64| match port {
            "a" => seq as i64 * 10,
            _ => 15_000 + seq as i64,
        };
        let plan = plan_drops(ports.clone(), 2500, at);
        let d = |port: &str, first, last| Dropped {
            port: port.into(),
            first,
            last,
        };
        // a's head is older than b's (15,011) while it is below seq 1502.
        assert_eq!(
            plan,
            vec![
                d("a", 1, 1000),
                d("a", 1001, 2000),
                d("b", 11, 12),
                d("a", 2001, 2498)
            ]
        );
        // Never more than what waits; nothing from a port with none.
        let all = plan_drops(ports, 1_000_000, at);
        let total: u64 = all.iter().map(|x| x.last + 1 - x.first).sum();
        assert_eq!(total, 3002);
        assert!(all.iter().all(|x| x.port.as_ref() != "c"));
        assert!(plan_drops(Vec::new(), 5, at).is_empty());
    }

    const BLOCK: Capacity = Capacity {
        max_records: 10,
        when_full: WhenFull::Block,
    };
    const DROP: Capacity = Capacity {
        max_records: 10,
        when_full: WhenFull::DropOldest,
    };

    #[test]
    fn block_holds_what_does_not_fit() {
        assert!(!BLOCK.holds(5, 5));
        assert!(BLOCK.holds(5, 6));
        assert!(BLOCK.holds(10, 1));
        // An empty backlog takes any append.
        assert!(!BLOCK.holds(0, 500));
        assert!(BLOCK.holds(u64::MAX, 1));
        assert_eq!(BLOCK.excess(50), 0);
    }

    #[test]
    fn drop_oldest_never_holds_and_counts_the_excess() {
        assert!(!DROP.holds(10, 10));
        assert_eq!(DROP.excess(9), 0);
        assert_eq!(DROP.excess(10), 0);
        assert_eq!(DROP.excess(17), 7);
    }

    #[test]
    fn a_file_system_without_a_size_is_not_full() {
        assert_eq!(free_bytes(0, 0, 4096), None);
        assert_eq!(free_bytes(100, 0, 4096), Some(0));
        assert_eq!(free_bytes(100, 10, 4096), Some(40_960));
        let r = DiskReserve {
            min_free_bytes: 1 << 20,
        };
        assert!(!r.low(free_bytes(0, 0, 4096)));
        assert!(r.low(free_bytes(100, 0, 4096)));
    }

    #[test]
    fn the_disk_reserve() {
        let r = DiskReserve {
            min_free_bytes: 64 << 20,
        };
        assert!(r.low(Some(1)));
        assert!(!r.low(Some(64 << 20)));
        assert!(!r.low(None));
    }

    #[test]
    fn a_latch_reports_edges_once() {
        let mut l = Latch::default();
        let seen: Vec<Change> = [false, true, true, false, false, true]
            .into_iter()
            .map(|on| l.set(on))
            .collect();
        use Change::*;
        assert_eq!(seen, [Same, Started, Same, Ended, Same, Started]);
        assert!(l.is_on());
    }

    #[test]
    fn the_watermark_is_the_slowest_consumer() {
        assert_eq!(done_through([7, 3, 9]), 3);
        assert_eq!(done_through([]), 0);
    }
}
