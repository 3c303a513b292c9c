//! The status of a running billbox at one moment: what `/status.json`
//! answers, and the words and table people read.
//!
//! Times are milliseconds since the Unix epoch (`*_ms`), so a browser can
//! show ages with its own clock; `now_ms` is the gateway's clock when the
//! snapshot was taken.

use serde::{Deserialize, Serialize};

/// Everything the status page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `gateway.name`.
    pub gateway: String,
    /// billbox's version.
    pub version: String,
    pub now_ms: i64,
    /// When this billbox process started.
    pub started_ms: i64,
    /// The store is open and the pipeline started (`/readyz`).
    pub ready: bool,
    /// What needs a person, in words; empty when healthy.
    pub alarms: Vec<AlarmView>,
    pub ports: Vec<PortView>,
    pub destinations: Vec<DestinationView>,
    pub store: StoreView,
    /// `None` when no `[transactions]` section is configured.
    pub transactions: Option<TransactionsView>,
}

/// One alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmView {
    /// `port_quiet`, `delivery_stalled`, `store_near_capacity` (the
    /// `/healthz` alarms), `store_full`, `data_disk_low`.
    pub kind: String,
    /// The port, or `delivery` / `store`.
    pub subject: String,
    /// A sentence for a person.
    pub text: String,
}

/// A billing file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileView {
    pub name: String,
    pub records: u64,
    /// When it opened (the open file) or closed (the last closed one).
    pub at_ms: i64,
}

/// One port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    /// `serial /dev/ttyS0 9600 7E1`, `TCP listen 0.0.0.0:5101`,
    /// `TCP connect 10.1.2.3:1752`.
    pub link: String,
    /// `up`, `down`, `listening`, `cannot open`, `starting`, or `off`
    /// (`billing_records = 0`).
    pub state: String,
    /// The peer, the address listened on, or why it is down.
    pub detail: Option<String>,
    pub state_since_ms: Option<i64>,
    /// Records committed since local midnight (counted by this process:
    /// see `today_since_ms`).
    pub records_today: u64,
    /// Midnight, or this process's start when it started later today.
    pub today_since_ms: i64,
    /// Every record the port ever committed (its last sequence).
    pub records_total: u64,
    pub last_record_ms: Option<i64>,
    /// The port's `quiet_alarm` in seconds, if it has one.
    pub quiet_alarm_s: Option<u64>,
    /// The quiet alarm holds.
    pub quiet: bool,
    pub open_file: Option<FileView>,
    pub last_closed: Option<FileView>,
    /// Committed records not yet in a closed file.
    pub files_backlog: u64,
}

/// The primary/secondary delivery or one carbon copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationView {
    /// `delivery`, or `cc:NAME`.
    pub name: String,
    /// `fail-over`, `round robin`, `carbon copy` or `carbon copy (reliable)`.
    pub kind: String,
    /// The server the last attempt went to: `primary`, `secondary`,
    /// `mirror` (a fire-once carbon copy; a reliable one's server is its
    /// `primary`); `None` before the first attempt.
    pub server: Option<String>,
    /// The URL in use (the primary's before the first attempt).
    pub url: String,
    /// Records waiting for this destination; `None` for a fire-once carbon
    /// copy (it keeps no cursor).
    pub backlog: Option<u64>,
    pub last_success_ms: Option<i64>,
    /// When the current outage began; `None`: not in an outage.
    pub outage_since_ms: Option<i64>,
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    pub suspended_until_ms: Option<i64>,
    /// Packets awaiting an answer.
    pub in_flight: u64,
    /// `delivery.window` × `delivery.connections`: the most that may be.
    pub window: u64,
}

/// The store and its disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreView {
    /// Records held.
    pub records: u64,
    /// Of them, those kept only for `store.retain`.
    pub retained: u64,
    /// Records waiting for delivery (they count against the capacity).
    pub waiting: u64,
    /// `store.max_records`.
    pub capacity: u64,
    /// `waiting` as a share of `capacity`, in percent.
    pub used_percent: f64,
    /// The store's size on disk.
    pub bytes: Option<u64>,
    /// Free bytes on the data disk (`None`: the file system reports none).
    pub disk_free_bytes: Option<u64>,
    /// `store.min_free_mb` in bytes.
    pub reserve_bytes: u64,
    pub disk_low: bool,
    pub full: bool,
}

/// Hotel transactions: the submit API and the AG relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionsView {
    /// The submit API's address.
    pub listen: String,
    /// Transactions stored from the submit API, ever.
    pub submitted: u64,
    /// AG packets stored from the relay, ever.
    pub relayed: u64,
    /// Submissions and relayed packets refused by this process (bad
    /// input, no token).
    pub refused: u64,
    /// Transactions stored today, from both (counted by this process).
    pub today: u64,
    pub last_ms: Option<i64>,
    /// The open journal files: the submit API's, the relay's.
    pub open_files: Vec<FileView>,
    pub last_closed: Option<FileView>,
}

impl Snapshot {
    /// Whether no alarm holds.
    pub fn healthy(&self) -> bool {
        self.alarms.is_empty()
    }

