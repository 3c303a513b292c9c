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
use billbox_config::{Config, PortConfig};
use billbox_spool::{Rotator, RotatorSettings};
use billbox_store::{Store, StoreError};
use std::collections::HashMap;

use std::rc::Rc;
use std::time::Instant;

use billbox_config::Method;
use billbox_delivery::feed::TcpFeed;
use billbox_delivery::{CursorDestination, Endpoint, MirrorDestination, Retransmission};
use billbox_store::{carbon_copy_cursor, DELIVERY_CURSOR, FILES_CURSOR};
use billbox_transactions::{StreamKind, RELAY_STREAM, SUBMIT_STREAM};
use std::future::Future;

use crate::capacity::{Capacity, DiskReserve};
use crate::destination_actor::{DestinationActor, LoopFactory, MirrorActor};
use crate::diff::{rotator_settings, ConfigDiff, ReloadError};
use crate::events::StoreQuarantined;
use crate::messages::{
    CopyBatch, Drain, DrainEnd, Flush, Reconfigure, Stop, StoreActorAcks, StoreActorFiles,
    SubscribeCommitted,
};
use crate::reader::{ListenAddrs, PortReader};
use crate::rotator_actor::Retire;
use crate::rotator_actor::RotatorActor;
use crate::stats::LatencyHistogram;
use crate::store_actor::{Consumers, StoreActor};
use crate::supervise::Restarts;

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
    #[error(transparent)]
    Transactions(#[from] crate::submit_api::ApiError),
}

/// The running pipeline.
pub struct Running {
    store: Store,
    latency: Arc<LatencyHistogram>,
    store_actor: Addr<StoreActor>,
    files: Option<Arbiter>,
    listen_addrs: ListenAddrs,
    config: Config,
    /// The ports being read, by name.
    ports: HashMap<String, PortRun>,
    /// Rotators of ports removed by a reload: they finish the port's files
    /// (close the open one at its deadline, file records still unfiled).
    retired_ports: HashMap<String, Addr<RotatorActor>>,
    destinations: Destinations,
    /// The submit API and the transaction streams' rotators.
    transactions: Option<TransactionRun>,
    /// Every actor's restart budget.
    restarts: Restarts,
    /// The admin socket (`billbox replay`), and the config it reads.
    admin: Option<crate::admin::Admin>,
    admin_config: Rc<std::cell::RefCell<Config>>,
}

/// `[transactions]` running.
struct TransactionRun {
    api: crate::submit_api::SubmitApi,
    /// Held so the supervised rotators live until shutdown.
    _rotators: Vec<Addr<RotatorActor>>,
}

/// One port's reader and rotator, and how to stop the reader.
struct PortRun {
    config: PortConfig,
    /// Stopped by [`Stop`], which it answers once it handed over what it read.
    reader: Addr<PortReader>,
    rotator: Addr<RotatorActor>,
}

/// The destination actors (a reload replaces them), each stopped by [`Stop`].
struct Destinations {
    actors: Vec<Recipient<Stop>>,
}

/// How long in-flight POSTs may take to finish at a stop or reload before
/// they are abandoned (their records stay stored and are sent again).
pub const POST_GRACE: Duration = billbox_delivery::cursor::STOP_GRACE;

