//! Which records a server holds.

use std::collections::{BTreeMap, HashMap};

/// Whether a record is new to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
}

/// Sequences held per (gateway, port), as disjoint ranges.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    ports: HashMap<(String, String), BTreeMap<u64, u64>>,
    duplicates: u64,
    records: u64,
}

impl Ledger {
    /// Notes record `seq` of `gateway`/`port`.
    pub fn accept(&mut self, gateway: &str, port: &str, seq: u64) -> Accepted {
        let ranges = self
            .ports
            .entry((gateway.to_string(), port.to_string()))
            .or_default();
        if let Some((&start, &end)) = ranges.range(..=seq).next_back() {
            if seq <= end {
                self.duplicates += 1;
                return Accepted::Duplicate;
            }
            if end + 1 == seq {
                ranges.insert(start, seq);
                Self::merge_next(ranges, start);
                self.records += 1;
                return Accepted::New;
            }
        }
        ranges.insert(seq, seq);
        Self::merge_next(ranges, seq);
        self.records += 1;
        Accepted::New
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

    /// The missing sequences of a port, as inclusive ranges, between 1 and
    /// the highest held.
    pub fn gaps(&self, gateway: &str, port: &str) -> Vec<(u64, u64)> {
        let Some(ranges) = self.ports.get(&(gateway.to_string(), port.to_string())) else {
            return Vec::new();
        };
        let mut gaps = Vec::new();
        let mut next = 1;
        for (&start, &end) in ranges {
            if start > next {
                gaps.push((next, start - 1));
            }
            next = end + 1;
        }
        gaps
    }

    /// Whether record `seq` of `gateway`/`port` is held already (nothing is
    /// counted).
    pub fn holds(&self, gateway: &str, port: &str, seq: u64) -> bool {
        self.ports
            .get(&(gateway.to_string(), port.to_string()))
            .and_then(|r| r.range(..=seq).next_back())
            .is_some_and(|(_, &end)| seq <= end)
    }

    /// The highest sequence held for a port.
    pub fn highest(&self, gateway: &str, port: &str) -> Option<u64> {
        self.ports
            .get(&(gateway.to_string(), port.to_string()))
            .and_then(|r| r.values().next_back().copied())
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
}
