//! Data-flow alarms, decided from samples of the store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the tracker watches for, from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Ports with a `quiet_alarm`, and its length.
    pub quiet: HashMap<String, Duration>,
    /// How long records may wait with no acknowledgement (`metrics.delivery_alarm`).
    pub delivery_alarm: Duration,
    /// Records waiting for delivery at which the store counts as near
    /// capacity (`store.max_records` × `metrics.store_alarm_percent` / 100);
    /// `None` when nothing is forwarded.
    pub store_alarm_records: Option<u64>,
}

impl Limits {
    /// The limits a config sets.
    pub fn from_config(config: &billbox_config::Config) -> Limits {
        Limits {
            quiet: config
                .ports
                .iter()
                .filter(|p| p.enabled())
                .filter_map(|p| p.quiet_alarm.map(|q| (p.name.clone(), q)))
                .collect(),
            delivery_alarm: config.metrics.delivery_alarm,
            store_alarm_records: config.delivery.as_ref().map(|_| {
                (config.store.max_records * u64::from(config.metrics.store_alarm_percent))
                    .div_ceil(100)
                    .max(1)
            }),
        }
    }
}

/// The store as seen at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// Each configured port's last committed sequence.
    pub ports: Vec<(String, u64)>,
    /// The primary/secondary delivery, when configured: the sum of its
    /// per-port cursors (grows with every acknowledgement) and the records
    /// waiting for it.
    pub delivery: Option<(u64, u64)>,
}

/// One alarm that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// A port committed no record for longer than its `quiet_alarm`.
    PortQuiet {
        port: String,
        quiet_for: Duration,
        limit: Duration,
    },
    /// Records wait for delivery and none was acknowledged for longer than
    /// `delivery_alarm` (both servers failing, or refusing the records).
    DeliveryStalled {
        waiting: u64,
        stalled_for: Duration,
        limit: Duration,
    },
    /// The records waiting for delivery reached the alarm share of the
    /// store's capacity.
    StoreNearCapacity { waiting: u64, alarm_at: u64 },
}

impl Alarm {
    /// A short name for the kind of alarm (a metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Alarm::PortQuiet { .. } => "port_quiet",
            Alarm::DeliveryStalled { .. } => "delivery_stalled",
            Alarm::StoreNearCapacity { .. } => "store_near_capacity",
        }
    }

    /// What the alarm is about: the port, or "delivery" / "store".
    pub fn subject(&self) -> &str {
        match self {
            Alarm::PortQuiet { port, .. } => port,
            Alarm::DeliveryStalled { .. } => "delivery",
            Alarm::StoreNearCapacity { .. } => "store",
        }
    }

    /// The alarm as a JSON object (for `/healthz`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Alarm::PortQuiet {
                port,
                quiet_for,
                limit,
            } => serde_json::json!({
                "alarm": self.kind(), "port": port,
                "quiet_for_s": quiet_for.as_secs(), "limit_s": limit.as_secs(),
            }),
            Alarm::DeliveryStalled {
                waiting,
                stalled_for,
                limit,
            } => serde_json::json!({
                "alarm": self.kind(), "waiting": waiting,
                "stalled_for_s": stalled_for.as_secs(), "limit_s": limit.as_secs(),
            }),
            Alarm::StoreNearCapacity { waiting, alarm_at } => serde_json::json!({
                "alarm": self.kind(), "waiting": waiting, "alarm_at": alarm_at,
            }),
        }
    }
}

/// Remembers when each port last moved and when delivery last made
/// progress, and decides the alarms.
#[derive(Debug)]
pub struct Tracker {
    limits: Limits,
    /// Per port: the last sequence seen and when it changed (or when
    /// tracking began).
    ports: HashMap<String, (u64, Instant)>,
    /// Delivery: the last cursor sum seen, and since when records have been
    /// waiting with no progress (`None`: nothing waits).
    delivery: Option<(u64, Option<Instant>)>,
}

impl Tracker {
    pub fn new(limits: Limits) -> Tracker {
        Tracker {
            limits,
            ports: HashMap::new(),
            delivery: None,
        }
    }

