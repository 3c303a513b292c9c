//! `billbox salvage`: what a quarantined store still holds goes to the files
//! and the servers.
//!
//! billbox moves a damaged store aside and starts a fresh one whose sequences
//! begin above the old ones. The old store may still hold records that were
//! not in a closed file or not acknowledged yet. This command opens it (sled
//! recovers what is intact), writes the records past its files cursor into
//! new ACS files in the spool directory, and posts the records past its
//! delivery cursor to the configured primary/secondary with their original
//! ids. Servers drop the ones they already have.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billbox_delivery::CursorDestination;
use billbox_spool::{Rotator, RotatorSettings};
use billbox_store::{Store, DELIVERY_CURSOR};

pub fn main(config: &Path, dir: &Path, wait: Duration) -> ExitCode {
    let config = match crate::load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match Store::open(dir, config.store.cache_mb << 20) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("billbox salvage: {} cannot be read: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&config.gateway.spool_dir) {
        eprintln!(
            "billbox salvage: {}: {e}",
            config.gateway.spool_dir.display()
        );
        return ExitCode::from(2);
    }
    let ports = store.ports();
    let mut ok = true;
    for port in &ports {
        let cfg = config.port(port);
        let settings = RotatorSettings {
            port: port.clone(),
            prefix: cfg
                .map_or(config.gateway.name.as_str(), |p| {
                    p.file_prefix(&config.gateway.name)
                })
                .to_string(),
            dir: config.gateway.spool_dir.clone(),
            records_per_file: cfg.map_or(50, |p| p.billing_records.max(1)),
            timeout: None,
        };
        // No store actor here: this process is the store's only writer.
        let mut rotator = Rotator::new(
            settings,
            store.clone(),
            Arc::new(billbox_spool::DirectState(store.clone())),
        );
        let result = rotator
            .recover(billbox_runtime::now_us())
            .and_then(|()| rotator.close_now());
        let files = rotator.drain_closed();
        let records: u64 = files.iter().map(|f| f.records()).sum();
        match result {
            Ok(()) => println!(
                "{}",
                serde_json::json!({"port": port.as_ref(), "filed_records": records, "files": files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>()})
            ),
            Err(e) => {
                ok = false;
                eprintln!("billbox salvage: port {port}: writing files failed after {records} records: {e}");
            }
        }
    }
    if let Some(d) = config.delivery.clone() {
        let backlog = |store: &Store| -> u64 {
            ports
                .iter()
                .map(|p| store.backlog(p, DELIVERY_CURSOR).unwrap_or(0))
                .sum()
        };
        let before = backlog(&store);
        let system = actix_rt::System::new();
        let left = system.block_on(async {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let dest = CursorDestination::primary_secondary(
                Arc::from("salvage"),
                &d,
                Arc::from(config.gateway.name.as_str()),
                ports.clone(),
                store.clone(),
                // No store actor here: the one writer is this process.
                std::rc::Rc::new(billbox_delivery::DirectAcks(store.clone())),
                Arc::new(tokio::sync::watch::channel(0).0),
            );
            let task = tokio::task::spawn_local(dest.run(stop_rx));
            let deadline = Instant::now() + wait;
            while backlog(&store) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = stop_tx.send(true);
            let _ = task.await;
            let _ = store.flush().await;
            backlog(&store)
        });
        println!(
            "{}",
            serde_json::json!({"delivered_records": before - left, "undelivered_records": left})
        );
        if left > 0 {
            eprintln!("billbox salvage: {left} records could not be delivered within {wait:?}; run salvage again later.");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
