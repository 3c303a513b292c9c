//! The monitoring HTTP listener.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use billbox_config::Config;
use billbox_store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::health::{Alarm, Limits, Tracker};
use crate::sample::Figures;

/// How often the store is sampled for the alarms.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Why monitoring could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("the metrics recorder could not be installed: {0}")]
    Recorder(String),
    #[error("cannot listen on {addr} for metrics and health (set metrics.listen, or metrics.enabled = false): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle). Counters counted before it is installed are lost, so
/// install it first thing.
pub fn install_recorder() -> Result<PrometheusHandle, MonitorError> {
    if let Some(h) = RECORDER.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| MonitorError::Recorder(e.to_string()))?;
    Ok(RECORDER.get_or_init(|| handle).clone())
}

struct State {
    prometheus: PrometheusHandle,
    config: Mutex<Config>,
    store: Mutex<Option<Store>>,
    ready: AtomicBool,
    stopped: AtomicBool,
    tracker: Mutex<Tracker>,
    alarms: Mutex<Vec<Alarm>>,
    /// The last sample's figures and the data disk's free bytes: what the
    /// status page shows (it never reads the store itself).
    figures: Mutex<Option<(Figures, Option<u64>)>>,
    started: chrono::DateTime<chrono::Utc>,
}

impl State {
    fn store(&self) -> Option<Store> {
        self.store.lock().expect("monitor state poisoned").clone()
    }

    /// Samples the store, updates the alarms, and logs the ones that start
    /// or end.
    fn sample(&self) {
        let Some(store) = self.store() else {
            return;
        };
        let config = self.config.lock().expect("monitor state poisoned").clone();
        let figures = crate::sample::take(&store, &config);
        let now_alarms = self
            .tracker
            .lock()
            .expect("monitor state poisoned")
            .observe(Instant::now(), &figures.health);
        let disk_free = disk_free(&config.gateway.data_dir);
        *self.figures.lock().expect("monitor state poisoned") = Some((figures, disk_free));
        let mut alarms = self.alarms.lock().expect("monitor state poisoned");
        let same = |a: &Alarm, b: &Alarm| a.kind() == b.kind() && a.subject() == b.subject();
        for a in now_alarms
            .iter()
            .filter(|a| !alarms.iter().any(|b| same(a, b)))
        {
            AlarmRaised(a).emit();
        }
        for a in alarms
            .iter()
            .filter(|a| !now_alarms.iter().any(|b| same(a, b)))
        {
            AlarmCleared(a).emit();
        }
        *alarms = now_alarms;
    }
}

/// The free bytes of the file system holding `dir` (`None` when it
/// reports no size, or cannot be read).
fn disk_free(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    (st.blocks() > 0).then(|| st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// An alarm started: logged once, counted, and its gauge set.
struct AlarmRaised<'a>(&'a Alarm);

impl AlarmRaised<'_> {
    fn emit(self) {
        let a = self.0;
        let detail = a.to_json().to_string();
        match a {
            Alarm::StoreNearCapacity { .. } => tracing::error!(
                alarm = a.kind(), subject = a.subject(), detail = %detail,
                "The store is near capacity: records are at risk unless delivery resumes; /healthz reports unhealthy."
            ),
            Alarm::PortQuiet { .. } => tracing::warn!(
                alarm = a.kind(), port = a.subject(), detail = %detail,
                "A port has received no record for longer than its quiet_alarm; /healthz reports unhealthy."
            ),
            Alarm::DeliveryStalled { .. } => tracing::warn!(
                alarm = a.kind(), subject = a.subject(), detail = %detail,
                "Records wait for delivery and no server has acknowledged any for longer than metrics.delivery_alarm; they stay stored. /healthz reports unhealthy."
            ),
        }
        metrics::counter!("billbox_alarms_total", "alarm" => a.kind()).increment(1);
        metrics::gauge!("billbox_alarm", "alarm" => a.kind(), "subject" => a.subject().to_owned())
            .set(1.0);
    }
}

/// An alarm ended.
struct AlarmCleared<'a>(&'a Alarm);

impl AlarmCleared<'_> {
    fn emit(self) {
        let a = self.0;
        tracing::info!(
            alarm = a.kind(),
            subject = a.subject(),
            "An alarm has cleared."
        );
        metrics::gauge!("billbox_alarm", "alarm" => a.kind(), "subject" => a.subject().to_owned())
            .set(0.0);
    }
}

/// The running listener.
pub struct Monitor {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    state: Arc<State>,
}

