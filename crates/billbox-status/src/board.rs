//! The status board: facts that events write and the status page reads.
//!
//! One entry per port (and transaction stream) and per destination, made
//! on first use. An entry is a small `Mutex`ed struct of plain facts; a
//! writer holds the lock for a few assignments, and the status page clones
//! the facts out. Figures the store already has (records in total,
//! backlogs, held records) are not kept here: the monitoring listener
//! samples them once a second.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::{DateTime, Local, NaiveDate, Utc};

/// The process-wide board.
pub fn board() -> &'static Board {
    static BOARD: OnceLock<Board> = OnceLock::new();
    BOARD.get_or_init(Board::default)
}

/// What each port and destination is doing now.
#[derive(Debug, Default)]
pub struct Board {
    ports: Mutex<BTreeMap<String, Arc<PortEntry>>>,
    destinations: Mutex<BTreeMap<String, Arc<DestinationEntry>>>,
    journal: Arc<Journal>,
    /// `store.when_full = "block"` holds the ports: the store is full.
    pub store_full: AtomicBool,
    /// The data disk is below `store.min_free_mb`: the ports are held.
    pub disk_low: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked left plain facts behind: still worth showing.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The entry called `name` of `map`, made on first use.
fn entry<T>(map: &Mutex<BTreeMap<String, Arc<T>>>, name: &str, make: impl FnOnce() -> T) -> Arc<T> {
    let mut map = lock(map);
    if let Some(e) = map.get(name) {
        return e.clone();
    }
    let e = Arc::new(make());
    map.insert(name.to_owned(), e.clone());
    e
}

/// How many changes the journal keeps.
pub const JOURNAL_KEEPS: usize = 4096;

/// A change of state worth telling (the demo's story reads them in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A port's link changed state.
    Link { port: String, link: Link },
    /// A port's file was closed.
    FileClosed { port: String, file: FileFacts },
    /// A destination's attempts go to another server now.
    Server {
        destination: String,
        from: Option<&'static str>,
        to: &'static str,
    },
    /// A destination's attempt failed after it had none failing.
    OutageBegan {
        destination: String,
        server: Option<&'static str>,
        error: String,
    },
    /// A destination's server acknowledged again.
    OutageEnded {
        destination: String,
        server: Option<&'static str>,
    },
}

/// The newest [`Change`]s, numbered from 1.
#[derive(Debug, Default)]
struct Journal {
    changes: Mutex<(u64, VecDeque<(u64, Change)>)>,
}

impl Journal {
    fn note(&self, change: Change) {
        let mut j = lock(&self.changes);
        j.0 += 1;
        let n = j.0;
        if j.1.len() == JOURNAL_KEEPS {
            j.1.pop_front();
        }
        j.1.push_back((n, change));
    }
}

impl Board {
    /// The entry of a port or transaction stream (made on first use).
    pub fn port(&self, name: &str) -> Arc<PortEntry> {
        entry(&self.ports, name, || PortEntry {
            name: name.to_owned(),
            facts: Mutex::default(),
            journal: self.journal.clone(),
        })
    }

    /// The entry of a destination: `delivery`, or `cc:NAME`.
    pub fn destination(&self, name: &str) -> Arc<DestinationEntry> {
        entry(&self.destinations, name, || DestinationEntry {
            name: name.to_owned(),
            facts: Mutex::default(),
            in_flight: AtomicU64::new(0),
            journal: self.journal.clone(),
        })
    }

    /// The changes numbered above `after`, oldest first (at most the
    /// newest [`JOURNAL_KEEPS`]).
    pub fn changes_since(&self, after: u64) -> Vec<(u64, Change)> {
        let j = lock(&self.journal.changes);
        j.1.iter().filter(|(n, _)| *n > after).cloned().collect()
    }

    /// A copy of a port's facts, if anything was written for it.
    pub fn port_facts(&self, name: &str) -> Option<PortFacts> {
        let e = lock(&self.ports).get(name).cloned()?;
        let facts = lock(&e.facts).clone();
        Some(facts)
    }

    /// A copy of a destination's facts, if anything was written for it.
    pub fn destination_facts(&self, name: &str) -> Option<DestinationFacts> {
        let e = lock(&self.destinations).get(name).cloned()?;
        let mut facts = lock(&e.facts).clone();
        facts.in_flight = e.in_flight.load(Ordering::Relaxed);
        Some(facts)
    }
}

/// A port's link, as its reader last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Link {
    /// The reader has not reported yet.
    #[default]
    Starting,
    /// A TCP port listens and no PBX is connected.
    Listening { addr: String },
    /// Reading: the device is open, or a PBX is connected.
    Up { peer: String },
    /// The link went down; the reader reopens it with backoff.
    Down { reason: String },
    /// The device cannot be opened (or the PBX not reached); retrying.
    CannotOpen { error: String },
}