    /// The status as aligned text tables, for a terminal.
    pub fn table(&self) -> String {
        let now = self.now_ms;
        let mut out = String::new();
        let health = if self.alarms.is_empty() {
            "healthy".to_string()
        } else {
            plural(self.alarms.len() as u64, "alarm")
        };
        out.push_str(&format!(
            "billbox {} on {}: {}, {}, up {}\n",
            self.version,
            self.gateway,
            if self.ready { "ready" } else { "not ready" },
            health,
            duration_words(now - self.started_ms),
        ));
        for a in &self.alarms {
            out.push_str(&format!("ALARM  {}\n", a.text));
        }
        out.push('\n');
        let ports: Vec<Vec<String>> = self
            .ports
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.link.clone(),
                    if p.quiet {
                        format!("{} (QUIET)", p.state)
                    } else {
                        p.state.clone()
                    },
                    number(p.records_today),
                    number(p.records_total),
                    ago(p.last_record_ms, now),
                    p.open_file.as_ref().map_or("-".into(), |f| {
                        format!("{} ({})", f.name, number(f.records))
                    }),
                    p.last_closed.as_ref().map_or("-".into(), |f| {
                        format!(
                            "{} ({}, {})",
                            f.name,
                            number(f.records),
                            ago(Some(f.at_ms), now)
                        )
                    }),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PORT",
                "LINK",
                "STATE",
                "TODAY",
                "TOTAL",
                "LAST RECORD",
                "OPEN FILE",
                "LAST CLOSED FILE",
            ],
            &ports,
            &[3, 4],
        ));
        if !self.destinations.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = self
                .destinations
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.kind.clone(),
                        d.server.clone().unwrap_or_else(|| "-".into()),
                        d.url.clone(),
                        d.backlog.map_or("-".into(), number),
                        ago(d.last_success_ms, now),
                        match d.outage_since_ms {
                            Some(since) => format!(
                                "{} ({})",
                                duration_words(now - since),
                                plural(d.failed_attempts, "failed attempt")
                            ),
                            None => "-".into(),
                        },
                        format!("{}/{}", d.in_flight, d.window),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "DESTINATION",
                    "KIND",
                    "SERVER",
                    "URL",
                    "BACKLOG",
                    "LAST SUCCESS",
                    "OUTAGE",
                    "IN FLIGHT",
                ],
                &rows,
                &[4],
            ));
        }
        if let Some(t) = &self.transactions {
            out.push('\n');
            out.push_str(&table(
                &[
                    "TRANSACTIONS",
                    "SUBMITTED",
                    "TODAY",
                    "RELAYED",
                    "REFUSED",
                    "LAST",
                    "OPEN FILES",
                ],
                &[vec![
                    t.listen.clone(),
                    number(t.submitted),
                    number(t.today),
                    number(t.relayed),
                    number(t.refused),
                    ago(t.last_ms, now),
                    if t.open_files.is_empty() {
                        "-".into()
                    } else {
                        t.open_files
                            .iter()
                            .map(|f| format!("{} ({})", f.name, number(f.records)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ]],
                &[1, 2, 3, 4],
            ));
        }
        out.push('\n');
        out.push_str(&self.store.line());
        out.push('\n');
        out
    }
}

impl StoreView {
    /// The store in one line of words.
    pub fn line(&self) -> String {
        let mut s = format!(
            "Store: {} held, {} waiting for delivery of {} ({:.1} % used)",
            number(self.records),
            number(self.waiting),
            number(self.capacity),
            self.used_percent
        );
        if self.retained > 0 {
            s.push_str(&format!(", {} retained", number(self.retained)));
        }
        if let Some(b) = self.bytes {
            s.push_str(&format!(", {} on disk", bytes_words(b)));
        }
        match self.disk_free_bytes {
            Some(free) => s.push_str(&format!(
                "; disk free {} (reserve {})",
                bytes_words(free),
                bytes_words(self.reserve_bytes)
            )),
            None => s.push_str("; disk free unknown"),
        }
        if self.full {
            s.push_str("; FULL");
        }
        if self.disk_low {
            s.push_str("; DISK LOW");
        }
        s.push('.');
        s
    }
}

/// Rows under headers, each column as wide as its widest cell; the columns
/// in `right` are aligned right (numbers).
pub fn table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right.contains(&i) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1,234,567`.
pub fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 alarm`, `3 alarms`.
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{} {what}s", number(n))
    }
}

/// A length of time in milliseconds, in its two largest units: `850 ms`,
/// `4 s`, `2 min 5 s`, `3 h 12 min`, `2 d 4 h`.
pub fn duration_words(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) if s == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// `4 s ago`, or `-` for never.
pub fn ago(at_ms: Option<i64>, now_ms: i64) -> String {
    match at_ms {
        Some(at) => format!("{} ago", duration_words(now_ms - at)),
        None => "-".into(),
    }
}

/// `512 B`, `2.0 KiB`, `3.4 MiB`, `1.2 GiB`.
pub fn bytes_words(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_two_units() {
        assert_eq!(duration_words(850), "850 ms");
        assert_eq!(duration_words(4_200), "4 s");
        assert_eq!(duration_words(120_000), "2 min");
        assert_eq!(duration_words(125_000), "2 min 5 s");
        assert_eq!(
            duration_words((3 * 3600 + 12 * 60 + 9) * 1000),
            "3 h 12 min"
        );
        assert_eq!(duration_words((2 * 86_400 + 4 * 3600) * 1000), "2 d 4 h");
        assert_eq!(duration_words(-5), "0 ms", "a clock that went back");
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(1000), "1,000");
        assert_eq!(number(1_234_567), "1,234,567");
        assert_eq!(bytes_words(512), "512 B");
        assert_eq!(bytes_words(64 << 20), "64.0 MiB");
        assert_eq!(plural(1, "alarm"), "1 alarm");
        assert_eq!(plural(2, "alarm"), "2 alarms");
    }

    #[test]
    fn a_table_aligns_its_columns() {
        let t = table(
            &["PORT", "TOTAL"],
            &[
                vec!["a".into(), "5".into()],
                vec!["longer".into(), "1,000".into()],
            ],
            &[1],
        );
        assert_eq!(t, "PORT    TOTAL\na           5\nlonger  1,000\n");
    }
}
