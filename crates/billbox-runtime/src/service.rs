//! Builds the pipeline from a config and shuts it down.
//!
//! ```text
//!  PortReader (per port) --Append--> StoreActor --Committed--> RotatorActor (per port)
//!        ^   reply after flush            |                          |
//!        +--------------------------------+                  spool dir: cyc*.tmp/.txt
//!                                     sled (data_dir/store)
//! ```
//! Readers and the store actor run on the system arbiter; rotators, which do
//! blocking file I/O, share a `files` arbiter. All run under supervisors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use billbox_config::Config;
use billbox_spool::{Rotator, RotatorSettings};
use billbox_store::{Store, StoreError};

use crate::messages::{Drain, SubscribeCommitted};
use crate::reader::{ListenAddrs, PortReader, StopSignal};
use crate::rotator_actor::RotatorActor;
use crate::stats::LatencyHistogram;
use crate::store_actor::StoreActor;

/// How long [`Running::shutdown`] waits for readers to hand over what they read.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The running pipeline.
pub struct Running {
    store: Store,
    latency: Arc<LatencyHistogram>,
    store_actor: Addr<StoreActor>,
    files: Option<Arbiter>,
    listen_addrs: ListenAddrs,
    stop: tokio::sync::watch::Sender<bool>,
    alive: Option<tokio::sync::mpsc::Receiver<()>>,
    readers: Vec<Addr<PortReader>>,
    rotators: Vec<Addr<RotatorActor>>,
}

/// Starts every actor of `config`. Call inside a running actix `System`.
pub fn start(config: &Config) -> Result<Running, StartError> {
    let store_dir = config.gateway.data_dir.join("store");
    for dir in [&config.gateway.data_dir, &config.gateway.spool_dir] {
        std::fs::create_dir_all(dir).map_err(|source| StartError::Dir {
            path: dir.clone(),
            source,
        })?;
    }
    let store = Store::open(&store_dir, config.store.cache_mb * 1024 * 1024)?;
    tracing::info!(
        path = %store_dir.display(),
        ports = config.ports.len(),
        "The store is open."
    );
    let store_for_actor = store.clone();
    let latency = Arc::new(LatencyHistogram::default());
    let latency_for_actor = latency.clone();
    let store_actor = Supervisor::start(move |_| {
        StoreActor::new(store_for_actor.clone(), latency_for_actor.clone())
    });

    let files = Arbiter::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (alive_tx, alive_rx) = tokio::sync::mpsc::channel(1);
    let listen_addrs = ListenAddrs::default();
    let mut readers = Vec::new();
    let mut rotators = Vec::new();
    for port in config.ports.iter().filter(|p| p.enabled()) {
        let settings = RotatorSettings {
            port: Arc::from(port.name.as_str()),
            prefix: port.file_prefix(&config.gateway.name).to_string(),
            dir: config.gateway.spool_dir.clone(),
            records_per_file: port.billing_records,
            timeout: port.billing_timeout,
        };
        let store_for_rotator = store.clone();
        let rotator = Supervisor::start_in_arbiter(&files.handle(), move |_| {
            RotatorActor::new(Rotator::new(settings, store_for_rotator))
        });
        store_actor.do_send(SubscribeCommitted {
            port: Arc::from(port.name.as_str()),
            recipient: rotator.clone().recipient(),
        });
        rotators.push(rotator);

        let port = Arc::new(port.clone());
        let (sa, la) = (store_actor.clone(), listen_addrs.clone());
        let stop = StopSignal {
            stop: stop_rx.clone(),
            alive: Some(alive_tx.clone()),
        };
        readers.push(Supervisor::start(move |_| {
            PortReader::new(port.clone(), sa.clone(), la.clone(), stop.clone())
        }));
    }
    for port in config.ports.iter().filter(|p| !p.enabled()) {
        tracing::info!(port = %port.name, "Port is off (billing_records = 0); not reading it.");
    }
    drop(alive_tx);
    Ok(Running {
        store,
        latency,
        store_actor,
        files: Some(files),
        listen_addrs,
        stop: stop_tx,
        alive: Some(alive_rx),
        readers,
        rotators,
    })
}

impl Running {
    /// The store handle (for counts and inspection).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bound address of a listening port, once it is listening.
    pub fn listen_addr(&self, port: &str) -> Option<SocketAddr> {
        self.listen_addrs
            .lock()
            .expect("listen address table poisoned")
            .get(port)
            .copied()
    }

    /// Time from a record's read to its flush, per record.
    pub fn commit_latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// Number of port readers started.
    pub fn readers(&self) -> usize {
        self.readers.len()
    }

    /// Stops reading, commits what readers already read, and stops the file
    /// arbiter. Open `.tmp` files are completed at the next start.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut alive) = self.alive.take() {
            // Every reader holds a sender; recv() ends when all are dropped.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive.recv()).await;
        }
        let _ = self.store_actor.send(Drain).await;
        let _ = self.store.flush().await;
        self.rotators.clear();
        if let Some(files) = self.files.take() {
            files.stop();
            let _ = tokio::task::spawn_blocking(move || files.join()).await;
        }
        tracing::info!("billbox stopped; every record read is committed.");
    }
}
