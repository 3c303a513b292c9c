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

use std::rc::Rc;
use std::time::Instant;

use billbox_config::Method;
use billbox_delivery::{CursorDestination, Endpoint, MirrorDestination, Retransmission};
use billbox_store::{carbon_copy_cursor, DELIVERY_CURSOR, FILES_CURSOR};
use tokio::sync::Notify;

use crate::destination_actor::{DestinationActor, LoopFactory};
use crate::events::StoreQuarantined;
use crate::messages::{Drain, SubscribeCommitted};
use crate::reader::{ListenAddrs, PortReader, StopSignal};
use crate::rotator_actor::RotatorActor;
use crate::stats::LatencyHistogram;
use crate::store_actor::Consumers;
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
    destinations: Vec<Addr<DestinationActor>>,
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
    let store = open_store(config, &store_dir)?;
    tracing::info!(
        path = %store_dir.display(),
        ports = config.ports.len(),
        "The store is open."
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (consumers, destinations) = start_destinations(config, &store, &stop_rx);
    let consumers = Arc::new(consumers);
    let store_for_actor = store.clone();
    let latency = Arc::new(LatencyHistogram::default());
    let latency_for_actor = latency.clone();
    let store_actor = Supervisor::start(move |_| {
        StoreActor::new(
            store_for_actor.clone(),
            latency_for_actor.clone(),
            consumers.clone(),
        )
    });

    let files = Arbiter::new();
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
        destinations,
    })
}

