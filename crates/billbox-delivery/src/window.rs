//! One port's send window: which of its records are out, acknowledged, or
//! to be sent (again).
//!
//! Packets of a port go out in sequence order, several at once. The
//! cursor (what is recorded as delivered) moves only over the contiguous
//! acknowledged prefix: when a packet fails while later ones are
//! acknowledged, the later ones are remembered ([`PortWindow::acked`] keeps
//! them ahead) and the cursor waits at the failed one; the failed packet is
//! sent again first ([`PortWindow::next_range`] starts there and skips what
//! is out or acknowledged ahead), and once it is acknowledged the cursor
//! jumps over everything acknowledged behind it.

use std::collections::{BTreeMap, VecDeque};

/// One port's packets in flight and acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortWindow {
    /// Every sequence through this is acknowledged (the cursor).
    acked: u64,
    /// The lowest sequence that may need sending.
    next: u64,
    /// Packets sent and not answered, oldest first: (first, last).
    out: VecDeque<(u64, u64)>,
    /// Packets acknowledged past a gap: first to last.
    ahead: BTreeMap<u64, u64>,
}

impl PortWindow {
    /// A window whose cursor is at `cursor`.
    pub fn new(cursor: u64) -> PortWindow {
        PortWindow {
            acked: cursor,
            next: cursor + 1,
            out: VecDeque::new(),
            ahead: BTreeMap::new(),
        }
    }

    /// The cursor: every sequence through it is acknowledged.
    pub fn cursor(&self) -> u64 {
        self.acked
    }

