//! Which records a server holds.

use std::collections::{BTreeMap, HashMap};

/// Whether a record is new to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
}

/// What is held of one (gateway, port).
#[derive(Debug, Default, Clone)]
struct Held {
    /// Sequences held per epoch (the id is gateway, port, sequence and
    /// epoch; epoch 0 for ids without one), as disjoint ranges.
    by_epoch: HashMap<u64, BTreeMap<u64, u64>>,
    /// Sequences held in any epoch, for gaps.
    any: BTreeMap<u64, u64>,
}

/// Records held per (gateway, port), as disjoint ranges of sequences per
/// epoch. A record is a duplicate when its sequence is held in its epoch;
/// gaps are counted over the sequences of all epochs.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    ports: HashMap<(String, String), Held>,
    duplicates: u64,
    records: u64,
}

/// Adds `seq` to `ranges`; false when it was held already.
fn insert(ranges: &mut BTreeMap<u64, u64>, seq: u64) -> bool {
    if let Some((&start, &end)) = ranges.range(..=seq).next_back() {
        if seq <= end {
            return false;
        }
        if end + 1 == seq {
            ranges.insert(start, seq);
            merge_next(ranges, start);
            return true;
        }
    }
    ranges.insert(seq, seq);
    merge_next(ranges, seq);
    true
}

fn merge_next(ranges: &mut BTreeMap<u64, u64>, start: u64) {
    let end = ranges[&start];
    if let Some((&next_start, &next_end)) = ranges.range(end + 1..).next() {
        if next_start == end + 1 {
            ranges.remove(&next_start);
            ranges.insert(start, next_end);
        }
    }
}

fn contains(ranges: &BTreeMap<u64, u64>, seq: u64) -> bool {
    ranges
        .range(..=seq)
        .next_back()
        .is_some_and(|(_, &end)| seq <= end)
}

impl Ledger {
    /// Notes record `seq` of `gateway`/`port` (ids without an epoch: the
    /// AG's transactions, and records of stores older than epochs).
    pub fn accept(&mut self, gateway: &str, port: &str, seq: u64) -> Accepted {
        self.accept_in(gateway, port, 0, seq)
    }

    /// Notes record `seq` of `gateway`/`port` in `epoch`.
    pub fn accept_in(&mut self, gateway: &str, port: &str, epoch: u64, seq: u64) -> Accepted {
        let held = self
            .ports
            .entry((gateway.to_string(), port.to_string()))
            .or_default();
        if !insert(held.by_epoch.entry(epoch).or_default(), seq) {
            self.duplicates += 1;
            return Accepted::Duplicate;
        }
        insert(&mut held.any, seq);
        self.records += 1;
        Accepted::New
    }

    /// The missing sequences of a port, as inclusive ranges, between 1 and
    /// the highest held (in any epoch).
    pub fn gaps(&self, gateway: &str, port: &str) -> Vec<(u64, u64)> {
        let Some(held) = self.ports.get(&(gateway.to_string(), port.to_string())) else {
            return Vec::new();
        };
        let mut gaps = Vec::new();
        let mut next = 1;
        for (&start, &end) in &held.any {
            if start > next {
                gaps.push((next, start - 1));
            }
            next = end + 1;
        }
        gaps
    }

    /// Whether record `seq` of `gateway`/`port` (without an epoch) is held
    /// already (nothing is counted).
    pub fn holds(&self, gateway: &str, port: &str, seq: u64) -> bool {
        self.holds_in(gateway, port, 0, seq)
    }

    /// Whether record `seq` of `gateway`/`port` in `epoch` is held already.
    pub fn holds_in(&self, gateway: &str, port: &str, epoch: u64, seq: u64) -> bool {
        self.ports
            .get(&(gateway.to_string(), port.to_string()))
            .and_then(|h| h.by_epoch.get(&epoch))
            .is_some_and(|r| contains(r, seq))
    }

    /// Whether sequence `seq` of `gateway`/`port` is held in some epoch: a
    /// new record with it had its sequence handed out again (a store put
    /// back from a backup).
    pub fn holds_sequence(&self, gateway: &str, port: &str, seq: u64) -> bool {
        self.ports
            .get(&(gateway.to_string(), port.to_string()))
            .is_some_and(|h| contains(&h.any, seq))
    }

    /// The highest sequence held for a port (in any epoch).
    pub fn highest(&self, gateway: &str, port: &str) -> Option<u64> {
        self.ports
            .get(&(gateway.to_string(), port.to_string()))
            .and_then(|h| h.any.values().next_back().copied())
    }

    /// Records held (new ones accepted).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Duplicates dropped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Every (gateway, port) seen.
    pub fn ports(&self) -> Vec<(String, String)> {
        let mut p: Vec<_> = self.ports.keys().cloned().collect();
        p.sort();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_gaps_found() {
        let mut l = Ledger::default();
        for s in [1, 2, 3, 7, 8, 5] {
            assert_eq!(l.accept("gw", "p", s), Accepted::New);
        }
        assert!(l.holds("gw", "p", 2) && l.holds("gw", "p", 7));
        assert!(!l.holds("gw", "p", 4) && !l.holds("gw", "p", 9) && !l.holds("gw", "x", 1));
        assert_eq!(l.accept("gw", "p", 2), Accepted::Duplicate);
        assert_eq!(l.accept("gw", "p", 8), Accepted::Duplicate);
        assert_eq!(l.accept("gw", "q", 2), Accepted::New);
        assert_eq!(l.gaps("gw", "p"), vec![(4, 4), (6, 6)]);
        assert_eq!(l.gaps("gw", "q"), vec![(1, 1)]);
        assert_eq!(l.accept("gw", "p", 4), Accepted::New);
        assert_eq!(l.accept("gw", "p", 6), Accepted::New);
        assert_eq!(l.gaps("gw", "p"), vec![]);
        assert_eq!(l.highest("gw", "p"), Some(8));
        assert_eq!((l.records(), l.duplicates()), (9, 2));
    }

    #[test]
    fn a_sequence_again_in_another_epoch_is_a_new_record() {
        let mut l = Ledger::default();
        for s in 1..=5 {
            assert_eq!(l.accept_in("gw", "p", 7, s), Accepted::New);
        }
        // A store put back from a backup hands out 3.. again, in its new epoch.
        assert!(l.holds_sequence("gw", "p", 3) && !l.holds_in("gw", "p", 9, 3));
        assert_eq!(l.accept_in("gw", "p", 9, 3), Accepted::New);
        assert_eq!(l.accept_in("gw", "p", 9, 3), Accepted::Duplicate);
        assert_eq!(l.accept_in("gw", "p", 7, 3), Accepted::Duplicate);
        assert_eq!(l.accept_in("gw", "p", 9, 6), Accepted::New);
        assert_eq!(l.gaps("gw", "p"), vec![]);
        assert_eq!(l.highest("gw", "p"), Some(6));
        assert_eq!((l.records(), l.duplicates()), (7, 2));
    }
}