    /// New limits (a reloaded config); what was observed so far is kept.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Takes a sample taken at `now` and returns the alarms that hold.
    pub fn observe(&mut self, now: Instant, sample: &Sample) -> Vec<Alarm> {
        let mut alarms = Vec::new();
        for (port, seq) in &sample.ports {
            let entry = self.ports.entry(port.clone()).or_insert((*seq, now));
            if entry.0 != *seq {
                *entry = (*seq, now);
            }
            if let Some(limit) = self.limits.quiet.get(port) {
                let quiet_for = now.saturating_duration_since(entry.1);
                if quiet_for > *limit {
                    alarms.push(Alarm::PortQuiet {
                        port: port.clone(),
                        quiet_for,
                        limit: *limit,
                    });
                }
            }
        }
        if let Some((cursor_sum, waiting)) = sample.delivery {
            let state = self.delivery.get_or_insert((cursor_sum, None));
            if waiting == 0 || state.0 != cursor_sum {
                *state = (cursor_sum, None);
            }
            if waiting > 0 {
                let since = *state.1.get_or_insert(now);
                let stalled_for = now.saturating_duration_since(since);
                if stalled_for > self.limits.delivery_alarm {
                    alarms.push(Alarm::DeliveryStalled {
                        waiting,
                        stalled_for,
                        limit: self.limits.delivery_alarm,
                    });
                }
            }
            if let Some(alarm_at) = self.limits.store_alarm_records {
                if waiting >= alarm_at {
                    alarms.push(Alarm::StoreNearCapacity { waiting, alarm_at });
                }
            }
        }
        alarms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            quiet: HashMap::from([("pbx".to_string(), Duration::from_secs(60))]),
            delivery_alarm: Duration::from_secs(30),
            store_alarm_records: Some(900),
        }
    }

    fn sample(pbx: u64, other: u64, delivery: Option<(u64, u64)>) -> Sample {
        Sample {
            ports: vec![("pbx".into(), pbx), ("other".into(), other)],
            delivery,
        }
    }

    #[test]
    fn a_port_is_quiet_only_after_its_limit_and_only_if_it_has_one() {
        let t0 = Instant::now();
        let mut t = Tracker::new(limits());
        assert!(t.observe(t0, &sample(5, 0, None)).is_empty());
        assert!(t
            .observe(t0 + Duration::from_secs(60), &sample(5, 0, None))
            .is_empty());
        let alarms = t.observe(t0 + Duration::from_secs(61), &sample(5, 0, None));
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!(alarms[0].subject(), "pbx");
        assert_eq!(alarms[0].kind(), "port_quiet");
        // A record clears it; "other" never alarms (no quiet_alarm).
        assert!(t
            .observe(t0 + Duration::from_secs(62), &sample(6, 0, None))
            .is_empty());
        assert!(t
            .observe(t0 + Duration::from_secs(121), &sample(6, 0, None))
            .is_empty());
        assert_eq!(
            t.observe(t0 + Duration::from_secs(123), &sample(6, 0, None))
                .len(),
            1
        );
    }

    #[test]
    fn delivery_stalls_only_while_records_wait_without_progress() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut t = Tracker::new(limits());
        // (The pbx port keeps sending, so only delivery can alarm.)
        // Nothing waits for a long time: no alarm.
        assert!(t.observe(s(0), &sample(0, 1, Some((0, 0)))).is_empty());
        assert!(t.observe(s(100), &sample(100, 1, Some((0, 0)))).is_empty());
        // Records wait from 100 s on; progress at 120 s restarts the clock.
        assert!(t.observe(s(101), &sample(101, 1, Some((0, 10)))).is_empty());
        assert!(t.observe(s(120), &sample(120, 1, Some((4, 6)))).is_empty());
        assert!(t.observe(s(150), &sample(150, 1, Some((4, 6)))).is_empty());
        let alarms = t.observe(s(151), &sample(151, 1, Some((4, 6))));
        assert!(
            matches!(alarms[..], [Alarm::DeliveryStalled { waiting: 6, .. }]),
            "{alarms:?}"
        );
        // Everything acknowledged: cleared.
        assert!(t.observe(s(152), &sample(152, 1, Some((10, 0)))).is_empty());
    }

    #[test]
    fn the_store_alarm_counts_waiting_records() {
        let mut t = Tracker::new(limits());
        let now = Instant::now();
        assert!(t.observe(now, &sample(0, 0, Some((0, 899)))).is_empty());
        let alarms = t.observe(now, &sample(0, 0, Some((0, 900))));
        assert_eq!(
            alarms,
            vec![Alarm::StoreNearCapacity {
                waiting: 900,
                alarm_at: 900
            }]
        );
        assert_eq!(alarms[0].to_json()["alarm"], "store_near_capacity");
    }
}