/// Opens the store; a damaged one is moved aside (never deleted) and a fresh
/// store started above its sequences, so billbox never crash-loops on it.
fn open_store(config: &Config, store_dir: &std::path::Path) -> Result<Store, StartError> {
    let cache = config.store.cache_mb * 1024 * 1024;
    let guard = config.gateway.data_dir.join("sequences");
    match Store::open_guarded(store_dir, cache, &guard) {
        Ok(s) => Ok(s),
        Err(e) if e.calls_for_quarantine() => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let moved = config
                .gateway
                .data_dir
                .join(format!("store.quarantined-{stamp}"));
            std::fs::rename(store_dir, &moved).map_err(|source| StartError::Dir {
                path: moved.clone(),
                source,
            })?;
            StoreQuarantined {
                path: store_dir,
                moved_to: &moved,
                error: &e.to_string(),
            }
            .emit();
            Ok(Store::open_fresh_above_guard(store_dir, cache, &guard)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Defaults for reliable carbon copies when there is no `[delivery]` section.
const CC_RETRY_DELAY: Duration = Duration::from_secs(5);
const CC_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the primary/secondary exchange and the carbon copies, and says what
/// the store actor must feed them and wait for.
fn start_destinations(
    config: &Config,
    store: &Store,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> (Consumers, Vec<Addr<DestinationActor>>) {
    let mut consumers = Consumers {
        removal_cursors: vec![FILES_CURSOR.to_string()],
        min_free: (config.store.min_free_mb > 0).then(|| {
            (
                config.gateway.data_dir.clone(),
                config.store.min_free_mb << 20,
            )
        }),
        ..Consumers::default()
    };
    let mut actors = Vec::new();
    let gateway: Arc<str> = Arc::from(config.gateway.name.as_str());
    let ports: Vec<Arc<str>> = config
        .ports
        .iter()
        .filter(|p| p.enabled())
        .map(|p| Arc::from(p.name.as_str()))
        .collect();
    let delivery = config.delivery.clone();
    let (retry_delay, timeout, batch_max, max_in_flight) =
        delivery
            .as_ref()
            .map_or((CC_RETRY_DELAY, CC_REQUEST_TIMEOUT, 1, 1), |d| {
                (
                    d.retry_delay,
                    d.request_timeout,
                    d.batch_max,
                    d.max_in_flight,
                )
            });
    if let Some(d) = delivery {
        consumers.removal_cursors.push(DELIVERY_CURSOR.to_string());
        consumers.capacity = Some((config.store.max_records, config.store.when_full));
        let wake = Arc::new(Notify::new());
        consumers.wakes.push(wake.clone());
        let (store, gateway, ports, stop2) =
            (store.clone(), gateway.clone(), ports.clone(), stop.clone());
        let name: Arc<str> = Arc::from("delivery");
        let make: LoopFactory = Box::new(move || {
            let dest = CursorDestination::primary_secondary(
                Arc::from("delivery"),
                &d,
                gateway.clone(),
                ports.clone(),
                store.clone(),
                wake.clone(),
            );
            Box::pin(dest.run(stop2.clone()))
        });
        let stop3 = stop.clone();
        let make = Rc::new(make);
        actors.push(Supervisor::start(move |_| {
            let make = make.clone();
            DestinationActor::new(name.clone(), Box::new(move || make()), stop3.clone())
        }));
    }
    for cc in &config.carbon_copies {
        let name: Arc<str> = Arc::from(format!("cc:{}", cc.name).as_str());
        let (url, gateway, stop2) = (cc.url.clone(), gateway.clone(), stop.clone());
        let make: LoopFactory = if cc.reliable {
            let cursor = carbon_copy_cursor(&cc.name);
            consumers.removal_cursors.push(cursor.clone());
            let wake = Arc::new(Notify::new());
            consumers.wakes.push(wake.clone());
            let (store, ports, name) = (store.clone(), ports.clone(), name.clone());
            Box::new(move || {
                let dest = CursorDestination {
                    name: name.clone(),
                    cursor: cursor.clone(),
                    gateway: gateway.clone(),
                    ports: ports.clone(),
                    endpoints: vec![Endpoint::new(url.clone(), timeout)],
                    policy: Retransmission::new(Method::Failover, 1, false, None, Instant::now()),
                    batch_max,
                    retry_delay,
                    store: store.clone(),
                    wake: wake.clone(),
                    max_in_flight,
                };
                Box::pin(dest.run(stop2.clone()))
            })
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel(MIRROR_QUEUE);
            consumers.mirrors.push((name.clone(), tx));
            let queue = Arc::new(tokio::sync::Mutex::new(rx));
            let name2 = name.clone();
            Box::new(move || {
                let dest = MirrorDestination {
                    name: name2.clone(),
                    gateway: gateway.clone(),
                    endpoint: Endpoint::new(url.clone(), timeout),
                    batch_max,
                    records: queue.clone(),
                };
                Box::pin(dest.run(stop2.clone()))
            })
        };
        let stop3 = stop.clone();
        let make = Rc::new(make);
        actors.push(Supervisor::start(move |_| {
            let make = make.clone();
            DestinationActor::new(name.clone(), Box::new(move || make()), stop3.clone())
        }));
    }
    (consumers, actors)
}

/// Committed batches a fire-once mirror may have queued before new records
/// are no longer copied to it.
pub const MIRROR_QUEUE: usize = 1024;

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
        // A store held full (when_full = "block") would keep readers waiting
        // for their commits: drain first, so those commits go through.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.store_actor.send(Drain)).await;
        if let Some(mut alive) = self.alive.take() {
            // Every reader holds a sender; recv() ends when all are dropped.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive.recv()).await;
        }
        self.destinations.clear();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.store_actor.send(Drain))
            .await
            .is_err()
        {
            tracing::error!("Records read before the stop could not be committed in time (is the data disk full?); they are not received.");
        }
        let _ = self.store.flush().await;
        if let Err(e) = self.store.confirm() {
            tracing::error!(error = %e, "The sequence guard could not be written at shutdown.");
        }
        self.rotators.clear();
        if let Some(files) = self.files.take() {
            files.stop();
            let _ = tokio::task::spawn_blocking(move || files.join()).await;
        }
        tracing::info!("billbox stopped; every record read is committed.");
    }
}