/// Creates `dir` and its missing parents, and makes each new name durable
/// (an fsync of the directory that holds it), so a power cut after the
/// first start cannot take the data or spool directory away.
fn create_dir_durably(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Starts every actor of `config`. Call inside a running actix `System`.
pub fn start(config: &Config) -> Result<Running, StartError> {
    let store_dir = config.gateway.data_dir.join("store");
    for dir in [&config.gateway.data_dir, &config.gateway.spool_dir] {
        create_dir_durably(dir).map_err(|source| StartError::Dir {
            path: dir.clone(),
            source,
        })?;
    }
    let store = open_store(config, &store_dir)?;
    if let Some(bytes) = store.resynced_bytes() {
        crate::events::StoreResynced { bytes }.emit();
    }
    tracing::info!(
        path = %store_dir.display(),
        ports = config.ports.len(),
        "The store is open."
    );
    crate::events::series_at_zero(config);
    let restarts = Restarts::new();
    // The store actor first (destinations record their acknowledgements
    // through it), then the destinations and what it must feed them.
    let store_for_actor = store.clone();
    let latency = Arc::new(LatencyHistogram::default());
    let latency_for_actor = latency.clone();
    let restarts_for_actor = restarts.clone();
    let store_actor = Supervisor::start(move |_| {
        StoreActor::new(
            store_for_actor.clone(),
            latency_for_actor.clone(),
            restarts_for_actor.clone(),
        )
    });
    let (consumers, actors) = start_destinations(config, &store, &store_actor, &restarts);
    // Sent before any reader starts: the first commit finds them.
    store_actor.do_send(Reconfigure(consumers));
    let mut running = Running {
        store,
        latency,
        store_actor,
        files: Some(Arbiter::new()),
        listen_addrs: ListenAddrs::default(),
        config: config.clone(),
        ports: HashMap::new(),
        retired_ports: HashMap::new(),
        destinations: Destinations { actors },
        transactions: None,
        restarts,
        admin: None,
        admin_config: Rc::new(std::cell::RefCell::new(config.clone())),
    };
    running.admin = match crate::admin::start(crate::admin::AdminContext {
        config: running.admin_config.clone(),
        store: running.store.clone(),
        acks: Rc::new(StoreActorAcks(running.store_actor.clone())),
    }) {
        Ok(admin) => Some(admin),
        Err(e) => {
            tracing::warn!(
                path = %crate::admin::socket_path(&config.gateway.data_dir).display(),
                error = %e,
                "The admin socket cannot listen; billbox replay will not reach this billbox."
            );
            None
        }
    };
    for port in config.ports.iter().filter(|p| p.enabled()) {
        running.start_port(port);
    }
    for port in config.ports.iter().filter(|p| !p.enabled()) {
        tracing::info!(port = %port.name, "Port is off (billing_records = 0); not reading it.");
    }
    if let Some(t) = &config.transactions {
        running.start_transactions(t)?;
    }
    running.start_retired_rotators();
    Ok(running)
}

/// The file settings of the transaction streams: (stream, prefix).
fn transaction_streams(t: &billbox_config::TransactionsConfig) -> [(&'static str, &str); 2] {
    [
        (SUBMIT_STREAM, t.alias.as_str()),
        (RELAY_STREAM, t.relay_alias.as_str()),
    ]
}

/// Settings for a port the store knows but the config no longer reads: its
/// files are finished with the gateway name as prefix (transactions: the
/// default aliases) and default limits.
fn retired_settings(config: &Config, port: &str) -> RotatorSettings {
    let (records_per_file, timeout) = billbox_config::default_file_limits();
    let prefix = match StreamKind::of(port) {
        StreamKind::Calls => config.gateway.name.clone(),
        StreamKind::Submitted => "TRANS".to_string(),
        StreamKind::Relayed => "TRANS_AG".to_string(),
    };
    RotatorSettings {
        port: Arc::from(port),
        prefix,
        dir: config.gateway.spool_dir.clone(),
        records_per_file,
        timeout,
    }
}

/// Opens the store; a damaged one is moved aside (never deleted) and a fresh
/// store started above its sequences, so billbox never crash-loops on it.
fn open_store(config: &Config, store_dir: &std::path::Path) -> Result<Store, StartError> {
    let cache = config.store.cache_mb * 1024 * 1024;
    let guard = config.gateway.data_dir.join("sequences");
    match Store::open_guarded(store_dir, cache, &guard) {
        Ok(s) => Ok(s),
        Err(e) if e.calls_for_quarantine() => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let moved = quarantine_path(&config.gateway.data_dir, &stamp);
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

/// Where a damaged store is moved: `store.quarantined-<stamp>`, or with
/// `-2`, `-3`, ... when that name is taken (two quarantines within one
/// second must not collide: the rename would fail and billbox could not
/// start).
pub fn quarantine_path(data_dir: &std::path::Path, stamp: &str) -> PathBuf {
    // Any entry takes the name, a dangling link too.
    let free = |p: &PathBuf| std::fs::symlink_metadata(p).is_err();
    let first = data_dir.join(format!("store.quarantined-{stamp}"));
    if free(&first) {
        return first;
    }
    (2u32..)
        .map(|n| data_dir.join(format!("store.quarantined-{stamp}-{n}")))
        .find(free)
        .expect("a free name below u32::MAX")
}

/// Defaults for reliable carbon copies when there is no `[delivery]` section.
const CC_RETRY_DELAY: Duration = Duration::from_secs(5);
const CC_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a supervised cursor destination whose loops `make` builds, and
/// has the store actor tell it of commits.
fn start_cursor_destination(
    name: Arc<str>,
    make: impl Fn(Arc<tokio::sync::watch::Sender<u64>>) -> CursorDestination + 'static,
    restarts: &Restarts,
    consumers: &mut Consumers,
) -> Recipient<Stop> {
    let make = Rc::new(make);
    let restarts = restarts.clone();
    let actor = Supervisor::start(move |_| {
        let make = make.clone();
        let make: LoopFactory = Box::new(move |news, stop| {
            let dest = make(news);
            Box::pin(dest.run(stop))
        });
        DestinationActor::new(name.clone(), make, restarts.clone())
    });
    consumers.destinations.push(actor.clone().recipient());
    actor.recipient()
}

/// Starts the primary/secondary sender and the carbon copies, and says
/// what the store actor must feed them and wait for.
fn start_destinations(
    config: &Config,
    store: &Store,
    store_actor: &Addr<StoreActor>,
    restarts: &Restarts,
) -> (Consumers, Vec<Recipient<Stop>>) {
    let mut consumers = Consumers {
        removal_cursors: vec![FILES_CURSOR.to_string()],
        flush_timeout: Some(config.store.flush_timeout),
        remember_ids: config.transactions.as_ref().map(|t| t.remember),
        retain: (!config.store.retain.is_zero()).then_some(config.store.retain),
        min_free: (config.store.min_free_mb > 0).then(|| {
            (
                config.gateway.data_dir.clone(),
                DiskReserve {
                    min_free_bytes: config.store.min_free_mb << 20,
                },
            )
        }),
        ..Consumers::default()
    };
    let mut actors = Vec::new();
    let gateway: Arc<str> = Arc::from(config.gateway.name.as_str());
    // Ports the config no longer reads still have their records delivered.
    let mut ports: Vec<Arc<str>> = config
        .ports
        .iter()
        .filter(|p| p.enabled())
        .map(|p| Arc::from(p.name.as_str()))
        .collect();
    if config.transactions.is_some() {
        ports.extend([Arc::from(SUBMIT_STREAM), Arc::from(RELAY_STREAM)]);
    }
    for p in store.ports() {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let delivery = config.delivery.clone();
    let (retry_delay, timeout, batch_max, window, connections) = delivery.as_ref().map_or(
        (
            CC_RETRY_DELAY,
            CC_REQUEST_TIMEOUT,
            1,
            billbox_config::DEFAULT_WINDOW,
            1,
        ),
        |d| {
            (
                d.retry_delay,
                d.request_timeout,
                d.batch_max,
                d.window,
                d.connections,
            )
        },
    );
    if let Some(d) = delivery {
        consumers.removal_cursors.push(DELIVERY_CURSOR.to_string());
        consumers.capacity = Some(Capacity {
            max_records: config.store.max_records,
            when_full: config.store.when_full,
        });
        let (store, gateway, ports) = (store.clone(), gateway.clone(), ports.clone());
        let writer = store_actor.clone();
        let make = move |news| {
            CursorDestination::primary_secondary(
                Arc::from("delivery"),
                &d,
                gateway.clone(),
                ports.clone(),
                store.clone(),
                Rc::new(StoreActorAcks(writer.clone())),
                news,
            )
        };
        actors.push(start_cursor_destination(
            Arc::from("delivery"),
            make,
            restarts,
            &mut consumers,
        ));
    }
    for cc in &config.carbon_copies {
        let name: Arc<str> = Arc::from(format!("cc:{}", cc.name).as_str());
        let (url, gateway) = (cc.url.clone(), gateway.clone());
        let security = cc.security.clone();
        let writer = store_actor.clone();
        if cc.reliable {
            let cursor = carbon_copy_cursor(&cc.name);
            consumers.removal_cursors.push(cursor.clone());
            let (store, ports, name2) = (store.clone(), ports.clone(), name.clone());
            let make = move |news| CursorDestination {
                name: name2.clone(),
                cursor: cursor.clone(),
                gateway: gateway.clone(),
                ports: ports.clone(),
                endpoints: vec![Endpoint::new(url.clone(), &security, timeout)],
                policy: Retransmission::new(
                    Method::Failover,
                    1,
                    false,
                    None,
                    Duration::ZERO,
                    Instant::now(),
                ),
                batch_max,
                retry_delay,
                store: store.clone(),
                acks: Rc::new(StoreActorAcks(writer.clone())),
                news,
                window,
                connections,
            };
            actors.push(start_cursor_destination(
                name,
                make,
                restarts,
                &mut consumers,
            ));
        } else {
            let restarts = restarts.clone();
            let name2 = name.clone();
            let actor = Supervisor::start(move |_| {
                MirrorActor::new(
                    MirrorDestination::new(
                        name2.clone(),
                        gateway.clone(),
                        Endpoint::new(url.clone(), &security, timeout),
                        batch_max,
                        Rc::new(StoreActorAcks(writer.clone())),
                    ),
                    restarts.clone(),
                )
            });
            consumers
                .mirrors
                .push((name, actor.clone().recipient::<CopyBatch>()));
            actors.push(actor.recipient());
        }
    }
    for feed in &config.tcp_feeds {
        // The config's ports (not the transaction streams), or those named.
        let ports: Vec<Arc<str>> = config
            .ports
            .iter()
            .filter(|p| feed.ports.is_empty() || feed.ports.contains(&p.name))
            .map(|p| Arc::from(p.name.as_str()))
            .collect();
        let (feed, store, writer) = (feed.clone(), store.clone(), store_actor.clone());
        let name: Arc<str> = Arc::from(format!("feed:{}", feed.name).as_str());
        let make: LoopFactory = Box::new(move |news, stop| {
            let feed = TcpFeed {
                config: feed.clone(),
                ports: ports.clone(),
                store: store.clone(),
                acks: Rc::new(StoreActorAcks(writer.clone())),
                news,
            };
            Box::pin(feed.run(stop))
        });
        let make = Rc::new(make);
        let restarts = restarts.clone();
        let actor = Supervisor::start(move |_| {
            let make = make.clone();
            let make: LoopFactory = Box::new(move |news, stop| make(news, stop));
            DestinationActor::new(name.clone(), make, restarts.clone())
        });
        consumers.destinations.push(actor.clone().recipient());
        actors.push(actor.recipient());
    }
    (consumers, actors)
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

    /// Number of port readers running.
    pub fn readers(&self) -> usize {
        self.ports.len()
    }

    fn files(&self) -> actix::ArbiterHandle {
        self.files
            .as_ref()
            .expect("the files arbiter runs until shutdown")
            .handle()
    }

    /// Starts a rotator with `settings` on the files arbiter; `subscribe`:
    /// the store actor tells it of each commit (a retired port's rotator
    /// only catches up on its own).
    fn start_rotator(&self, settings: RotatorSettings, subscribe: bool) -> Addr<RotatorActor> {
        let port = settings.port.clone();
        let (store, restarts) = (self.store.clone(), self.restarts.clone());
        // Its state changes go to the store actor, the one writer.
        let writer: Arc<dyn billbox_spool::StateWriter> =
            Arc::new(StoreActorFiles(self.store_actor.clone()));
        let rotator = Supervisor::start_in_arbiter(&self.files(), move |_| {
            RotatorActor::new(
                Rotator::new(settings.clone(), store.clone(), writer.clone()),
                restarts.clone(),
            )
        });
        if subscribe {
            self.store_actor.do_send(SubscribeCommitted {
                port,
                recipient: rotator.clone().recipient(),
            });
        }
        rotator
    }

    /// Starts a port's rotator and reader.
    fn start_port(&mut self, port: &PortConfig) {
        let rotator = self.start_rotator(rotator_settings(&self.config, port), true);
        let port_arc = Arc::new(port.clone());
        let (sa, la) = (self.store_actor.clone(), self.listen_addrs.clone());
        let restarts = self.restarts.clone();
        let reader = Supervisor::start(move |_| {
            PortReader::new(port_arc.clone(), sa.clone(), la.clone(), restarts.clone())
        });
        self.ports.insert(
            port.name.clone(),
            PortRun {
                config: port.clone(),
                reader,
                rotator,
            },
        );
    }

    /// Starts the transaction streams' rotators and the submit API.
    fn start_transactions(
        &mut self,
        t: &billbox_config::TransactionsConfig,
    ) -> Result<(), StartError> {
        let mut rotators = Vec::new();
        for (stream, prefix) in transaction_streams(t) {
            let settings = RotatorSettings {
                port: Arc::from(stream),
                prefix: prefix.to_string(),
                dir: self.config.gateway.spool_dir.clone(),
                records_per_file: t.billing_records,
                timeout: t.billing_timeout,
            };
            rotators.push(self.start_rotator(settings, true));
        }
        let mut destinations: Vec<String> = Vec::new();
        if self.config.delivery.is_some() {
            destinations.push("delivery".to_string());
        }
        destinations.extend(
            self.config
                .carbon_copies
                .iter()
                .map(|c| format!("cc:{}", c.name)),
        );
        let api = crate::submit_api::serve(
            &self.config.gateway.name,
            t,
            self.store.clone(),
            self.store_actor.clone(),
            destinations,
        )?;
        self.transactions = Some(TransactionRun {
            api,
            _rotators: rotators,
        });
        Ok(())
    }

    /// Changes to `Some(why)` once an actor spent its restart budget: then
    /// billbox must stop (and exit non-zero).
    pub fn fatal(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.restarts.fatal()
    }

    /// The submit API's bound address, when `[transactions]` is on.
    pub fn transactions_addr(&self) -> Option<SocketAddr> {
        self.transactions.as_ref().map(|t| t.api.addr())
    }

    /// Ports the store holds records of that the config does not read get a
    /// rotator, so their files are finished.
    fn start_retired_rotators(&mut self) {
        for port in self.store.ports() {
            let name = port.to_string();
            if self.ports.contains_key(&name)
                || self.retired_ports.contains_key(&name)
                || (self.transactions.is_some() && StreamKind::of(&name).is_transactions())
            {
                continue;
            }
            let rotator = self.start_rotator(retired_settings(&self.config, &name), false);
            self.retired_ports.insert(name, rotator);
        }
    }

    /// Stops the readers of `names` and commits what they read.
    async fn stop_readers(&mut self, names: &[String]) -> Vec<PortRun> {
        let stopped: Vec<PortRun> = names.iter().filter_map(|n| self.ports.remove(n)).collect();
        // Each answers once what it read is committed.
        let handed_over: Vec<_> = stopped.iter().map(|run| run.reader.send(Stop)).collect();
        // A store held full would keep readers waiting for their commits.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.store_actor.send(Drain)).await;
        let _ =
            tokio::time::timeout(SHUTDOWN_GRACE, futures_util::future::join_all(handed_over)).await;
        if tokio::time::timeout(SHUTDOWN_GRACE, self.store_actor.send(Drain))
            .await
            .is_err()
        {
            tracing::error!("Records read before the stop could not be committed in time (is the data disk full?); they are not received.");
        }
        // The readers that go on (a reload) are held by the rules again.
        let _ = self.store_actor.send(DrainEnd).await;
        stopped
    }

    /// Stops the destinations, letting in-flight POSTs finish for up to
    /// [`POST_GRACE`]: each is sent [`Stop`] and answers when its loop ended.
    fn stop_destinations(&mut self) -> impl Future<Output = ()> {
        let stopping: Vec<_> = std::mem::take(&mut self.destinations.actors)
            .iter()
            .map(|a| a.send(Stop))
            .collect();
        async move {
            let all = futures_util::future::join_all(stopping);
            let _ = tokio::time::timeout(POST_GRACE + Duration::from_secs(1), all).await;
        }
    }

    /// Applies a new config without a restart: ports added, removed or
    /// changed, servers changed. Unchanged ports keep reading (their links
    /// stay up). A removed port's records are still filed and delivered.
    /// Settings that need a restart make the reload fail, and the old
    /// config keeps running.
    pub async fn reload(&mut self, new: &Config) -> Result<ConfigDiff, ReloadError> {
        let summary = ConfigDiff::between(&self.config, new)?;
        let wanted: HashMap<&str, &PortConfig> = new
            .ports
            .iter()
            .filter(|p| p.enabled())
            .map(|p| (p.name.as_str(), p))
            .collect();
        // Readers of removed and changed ports stop and hand over first.
        let stopped = self.stop_readers(&summary.stopping()).await;
        self.config = new.clone();
        *self.admin_config.borrow_mut() = new.clone();
        for run in stopped {
            if summary.removed.contains(&run.config.name) {
                // It finishes the port's files with its old settings.
                self.retired_ports
                    .insert(run.config.name.clone(), run.rotator);
            } else {
                let _ = run.rotator.send(Retire).await;
            }
        }
        for name in summary.added.iter().chain(summary.changed.iter()) {
            if let Some(old_rotator) = self.retired_ports.remove(name) {
                let _ = old_rotator.send(Retire).await;
            }
            let port = (*wanted.get(name.as_str()).expect("a wanted port")).clone();
            self.start_port(&port);
        }
        if summary.destinations {
            self.stop_destinations().await;
            let (consumers, actors) =
                start_destinations(&self.config, &self.store, &self.store_actor, &self.restarts);
            let _ = self.store_actor.send(Reconfigure(consumers)).await;
            self.destinations = Destinations { actors };
        }
        Ok(summary)
    }

    /// Stops reading, commits what readers already read, lets in-flight
    /// POSTs finish (for up to [`POST_GRACE`]), and stops the file arbiter.
    /// Open `.tmp` files are completed at the next start.
    pub async fn shutdown(mut self) {
        // No more replays: one that runs stops where it is (its cursor is
        // recorded up to its last acknowledged packet).
        drop(self.admin.take());
        // No new transactions; those being answered finish first.
        if let Some(t) = &self.transactions {
            t.api.stop().await;
        }
        let names: Vec<String> = self.ports.keys().cloned().collect();
        // The destinations stop while the readers hand over.
        let destinations = self.stop_destinations();
        let stopped = self.stop_readers(&names).await;
        destinations.await;
        // The last acknowledgements and the sequence guard, by the one writer.
        match tokio::time::timeout(SHUTDOWN_GRACE, self.store_actor.send(Flush)).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "The last flush at shutdown failed; acknowledgements since the previous flush may be sent again.")
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("The store actor did not flush at shutdown in time; acknowledgements since the previous flush may be sent again.")
            }
        }
        drop(stopped);
        self.retired_ports.clear();
        if let Some(files) = self.files.take() {
            files.stop();
            let _ = tokio::task::spawn_blocking(move || files.join()).await;
        }
        tracing::info!("billbox stopped; every record read is committed.");
    }
}

#[cfg(test)]
mod tests {
    use super::quarantine_path;

    #[test]
    fn quarantine_names_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = "20261201T120000Z";
        let mut taken = Vec::new();
        for _ in 0..3 {
            let p = quarantine_path(dir.path(), stamp);
            assert!(!taken.contains(&p), "{p:?} given twice");
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("db"), b"x").unwrap();
            taken.push(p);
        }
        let names: Vec<String> = taken
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "store.quarantined-20261201T120000Z",
                "store.quarantined-20261201T120000Z-2",
                "store.quarantined-20261201T120000Z-3"
            ]
        );
    }
}
