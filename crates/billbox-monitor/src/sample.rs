//! Reads a health sample from the store and sets the computed gauges.
//!
//! Gauges set here (all from the store, so they hold across restarts):
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
use billbox_store::{carbon_copy_cursor, Store, DELIVERY_CURSOR, FILES_CURSOR};
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

/// Samples the store for the health tracker, setting the gauges on the way.
pub fn take(store: &Store, config: &Config) -> Sample {
    let consumers = consumers(config);
    let mut sample = Sample::default();
    let mut held_total = 0u64;
    let mut delivery_done = 0u64;
    for port in &config.ports {
        let name = port.name.as_str();
        let committed = store.durable_seq(name);
        sample.ports.push((port.name.clone(), committed));
        gauge!("billbox_port_committed_sequence", "port" => port.name.clone())
            .set(committed as f64);
        let held = store
            .first_held(name)
            .map_or(0, |first| (committed + 1).saturating_sub(first));
        held_total += held;
        gauge!("billbox_store_held_records", "port" => port.name.clone()).set(held as f64);
        let all_done = consumers
            .iter()
            .map(|(_, c)| store.cursor(name, c).unwrap_or(0))
            .min()
            .unwrap_or(0);
        let retained = store
            .first_held(name)
            .map_or(0, |first| (all_done + 1).saturating_sub(first));
        gauge!("billbox_store_retained_records", "port" => port.name.clone())
            .set(retained.min(held) as f64);
        for (label, cursor) in &consumers {
            let done = store.cursor(name, cursor).unwrap_or(0);
            if cursor == DELIVERY_CURSOR {
                delivery_done += done;
            }
            gauge!("billbox_done_sequence", "destination" => label.clone(), "port" => port.name.clone())
                .set(done as f64);
            gauge!("billbox_backlog_records", "destination" => label.clone(), "port" => port.name.clone())
                .set(committed.saturating_sub(done) as f64);
        }
    }
    gauge!("billbox_store_records").set(held_total as f64);
    gauge!("billbox_store_capacity_records").set(config.store.max_records as f64);
    if config.delivery.is_some() {
        let waiting = store.total_backlog(DELIVERY_CURSOR).unwrap_or(0);
        sample.delivery = Some((delivery_done, waiting));
    }
    sample
}