impl Link {
    /// One word for the state: `up`, `down`, `listening`, `cannot open`,
    /// `starting`.
    pub fn word(&self) -> &'static str {
        match self {
            Link::Starting => "starting",
            Link::Listening { .. } => "listening",
            Link::Up { .. } => "up",
            Link::Down { .. } => "down",
            Link::CannotOpen { .. } => "cannot open",
        }
    }

    /// The peer, the address listened on, or why it is down.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Link::Starting => None,
            Link::Listening { addr } => Some(addr),
            Link::Up { peer } => Some(peer),
            Link::Down { reason } => Some(reason),
            Link::CannotOpen { error } => Some(error),
        }
    }
}

/// A billing file: its name, records and when it opened (the open file) or
/// closed (the last closed file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub name: String,
    pub records: u64,
    pub at: DateTime<Utc>,
}

/// What is known of one port.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortFacts {
    pub link: Link,
    /// When `link` last changed state.
    pub link_since: Option<DateTime<Utc>>,
    /// When the newest record was committed (in this run).
    pub last_record: Option<DateTime<Utc>>,
    /// Records committed on a local day: (that day, how many).
    pub day: Option<(NaiveDate, u64)>,
    /// The `.tmp` file being written.
    pub open_file: Option<FileFacts>,
    /// The newest closed `.txt`.
    pub last_closed: Option<FileFacts>,
    /// Transactions refused (transaction streams only).
    pub refused: u64,
}

impl PortFacts {
    /// Records committed on `today` (0 when the counted day is another).
    pub fn records_on(&self, today: NaiveDate) -> u64 {
        match self.day {
            Some((day, n)) if day == today => n,
            _ => 0,
        }
    }
}

/// One port's entry on the board.
#[derive(Debug)]
pub struct PortEntry {
    name: String,
    facts: Mutex<PortFacts>,
    journal: Arc<Journal>,
}

impl PortEntry {
    /// The link changed (or was reported again).
    pub fn link(&self, link: Link) {
        let mut f = lock(&self.facts);
        if f.link.word() != link.word() || f.link_since.is_none() {
            f.link_since = Some(Utc::now());
            self.journal.note(Change::Link {
                port: self.name.clone(),
                link: link.clone(),
            });
        }
        f.link = link;
    }

    /// `count` records were committed now.
    pub fn received(&self, count: u64) {
        self.received_at(count, Local::now());
    }

    /// `count` records were committed at `now` (the local day counts).
    pub fn received_at(&self, count: u64, now: DateTime<Local>) {
        let mut f = lock(&self.facts);
        let today = now.date_naive();
        f.day = Some(match f.day {
            Some((day, n)) if day == today => (day, n.saturating_add(count)),
            _ => (today, count),
        });
        f.last_record = Some(now.with_timezone(&Utc));
    }

    /// The newest record committed before this run: shown until one comes
    /// in this run.
    pub fn last_record_before(&self, at: DateTime<Utc>) {
        let mut f = lock(&self.facts);
        if f.last_record.is_none() {
            f.last_record = Some(at);
        }
    }

    /// The file being written now (`None`: no file is open).
    pub fn open_file(&self, file: Option<FileFacts>) {
        lock(&self.facts).open_file = file;
    }

    /// A file was closed.
    pub fn file_closed(&self, file: FileFacts) {
        self.journal.note(Change::FileClosed {
            port: self.name.clone(),
            file: file.clone(),
        });
        lock(&self.facts).last_closed = Some(file);
    }

    /// Transactions were refused.
    pub fn refused(&self, count: u64) {
        let mut f = lock(&self.facts);
        f.refused = f.refused.saturating_add(count);
    }
}

/// What is known of one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationFacts {
    /// The server the last attempt went to: `primary`, `secondary`, or
    /// `mirror` for a carbon copy.
    pub server: Option<&'static str>,
    /// Its URL.
    pub url: Option<String>,
    /// When a server last acknowledged a packet.
    pub last_success: Option<DateTime<Utc>>,
    /// When the current outage began (the first failed attempt since the
    /// last acknowledgement); `None`: not in an outage.
    pub outage_since: Option<DateTime<Utc>>,
    /// Failed attempts in the current outage.
    pub failed_attempts: u64,
    /// The newest failure, in words.
    pub last_error: Option<String>,
    /// Until when a suspended delivery waits (`delivery.suspend`).
    pub suspended_until: Option<DateTime<Utc>>,
    /// Packets sent and awaiting their answer.
    pub in_flight: u64,
}

/// One destination's entry on the board.
#[derive(Debug)]
pub struct DestinationEntry {
    name: String,
    facts: Mutex<DestinationFacts>,
    in_flight: AtomicU64,
    journal: Arc<Journal>,
}

impl DestinationEntry {
    /// Attempts go to `server` at `url` now.
    pub fn using(&self, server: &'static str, url: &str) {
        let mut f = lock(&self.facts);
        if f.server != Some(server) {
            self.journal.note(Change::Server {
                destination: self.name.clone(),
                from: f.server,
                to: server,
            });
            f.server = Some(server);
        }
        if f.url.as_deref() != Some(url) {
            f.url = Some(url.to_owned());
        }
    }

    /// Packets awaiting an answer now.
    pub fn in_flight(&self, packets: u64) {
        self.in_flight.store(packets, Ordering::Relaxed);
    }

