//! The `billbox` command: runs the collector, checks configs, shows a demo.
//!
//! Layout: [`cli`] (arguments), [`logging`] (JSON or text logs through
//! `tracing`, and the panic hook), [`demo`] (the no-hardware demonstration),
//! [`salvage`] (recovery from a quarantined store),
//! and the subcommands below. Allocator settings are in `billbox-memory`.
#![forbid(unsafe_code)]

mod cli;
mod demo;
mod health;
mod import_acs;
mod logging;
mod replay;
mod salvage;
mod status;
mod story;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo, without --log-format, logs to a file of its own (it tells a
    // story on stdout instead).
    if cli.log_format.is_some() || !matches!(cli.command, Command::Demo(_)) {
        logging::init(cli.log_format, &cli.log_level);
    }
    logging::install_panic_hook();
    // Billing records are private: everything billbox creates (store, guard,
    // ACS files, directories) is readable by its group at most: files 0640,
    // directories 0750.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Validate { config } => validate(&config),
        Command::Inspect { config } => inspect(&config),
        Command::Demo(args) => demo::main(args, cli.log_format.is_none(), &cli.log_level),
        Command::ImportAcs { file, gateway } => import_acs::main(&file, gateway),
        cmd @ Command::Replay { .. } => replay::main(cmd),
        cmd @ Command::Receive { .. } => receive(cmd),
        Command::Salvage { config, wait, dir } => salvage::main(&config, &dir, wait),
        Command::Health {
            addr,
            ready,
            timeout,
        } => health::main(addr, ready, timeout),
        Command::Status {
            addr,
            config,
            json,
            timeout,
        } => status::main(addr, config.as_deref(), json, timeout),
    }
}

/// `billbox receive`: the reference billing server, until SIGTERM/SIGINT.
fn receive(command: Command) -> ExitCode {
    let Command::Receive {
        listen,
        out,
        durable,
        secret_key,
        secret_key_file,
        tls_cert,
        tls_key,
        client_ca,
    } = command
    else {
        unreachable!("receive() is called for `billbox receive` only");
    };
    let secret_key = match (secret_key, secret_key_file) {
        (Some(key), _) => Some(key),
        (None, Some(file)) => match billbox_config::SecretKey::from_file(&file) {
            Ok(key) => Some(key),
            Err(why) => {
                tracing::error!(error = %why, "The receiver cannot start: --secret-key-file.");
                return ExitCode::from(2);
            }
        },
        (None, None) => None,
    };
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(billbox_receiver::ReceiverTls {
            cert,
            key,
            client_ca,
        }),
        _ => None,
    };
    let security = billbox_receiver::ReceiverSecurity { secret_key, tls };
    let system = actix_rt::System::new();
    system.block_on(async move {
        let opts = billbox_receiver::ReceiverOptions {
            listen,
            out,
            durable,
        };
        let running = match billbox_receiver::serve_secure(opts, security) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "The receiver cannot start.");
                return ExitCode::from(2);
            }
        };
        let signal = wait_for_stop_signal().await;
        running.stop(true).await;
        let (records, duplicates) = running.counts();
        for ((gateway, port), gaps) in running.gaps() {
            if !gaps.is_empty() {
                tracing::warn!(%gateway, %port, gaps = ?gaps, "Records are missing (gaps in sequences).");
            }
        }
        let (new_transactions, duplicate_transactions) = running.transaction_counts();
        for ((usg_id, property_id), gaps) in running.transaction_gaps() {
            if !gaps.is_empty() {
                tracing::warn!(%usg_id, %property_id, gaps = ?gaps, "Transactions are missing (gaps in REC_NUM).");
            }
        }
        tracing::info!(
            signal,
            records,
            duplicates,
            new_transactions,
            duplicate_transactions,
            "The receiver stopped."
        );
        ExitCode::SUCCESS
    })
}

fn load(path: &Path) -> Result<billbox_config::Config, ExitCode> {
    billbox_config::load(path).map_err(|e| {
        eprintln!("billbox: the config {} is not valid:\n{e}", path.display());
        ExitCode::from(1)
    })
}

