//! Builds the [`Snapshot`] the status page shows: the config says what
//! exists, the status board what it is doing, the last store sample how
//! many records there are. No store access: this runs per request.

use billbox_config::{Config, Method, PortConfig, PortSource};
use billbox_status::board::{Board, DestinationFacts, FileFacts, PortFacts};
use billbox_status::snapshot::{
    duration_words, number, AlarmView, DestinationView, FileView, PortView, Snapshot, StoreView,
    TransactionsView,
};
use billbox_transactions::{RELAY_STREAM, SUBMIT_STREAM};
use chrono::{DateTime, Local, Utc};

use crate::health::Alarm;
use crate::sample::Figures;

/// What [`snapshot`] reads.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub board: &'a Board,
    /// The last store sample (`None` before the store is open).
    pub figures: Option<&'a Figures>,
    pub alarms: &'a [Alarm],
    pub ready: bool,
    pub started: DateTime<Utc>,
    /// Free bytes on the data disk, if known.
    pub disk_free: Option<u64>,
    pub now: DateTime<Local>,
}

/// The status now.
pub fn snapshot(i: &Inputs<'_>) -> Snapshot {
    let now_ms = i.now.timestamp_millis();
    let midnight = midnight_ms(now_ms);
    let today_since_ms = midnight.max(i.started.timestamp_millis());
    let today = i.now.date_naive();
    let committed = |name: &str| {
        i.figures
            .and_then(|f| f.committed.get(name).copied())
            .unwrap_or(0)
    };
    let backlog = |label: &str, name: &str| {
        i.figures
            .and_then(|f| f.backlog.get(&(label.to_owned(), name.to_owned())).copied())
            .unwrap_or(0)
    };
    let ports = i
        .config
        .ports
        .iter()
        .map(|p| {
            let facts = i.board.port_facts(&p.name).unwrap_or_default();
            // A listening port whose PBX hung up listens again.
            let listens_again = matches!(p.source, PortSource::Listen { .. })
                && matches!(facts.link, billbox_status::Link::Down { .. });
            PortView {
                name: p.name.clone(),
                link: link_words(p),
                state: if !p.enabled() {
                    "off".to_string()
                } else if listens_again {
                    "listening".to_string()
                } else {
                    facts.link.word().to_string()
                },
                detail: facts.link.detail().map(|d| {
                    if listens_again {
                        format!("{d}; waiting for the PBX to connect again")
                    } else {
                        d.to_owned()
                    }
                }),
                state_since_ms: facts.link_since.map(|t| t.timestamp_millis()),
                records_today: facts.records_on(today),
                today_since_ms,
                records_total: committed(&p.name),
                last_record_ms: facts.last_record.map(|t| t.timestamp_millis()),
                quiet_alarm_s: p.quiet_alarm.map(|q| q.as_secs()),
                quiet: i
                    .alarms
                    .iter()
                    .any(|a| a.kind() == "port_quiet" && a.subject() == p.name),
                open_file: facts.open_file.as_ref().map(file_view),
                last_closed: facts.last_closed.as_ref().map(file_view),
                files_backlog: backlog("files", &p.name),
            }
        })
        .collect();

    let mut destinations = Vec::new();
    let streams = crate::sample::streams(i.config);
    let waiting_for = |label: &str| -> u64 { streams.iter().map(|s| backlog(label, s)).sum() };
    // A destination opens at most one connection per port.
    let lanes = |connections: usize| connections.clamp(1, streams.len().max(1));
    if let Some(d) = &i.config.delivery {
        let facts = i.board.destination_facts("delivery").unwrap_or_default();
        destinations.push(destination_view(
            "delivery",
            match d.method {
                Method::Failover => "fail-over",
                Method::RoundRobin => "round robin",
            },
            &facts,
            &without_query(d.primary.as_str()),
            Some(waiting_for("delivery")),
            (d.window * lanes(d.connections)) as u64,
        ));
    }
    for cc in &i.config.carbon_copies {
        let name = format!("cc:{}", cc.name);
        let facts = i.board.destination_facts(&name).unwrap_or_default();
        destinations.push(destination_view(
            &name,
            if cc.reliable {
                "carbon copy (reliable)"
            } else {
                "carbon copy"
            },
            &facts,
            &without_query(cc.url.as_str()),
            cc.reliable.then(|| waiting_for(&cc.name)),
            if cc.reliable {
                i.config
                    .delivery
                    .as_ref()
                    .map_or(billbox_config::DEFAULT_WINDOW as u64, |d| {
                        (d.window * lanes(d.connections)) as u64
                    })
            } else {
                1
            },
        ));
    }

    let transactions = i.config.transactions.as_ref().map(|t| {
        let submitted = i.board.port_facts(SUBMIT_STREAM).unwrap_or_default();
        let relayed = i.board.port_facts(RELAY_STREAM).unwrap_or_default();
        TransactionsView {
            listen: t.listen.to_string(),
            submitted: committed(SUBMIT_STREAM),
            relayed: committed(RELAY_STREAM),
            refused: submitted.refused + relayed.refused,
            today: submitted.records_on(today) + relayed.records_on(today),
            last_ms: submitted
                .last_record
                .max(relayed.last_record)
                .map(|t| t.timestamp_millis()),
            open_files: [&submitted.open_file, &relayed.open_file]
                .into_iter()
                .flatten()
                .map(file_view)
                .collect(),
            last_closed: newest_closed(&submitted, &relayed).map(file_view),
        }
    });

    let (held, retained, waiting, bytes) = i.figures.map_or((0, 0, 0, None), |f| {
        (f.held, f.retained, f.waiting, f.bytes)
    });
    let capacity = i.config.store.max_records;
    let full = i
        .board
        .store_full
        .load(std::sync::atomic::Ordering::Relaxed);
    let disk_low = i.board.disk_low.load(std::sync::atomic::Ordering::Relaxed);
    let reserve_bytes = i.config.store.min_free_mb.saturating_mul(1 << 20);
    let store = StoreView {
        records: held,
        retained,
        waiting,
        capacity,
        used_percent: if capacity == 0 {
            0.0
        } else {
            waiting as f64 * 100.0 / capacity as f64
        },
        bytes,
        disk_free_bytes: i.disk_free,
        reserve_bytes,
        disk_low,
        full,
    };

    let mut alarms: Vec<AlarmView> = i
        .alarms
        .iter()
        .map(|a| AlarmView {
            kind: a.kind().to_string(),
            subject: a.subject().to_string(),
            text: a.sentence(),
        })
        .collect();
    if full {
        alarms.push(AlarmView {
            kind: "store_full".into(),
            subject: "store".into(),
            text: format!(
                "The store is full: {} records wait for delivery (store.max_records {}); the ports are not read until servers acknowledge some.",
                number(waiting),
                number(capacity)
            ),
        });
    }
    if disk_low {
        alarms.push(AlarmView {
            kind: "data_disk_low".into(),
            subject: "store".into(),
            text: format!(
                "The data disk has less free space than its reserve ({} free, store.min_free_mb {}); the ports are not read until space is freed.",
                i.disk_free.map_or("unknown".into(), billbox_status::snapshot::bytes_words),
                i.config.store.min_free_mb
            ),
        });
    }

    Snapshot {
        gateway: i.config.gateway.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        now_ms,
        started_ms: i.started.timestamp_millis(),
        ready: i.ready,
        alarms,
        ports,
        destinations,
        store,
        transactions,
    }
}