    /// A server acknowledged a packet.
    pub fn acknowledged(&self) {
        let mut f = lock(&self.facts);
        if f.outage_since.is_some() {
            self.journal.note(Change::OutageEnded {
                destination: self.name.clone(),
                server: f.server,
            });
        }
        f.last_success = Some(Utc::now());
        f.outage_since = None;
        f.failed_attempts = 0;
        f.last_error = None;
        f.suspended_until = None;
    }

    /// An attempt failed with `error`.
    pub fn failed(&self, error: &str) {
        let mut f = lock(&self.facts);
        if f.outage_since.is_none() {
            f.outage_since = Some(Utc::now());
            self.journal.note(Change::OutageBegan {
                destination: self.name.clone(),
                server: f.server,
                error: error.to_owned(),
            });
        }
        f.failed_attempts = f.failed_attempts.saturating_add(1);
        f.last_error = Some(error.to_owned());
    }

    /// Delivery is suspended until `until` (`None`: it resumed).
    pub fn suspended(&self, until: Option<DateTime<Utc>>) {
        lock(&self.facts).suspended_until = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_journal_keeps_changes_in_order() {
        let b = Board::default();
        let p = b.port("pbx");
        p.link(Link::Listening { addr: "a".into() });
        p.link(Link::Listening { addr: "a".into() });
        p.link(Link::Up { peer: "b".into() });
        let d = b.destination("delivery");
        d.using("primary", "u");
        d.failed("refused");
        d.failed("refused");
        d.using("secondary", "v");
        d.acknowledged();
        let words: Vec<String> = b
            .changes_since(0)
            .into_iter()
            .map(|(_, c)| match c {
                Change::Link { link, .. } => link.word().to_string(),
                Change::Server { from, to, .. } => format!("{from:?}->{to}"),
                Change::OutageBegan { server, .. } => format!("outage {server:?}"),
                Change::OutageEnded { server, .. } => format!("resumed {server:?}"),
                Change::FileClosed { .. } => "file".into(),
            })
            .collect();
        assert_eq!(
            words,
            [
                "listening",
                "up",
                "None->primary",
                "outage Some(\"primary\")",
                "Some(\"primary\")->secondary",
                "resumed Some(\"secondary\")"
            ]
        );
        let (n, _) = b.changes_since(0)[3].clone();
        assert_eq!(b.changes_since(n).len(), 2);
    }

    #[test]
    fn records_today_start_again_on_a_new_local_day() {
        let e = Board::default().port("p");
        let day = |d, h| Local.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap();
        e.received_at(5, day(1, 22));
        e.received_at(2, day(1, 23));
        let f = lock(&e.facts).clone();
        assert_eq!(f.records_on(day(1, 0).date_naive()), 7);
        e.received_at(3, day(2, 1));
        let f = lock(&e.facts).clone();
        assert_eq!(f.records_on(day(2, 0).date_naive()), 3);
        assert_eq!(f.records_on(day(3, 0).date_naive()), 0, "none yet today");
        assert_eq!(f.last_record, Some(day(2, 1).with_timezone(&Utc)));
    }

    #[test]
    fn a_record_of_this_run_beats_the_stored_one() {
        let e = Board::default().port("p");
        let old = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        e.received(1);
        e.last_record_before(old);
        assert_ne!(lock(&e.facts).last_record, Some(old));
        let fresh = Board::default().port("q");
        fresh.last_record_before(old);
        assert_eq!(lock(&fresh.facts).last_record, Some(old));
    }

    #[test]
    fn an_outage_lasts_from_the_first_failure_to_the_next_acknowledgement() {
        let b = Board::default();
        let d = b.destination("delivery");
        d.using("primary", "http://a/billing");
        d.failed("refused");
        let since = b.destination_facts("delivery").unwrap().outage_since;
        d.using("secondary", "http://b/billing");
        d.failed("timed out");
        let f = b.destination_facts("delivery").unwrap();
        assert_eq!(
            f.outage_since, since,
            "the outage began at the first failure"
        );
        assert_eq!(
            (f.failed_attempts, f.server, f.last_error.as_deref()),
            (2, Some("secondary"), Some("timed out"))
        );
        d.in_flight(3);
        d.acknowledged();
        let f = b.destination_facts("delivery").unwrap();
        assert_eq!(
            (f.outage_since, f.failed_attempts, f.in_flight),
            (None, 0, 3)
        );
        assert!(f.last_success.is_some());
        assert!(b.destination_facts("cc:none").is_none());
    }

    #[test]
    fn a_link_keeps_its_since_while_its_state_holds() {
        let b = Board::default();
        let p = b.port("pbx");
        p.link(Link::Up { peer: "a".into() });
        let since = b.port_facts("pbx").unwrap().link_since;
        std::thread::sleep(std::time::Duration::from_millis(5));
        p.link(Link::Up { peer: "b".into() });
        let f = b.port_facts("pbx").unwrap();
        assert_eq!((f.link_since, f.link.detail()), (since, Some("b")));
        p.link(Link::Down {
            reason: "eof".into(),
        });
        let f = b.port_facts("pbx").unwrap();
        assert_ne!(f.link_since, since);
        assert_eq!(f.link.word(), "down");
    }
}
