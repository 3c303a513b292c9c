//! Reads a health sample from the store and sets the computed gauges.
//!
//! Gauges set here (all from the store, so they hold across restarts):
//! (Ports here include the transaction streams, `@transactions` and
//! `@ag-relay`, when `[transactions]` is configured.)
//! - `billbox_port_committed_sequence{port}`: the port's last committed
//!   sequence: every record the port ever received, since sequences grow
//!   by one per record;
//! - `billbox_backlog_records{destination, port}`: committed records past a
//!   consumer's cursor (`files`, `delivery`, and each reliable carbon copy);
//! - `billbox_done_sequence{destination, port}`: the consumer's cursor, the
//!   last sequence it is done with (acknowledged, filed, or given up);
//! - `billbox_store_held_records{port}` and `billbox_store_records`: records
//!   still in the store; `billbox_store_capacity_records`;
//! - `billbox_store_retained_records{port}`: of the held records, those
//!   every consumer is done with, kept for `store.retain` (they do not
//!   count against the capacity).
//!
//! So per port and destination, `committed = done + backlog` at every
//! scrape, and `done` counts delivered records plus dropped ones
//! (`billbox_records_dropped_total`).

use billbox_config::Config;
use std::collections::HashMap;

use billbox_store::{carbon_copy_cursor, Store, DELIVERY_CURSOR, FILES_CURSOR};
use billbox_transactions::{RELAY_STREAM, SUBMIT_STREAM};
use metrics::gauge;

use crate::health::Sample;

/// The consumers of a config's records: (destination label, cursor name).
pub fn consumers(config: &Config) -> Vec<(String, String)> {
    let mut out = vec![("files".to_string(), FILES_CURSOR.to_string())];
    if config.delivery.is_some() {
        out.push(("delivery".to_string(), DELIVERY_CURSOR.to_string()));
    }
    for cc in config.carbon_copies.iter().filter(|c| c.reliable) {
        out.push((cc.name.clone(), carbon_copy_cursor(&cc.name)));
    }
    out
}

/// The store's figures at one sample: what the gauges above say, kept for
/// the status page (which never reads the store itself).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// The health tracker's input.
    pub health: Sample,
    /// Each port's (and transaction stream's) last committed sequence.
    pub committed: HashMap<String, u64>,
    /// Records past each consumer's cursor, by (destination label, port).
    pub backlog: HashMap<(String, String), u64>,
    /// Records held, and of them those kept only for `store.retain`.
    pub held: u64,
    pub retained: u64,
    /// Records waiting for the primary/secondary delivery.
    pub waiting: u64,
    /// The store's size on disk.
    pub bytes: Option<u64>,
}

/// The streams a config's store holds: its ports, and the transaction
/// streams when `[transactions]` is configured.
pub fn streams(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = config.ports.iter().map(|p| p.name.clone()).collect();
    if config.transactions.is_some() {
        out.push(SUBMIT_STREAM.to_string());
        out.push(RELAY_STREAM.to_string());
    }
    out
}

/// Samples the store, setting the gauges on the way.
pub fn take(store: &Store, config: &Config) -> Figures {
    let consumers = consumers(config);
    let mut figures = Figures::default();
    let mut delivery_done = 0u64;
    for name in streams(config) {
        let committed = store.durable_seq(&name);
        figures.committed.insert(name.clone(), committed);
        if config.ports.iter().any(|p| p.name == name) {
            figures.health.ports.push((name.clone(), committed));
        }
        gauge!("billbox_port_committed_sequence", "port" => name.clone()).set(committed as f64);
        let held = store
            .first_held(&name)
            .map_or(0, |first| (committed + 1).saturating_sub(first));
        figures.held += held;
        gauge!("billbox_store_held_records", "port" => name.clone()).set(held as f64);
        let all_done = consumers
            .iter()
            .map(|(_, c)| store.cursor(&name, c).unwrap_or(0))
            .min()
            .unwrap_or(0);
        let retained = store
            .first_held(&name)
            .map_or(0, |first| (all_done + 1).saturating_sub(first))
            .min(held);
        figures.retained += retained;
        gauge!("billbox_store_retained_records", "port" => name.clone()).set(retained as f64);
        for (label, cursor) in &consumers {
            let done = store.cursor(&name, cursor).unwrap_or(0);
            if cursor == DELIVERY_CURSOR {
                delivery_done += done;
            }
            let backlog = committed.saturating_sub(done);
            figures
                .backlog
                .insert((label.clone(), name.clone()), backlog);
            gauge!("billbox_done_sequence", "destination" => label.clone(), "port" => name.clone())
                .set(done as f64);
            gauge!("billbox_backlog_records", "destination" => label.clone(), "port" => name.clone())
                .set(backlog as f64);
        }
    }
    gauge!("billbox_store_records").set(figures.held as f64);
    gauge!("billbox_store_capacity_records").set(config.store.max_records as f64);
    if config.delivery.is_some() {
        let waiting = store.total_backlog(DELIVERY_CURSOR).unwrap_or(0);
        figures.waiting = waiting;
        figures.health.delivery = Some((delivery_done, waiting));
    }
    figures.bytes = store.size_on_disk().ok();
    if let Some(bytes) = figures.bytes {
        gauge!("billbox_store_bytes").set(bytes as f64);
    }
    figures
}