    /// Packets awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.out.len()
    }

    /// Whether any packet of this port was acknowledged past a gap.
    pub fn has_ahead(&self) -> bool {
        !self.ahead.is_empty()
    }

    /// The records below `first_held` are gone from the store (given up
    /// when it was full): they count as acknowledged.
    pub fn given_up_below(&mut self, first_held: u64) {
        if first_held > self.acked + 1 {
            self.acked = first_held - 1;
            self.absorb();
        }
        self.next = self.next.max(self.acked + 1);
    }

    /// The next packet to send: up to `batch_max` consecutive sequences
    /// from the first one not sent, not out and not acknowledged, through
    /// `durable` at most. `None` when there is none.
    pub fn next_range(&self, durable: u64, batch_max: u64) -> Option<(u64, u64)> {
        let mut from = self.next.max(self.acked + 1);
        // Skip what is out or acknowledged ahead (both sorted by first).
        loop {
            let covering = self
                .out
                .iter()
                .copied()
                .chain(self.ahead.iter().map(|(&f, &l)| (f, l)))
                .find(|&(f, l)| f <= from && from <= l);
            match covering {
                Some((_, l)) => from = l + 1,
                None => break,
            }
        }
        if from > durable {
            return None;
        }
        // Up to the next range that is out or ahead.
        let stop = self
            .out
            .iter()
            .map(|&(f, _)| f)
            .chain(self.ahead.keys().copied())
            .filter(|&f| f > from)
            .min()
            .map_or(u64::MAX, |f| f - 1);
        let to = durable
            .min(stop)
            .min(from.saturating_add(batch_max.max(1) - 1));
        Some((from, to))
    }

    /// The packet `first..=last` was sent.
    pub fn sent(&mut self, first: u64, last: u64) {
        self.out.push_back((first, last));
        self.next = self.next.max(last + 1);
    }

    fn take_out(&mut self, first: u64, last: u64) {
        if let Some(i) = self.out.iter().position(|&r| r == (first, last)) {
            self.out.remove(i);
        }
    }

    /// The packet `first..=last` was acknowledged: the new cursor when it
    /// moved.
    pub fn acked(&mut self, first: u64, last: u64) -> Option<u64> {
        self.take_out(first, last);
        if last <= self.acked {
            return None;
        }
        if first > self.acked + 1 {
            self.ahead.insert(first, last);
            return None;
        }
        self.acked = last;
        self.absorb();
        Some(self.acked)
    }

    /// Moves the cursor over acknowledged ranges that now join it.
    fn absorb(&mut self) {
        while let Some((&f, &l)) = self.ahead.first_key_value() {
            if f > self.acked + 1 {
                break;
            }
            self.ahead.remove(&f);
            self.acked = self.acked.max(l);
        }
    }

    /// The packet `first..=last` failed (or was not answered): it is sent
    /// again, before anything after it.
    pub fn failed(&mut self, first: u64, last: u64) {
        self.take_out(first, last);
        if last > self.acked {
            self.next = self.next.min(first.max(self.acked + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::PortWindow;

    #[test]
    fn in_order_acks_move_the_cursor_packet_by_packet() {
        let mut w = PortWindow::new(10);
        assert_eq!(w.next_range(15, 2), Some((11, 12)));
        w.sent(11, 12);
        assert_eq!(w.next_range(15, 2), Some((13, 14)));
        w.sent(13, 14);
        w.sent(15, 15);
        assert_eq!(w.next_range(15, 2), None);
        assert_eq!(w.in_flight(), 3);
        assert_eq!(w.acked(11, 12), Some(12));
        assert_eq!(w.acked(13, 14), Some(14));
        assert_eq!(w.acked(15, 15), Some(15));
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn a_failed_packet_in_the_middle_holds_the_cursor_and_goes_again_first() {
        let mut w = PortWindow::new(0);
        for s in 1..=4 {
            w.sent(s, s);
        }
        assert_eq!(w.acked(1, 1), Some(1));
        w.failed(2, 2);
        // Its successors' acks do not move the cursor past it.
        assert_eq!(w.acked(3, 3), None);
        assert_eq!(w.cursor(), 1);
        // 2 goes again; 3 (acknowledged) and 4 (out) are not sent again.
        assert_eq!(w.next_range(6, 10), Some((2, 2)));
        w.sent(2, 2);
        assert_eq!(w.next_range(6, 10), Some((5, 6)));
        assert_eq!(w.acked(2, 2), Some(3));
        assert_eq!(w.acked(4, 4), Some(4));
    }

    #[test]
    fn records_given_up_by_the_store_count_as_acknowledged() {
        let mut w = PortWindow::new(3);
        w.given_up_below(10);
        assert_eq!(w.cursor(), 9);
        assert_eq!(w.next_range(12, 5), Some((10, 12)));
    }

    proptest! {
        /// Against a model: whatever order answers come in and whichever
        /// fail, the cursor is the longest acknowledged prefix, nothing is
        /// out twice, and once everything is answered well every sequence
        /// has been acknowledged.
        #[test]
        fn the_cursor_is_the_acknowledged_prefix(
            durable in 1u64..60,
            batch in 1u64..6,
            window in 1usize..8,
            steps in proptest::collection::vec((0usize..8, any::<bool>()), 1..200),
        ) {
            let mut w = PortWindow::new(0);
            let mut acked = std::collections::BTreeSet::new();
            let mut out: Vec<(u64, u64)> = Vec::new();
            let mut steps = steps.into_iter();
            for _ in 0..2000 {
                while out.len() < window {
                    let Some((f, l)) = w.next_range(durable, batch) else { break };
                    prop_assert!(f <= l && l <= durable && l - f < batch);
                    for (of, ol) in &out {
                        prop_assert!(l < *of || f > *ol, "{f}..{l} overlaps {of}..{ol}");
                    }
                    prop_assert!((f..=l).all(|s| !acked.contains(&s)));
                    w.sent(f, l);
                    out.push((f, l));
                }
                if out.is_empty() {
                    break;
                }
                // Answers in any order; a failure only while steps last.
                let (pick, ok) = steps.next().unwrap_or((0, true));
                let (f, l) = out.remove(pick % out.len());
                if ok {
                    acked.extend(f..=l);
                    w.acked(f, l);
                } else {
                    w.failed(f, l);
                }
                let prefix = (1..).take_while(|s| acked.contains(s)).last().unwrap_or(0);
                prop_assert_eq!(w.cursor(), prefix);
            }
            prop_assert_eq!(w.cursor(), durable);
            prop_assert_eq!(w.in_flight(), 0);
        }
    }
}