impl Monitor {
    /// The address it listens on (the real port when configured with 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store is open and the pipeline started: `/readyz` answers 200
    /// and the alarms are watched from now on.
    pub fn set_ready(&self, store: Store) {
        // The status page's "last record" of each port, until one comes in
        // this run: the newest stored record's time (read once, here).
        let config = self
            .state
            .config
            .lock()
            .expect("monitor state poisoned")
            .clone();
        for name in crate::sample::streams(&config) {
            let last = store.durable_seq(&name);
            if last == 0 {
                continue;
            }
            if let Some(Ok(record)) = store.records(&name, last, last).next() {
                if let Some(at) = chrono::DateTime::from_timestamp_micros(record.received_us) {
                    billbox_status::board().port(&name).last_record_before(at);
                }
            }
        }
        *self.state.store.lock().expect("monitor state poisoned") = Some(store);
        self.state.sample();
        self.state.ready.store(true, Ordering::Release);
    }

    /// A reloaded config: its ports, quiet alarms and limits apply from the
    /// next sample on.
    pub fn set_config(&self, config: &Config) {
        *self.state.config.lock().expect("monitor state poisoned") = config.clone();
        self.state
            .tracker
            .lock()
            .expect("monitor state poisoned")
            .set_limits(Limits::from_config(config));
    }

    /// billbox is stopping: `/readyz` answers 503 again.
    pub fn set_stopping(&self) {
        self.state.ready.store(false, Ordering::Release);
    }

    /// Stops the listener and the sampling.
    pub async fn stop(&self) {
        self.state.stopped.store(true, Ordering::Release);
        self.handle.stop(true).await;
        // Drop the store handle: the process opens the store once.
        self.state
            .store
            .lock()
            .expect("monitor state poisoned")
            .take();
    }
}

/// Starts the listener of `config.metrics` (call inside an actix system).
/// `/readyz` answers 503 until [`Monitor::set_ready`].
pub fn serve(config: &Config, prometheus: PrometheusHandle) -> Result<Monitor, MonitorError> {
    let state = Arc::new(State {
        prometheus,
        config: Mutex::new(config.clone()),
        store: Mutex::new(None),
        ready: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        tracker: Mutex::new(Tracker::new(Limits::from_config(config))),
        alarms: Mutex::new(Vec::new()),
        figures: Mutex::new(None),
        started: chrono::Utc::now(),
    });
    let addr = config.metrics.listen;
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/", web::get().to(status_page))
            .route("/status.json", web::get().to(status_json))
            .route("/metrics", web::get().to(metrics_page))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|source| MonitorError::Bind { addr, source })?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let sampler = state.clone();
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(SAMPLE_EVERY);
        while !sampler.stopped.load(Ordering::Acquire) {
            every.tick().await;
            sampler.sample();
            sampler.prometheus.run_upkeep();
        }
    });
    tracing::info!(listen = %bound, "The status page is served at /, metrics and health at /metrics, /healthz and /readyz.");
    Ok(Monitor {
        addr: bound,
        handle,
        state,
    })
}

async fn metrics_page(state: web::Data<State>) -> HttpResponse {
    if let Some(store) = state.store() {
        let config = state.config.lock().expect("monitor state poisoned").clone();
        crate::sample::take(&store, &config);
    }
    metrics::gauge!("billbox_ready").set(if state.ready.load(Ordering::Acquire) {
        1.0
    } else {
        0.0
    });
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.prometheus.render())
}

impl State {
    /// The status now, from the board and the last sample.
    fn snapshot(&self) -> billbox_status::Snapshot {
        let config = self.config.lock().expect("monitor state poisoned").clone();
        let alarms = self.alarms.lock().expect("monitor state poisoned").clone();
        let figures = self.figures.lock().expect("monitor state poisoned").clone();
        crate::status::snapshot(&crate::status::Inputs {
            config: &config,
            board: billbox_status::board(),
            figures: figures.as_ref().map(|(f, _)| f),
            alarms: &alarms,
            ready: self.ready.load(Ordering::Acquire),
            started: self.started,
            disk_free: figures.as_ref().and_then(|(_, free)| *free),
            now: chrono::Local::now(),
        })
    }
}

/// `/`: the status page.
async fn status_page(state: web::Data<State>) -> HttpResponse {
    let page = crate::page::render(&state.snapshot());
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self'"))
        .body(page)
}

/// `/status.json`: the same, as JSON (what `billbox status` reads).
async fn status_json(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(state.snapshot())
}

async fn healthz(state: web::Data<State>) -> HttpResponse {
    let alarms = state.alarms.lock().expect("monitor state poisoned").clone();
    let body = serde_json::json!({
        "status": if alarms.is_empty() { "ok" } else { "alarm" },
        "alarms": alarms.iter().map(Alarm::to_json).collect::<Vec<_>>(),
    });
    if alarms.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.ready.load(Ordering::Acquire) {
        HttpResponse::Ok().json(serde_json::json!({"ready": true}))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"ready": false}))
    }
}