/// Local midnight of the day `now_ms` (milliseconds since the epoch) falls
/// on, in milliseconds since the epoch.
pub fn midnight_ms(now_ms: i64) -> i64 {
    use chrono::TimeZone;
    Local
        .timestamp_millis_opt(now_ms)
        .single()
        .and_then(|t| t.date_naive().and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(Local).earliest())
        .map_or(now_ms, |t| t.timestamp_millis())
}

fn destination_view(
    name: &str,
    kind: &str,
    facts: &DestinationFacts,
    primary_url: &str,
    backlog: Option<u64>,
    window: u64,
) -> DestinationView {
    DestinationView {
        name: name.to_string(),
        kind: kind.to_string(),
        server: facts.server.map(str::to_owned),
        url: facts
            .url
            .as_deref()
            .map_or_else(|| primary_url.to_owned(), without_query),
        backlog,
        last_success_ms: facts.last_success.map(|t| t.timestamp_millis()),
        outage_since_ms: facts.outage_since.map(|t| t.timestamp_millis()),
        failed_attempts: facts.failed_attempts,
        last_error: facts.last_error.clone(),
        suspended_until_ms: facts.suspended_until.map(|t| t.timestamp_millis()),
        in_flight: facts.in_flight,
        window,
    }
}

/// A URL without its query (`?key=...` may hold a secret; the page is
/// for anyone who reaches the metrics listener).
fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

fn file_view(f: &FileFacts) -> FileView {
    FileView {
        name: f.name.clone(),
        records: f.records,
        at_ms: f.at.timestamp_millis(),
    }
}

fn newest_closed<'a>(a: &'a PortFacts, b: &'a PortFacts) -> Option<&'a FileFacts> {
    match (&a.last_closed, &b.last_closed) {
        (Some(x), Some(y)) => Some(if y.at > x.at { y } else { x }),
        (x, y) => x.as_ref().or(y.as_ref()),
    }
}