fn validate(path: &Path) -> ExitCode {
    match load(path) {
        Ok(cfg) => {
            println!(
                "{}: valid ({} ports, gateway {})",
                path.display(),
                cfg.ports.len(),
                cfg.gateway.name
            );
            // Still valid: a setting without effect is never a reason not
            // to start.
            for warning in &cfg.warnings {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Logs each setting of `config` that has no effect where it stands, once.
fn log_warnings(path: &Path, config: &billbox_config::Config) {
    for warning in &config.warnings {
        tracing::warn!(
            config = %path.display(),
            key = %warning.key,
            why = %warning.message,
            "A setting has no effect where it stands; billbox runs without it."
        );
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    log_warnings(path, &config);
    // Before anything counts: counters counted earlier would be lost.
    let prometheus = if config.metrics.enabled {
        match billbox_monitor::install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("billbox: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let path = path.to_path_buf();
    billbox_memory::start_trimmer();
    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        // The listener comes first, so /readyz answers 503 while the store
        // opens (recovery of a large store takes a while).
        let monitor = match prometheus.map(|p| billbox_monitor::serve(&config, p)) {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                tracing::error!(error = %e, "billbox cannot start.");
                return ExitCode::from(2);
            }
        };
        let mut running = match billbox_runtime::start(&config) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "billbox cannot start.");
                return ExitCode::from(2);
            }
        };
        if let Some(m) = &monitor {
            m.set_ready(running.store().clone());
        }
        // Before "running" is said: a SIGTERM from then on stops billbox
        // cleanly, and none is missed while a reload is applied.
        let mut signals = Signals::install();
        tracing::info!(
            gateway = %config.gateway.name,
            ports = running.readers(),
            metrics = ?monitor.as_ref().map(|m| m.addr()),
            version = env!("CARGO_PKG_VERSION"),
            "billbox is running."
        );
        let mut fatal = running.fatal();
        let fatal = async move {
            loop {
                if fatal.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if let Some(why) = fatal.borrow().clone() {
                    return why;
                }
            }
        };
        tokio::pin!(fatal);
        let failed = loop {
            tokio::select! {
                signal = signals.next() => match signal {
                    Signal::Reload => reload(&path, &mut running, monitor.as_ref()).await,
                    Signal::Stop(name) => {
                        tracing::info!(
                            signal = name,
                            "Stopping: no more reading, committing what was read."
                        );
                        break None;
                    }
                },
                why = &mut fatal => {
                    tracing::error!(
                        reason = %why,
                        "Stopping because billbox cannot go on safely; exiting 3 so that the container or unit starts it again."
                    );
                    break Some(why);
                }
            }
        };
        if let Some(m) = &monitor {
            m.set_stopping();
        }
        running.shutdown().await;
        if let Some(m) = &monitor {
            m.stop().await;
        }
        // Restarted by the container runtime (or systemd), from the store.
        match failed {
            Some(_) => ExitCode::from(3),
            None => ExitCode::SUCCESS,
        }
    });
    actix_rt::System::current().stop();
    code
}

enum Signal {
    Stop(&'static str),
    Reload,
}

/// The signals `billbox run` handles, installed once for the whole run.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler installs"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler installs"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler installs"),
        }
    }

    /// The next signal (one that came while none was awaited is kept).
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// SIGHUP: reads the config file again and applies it; a config that is not
/// valid, or that changes what needs a restart, is refused and the running
/// one stays.
async fn reload(
    path: &Path,
    running: &mut billbox_runtime::Running,
    monitor: Option<&billbox_monitor::Monitor>,
) {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config.");
    let new = match billbox_config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let problems: Vec<String> = e.problems().iter().map(|p| p.to_string()).collect();
            tracing::error!(
                config = %path.display(),
                error = %e,
                problems = ?problems,
                "The new config is not valid; billbox keeps running with the old one."
            );
            return;
        }
    };
    log_warnings(path, &new);
    match running.reload(&new).await {
        Ok(summary) => {
            if let Some(m) = monitor {
                m.set_config(&new);
            }
            tracing::info!(
                added = ?summary.added,
                removed = ?summary.removed,
                changed = ?summary.changed,
                destinations_restarted = summary.destinations,
                ports = running.readers(),
                "The config is reloaded."
            );
        }
        Err(e) => tracing::error!(
            error = %e,
            "The new config was refused; billbox keeps running with the old one."
        ),
    }
}

async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Prints what the store holds per port, as JSON lines. The daemon must be
/// stopped: the store is opened exclusively.
fn inspect(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dir = config.gateway.data_dir.join("store");
    let store = match billbox_store::Store::open(&dir, config.store.cache_mb << 20) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("billbox: {e}");
            return ExitCode::from(2);
        }
    };
    let mut names: Vec<String> = store.ports().iter().map(|p| p.to_string()).collect();
    for p in &config.ports {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    for name in names {
        let stats = match store.port_stats(&name) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("billbox: {e}");
                return ExitCode::from(2);
            }
        };
        let files = store
            .get_meta(&name, billbox_spool::state::META_NAME)
            .ok()
            .flatten()
            .and_then(|v| billbox_spool::state::FileState::decode(&v).ok())
            .unwrap_or_default();
        println!(
            "{}",
            serde_json::json!({
                "port": name,
                "records": stats.records,
                "first_seq": stats.first_seq,
                "last_seq": stats.last_seq,
                "file_cursor": files.cursor,
                "open_file": files.open.map(|o| o.stem),
            })
        );
    }
    ExitCode::SUCCESS
}