/// How a port is linked, in words: `serial /dev/ttyS0 9600 7E1`,
/// `TCP listen 0.0.0.0:5101`, `TCP connect pbx:1752`.
pub fn link_words(p: &PortConfig) -> String {
    match &p.source {
        PortSource::Serial { device } => {
            let s = &p.serial;
            let parity = match s.parity.as_str() {
                "none" => 'N',
                "odd" => 'O',
                "even" => 'E',
                "mark" => 'M',
                _ => 'S',
            };
            format!(
                "serial {} {} {}{}{}",
                device.display(),
                s.speed,
                s.data_bits,
                parity,
                s.stop_bits
            )
        }
        PortSource::Listen { addr } => format!("TCP listen {addr}"),
        PortSource::Connect { addr } => format!("TCP connect {addr}"),
    }
}

impl Alarm {
    /// The alarm as a sentence for a person.
    pub fn sentence(&self) -> String {
        let ms = |d: std::time::Duration| d.as_millis() as i64;
        match self {
            Alarm::PortQuiet {
                port,
                quiet_for,
                limit,
            } => format!(
                "Port {port} has received no record for {} (its quiet_alarm is {}).",
                duration_words(ms(*quiet_for)),
                duration_words(ms(*limit))
            ),
            Alarm::DeliveryStalled {
                waiting,
                stalled_for,
                limit,
            } => format!(
                "No billing server has acknowledged a record for {}: {} records wait in the store (metrics.delivery_alarm is {}).",
                duration_words(ms(*stalled_for)),
                number(*waiting),
                duration_words(ms(*limit))
            ),
            Alarm::StoreNearCapacity { waiting, alarm_at } => format!(
                "The store is near capacity: {} records wait for delivery; the alarm is at {}.",
                number(*waiting),
                number(*alarm_at)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> Config {
        billbox_config::from_toml_str(
            r#"
[gateway]
name = "gw"
data_dir = "/tmp/d"
spool_dir = "/tmp/s"
[[ports]]
name = "pana"
device = "/dev/ttyS0"
speed = 1200
data_bits = 7
parity = "even"
quiet_alarm = "1m"
[[ports]]
name = "ipo"
listen = "127.0.0.1:5101"
[delivery]
primary = "http://127.0.0.1:1/billing"
secondary = "http://127.0.0.1:2/billing"
[[carbon_copy]]
name = "audit"
url = "http://127.0.0.1:3/cc"
"#,
        )
        .expect("a valid config")
    }

    #[test]
    fn a_snapshot_reads_the_board_the_figures_and_the_alarms() {
        let config = config();
        let board = Board::default();
        board.port("pana").link(billbox_status::Link::Up {
            peer: "/dev/ttyS0".into(),
        });
        board.port("pana").received(3);
        let d = board.destination("delivery");
        d.using("secondary", "http://127.0.0.1:2/billing");
        d.failed("connection refused");
        let mut figures = Figures::default();
        figures.committed.insert("pana".into(), 40);
        figures
            .backlog
            .insert(("delivery".into(), "pana".into()), 7);
        figures.waiting = 7;
        let alarms = [Alarm::PortQuiet {
            port: "ipo".into(),
            quiet_for: Duration::from_secs(125),
            limit: Duration::from_secs(60),
        }];
        let s = snapshot(&Inputs {
            config: &config,
            board: &board,
            figures: Some(&figures),
            alarms: &alarms,
            ready: true,
            started: Utc::now() - chrono::TimeDelta::seconds(10),
            disk_free: Some(1 << 30),
            now: Local::now(),
        });
        assert_eq!(s.ports[0].link, "serial /dev/ttyS0 1200 7E1");
        assert_eq!(
            (s.ports[0].state.as_str(), s.ports[0].records_today),
            ("up", 3)
        );
        assert_eq!(s.ports[0].records_total, 40);
        assert_eq!(s.ports[1].state, "starting");
        assert_eq!(without_query("http://h/b?key=s3cret"), "http://h/b?…");
        assert!(s.ports[1].quiet && !s.ports[0].quiet);
        assert_eq!(s.destinations[0].server.as_deref(), Some("secondary"));
        assert_eq!(s.destinations[0].backlog, Some(7));
        assert!(s.destinations[0].outage_since_ms.is_some());
        assert_eq!(s.destinations[1].name, "cc:audit");
        assert_eq!(s.destinations[1].backlog, None, "fire-once: no cursor");
        assert_eq!(
            s.alarms[0].text,
            "Port ipo has received no record for 2 min 5 s (its quiet_alarm is 1 min)."
        );
        assert!(!s.healthy());
        // The JSON round-trips: `billbox status` reads it back.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
    }
}
