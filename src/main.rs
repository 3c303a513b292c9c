//! The `billbox` command: runs the collector, checks configs, shows a demo.
//!
//! Layout: [`cli`] (arguments), [`logging`] (JSON or text logs through
//! `tracing`, and the panic hook), [`demo`] (the no-hardware demonstration),
//! [`salvage`] (recovery from a quarantined store),
//! and the subcommands below.
#![forbid(unsafe_code)]

mod cli;
mod demo;
mod health;
mod logging;
mod salvage;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    logging::install_panic_hook();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Validate { config } => validate(&config),
        Command::Inspect { config } => inspect(&config),
        Command::Demo(args) => demo::main(args),
        Command::Receive {
            listen,
            out,
            durable,
        } => receive(listen, out, durable),
        Command::Salvage { config, wait, dir } => salvage::main(&config, &dir, wait),
        Command::Health {
            addr,
            ready,
            timeout,
        } => health::main(addr, ready, timeout),
    }
}

fn receive(listen: String, out: std::path::PathBuf, durable: bool) -> ExitCode {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let opts = billbox_receiver::ReceiverOptions {
            listen,
            out,
            durable,
        };
        let running = match billbox_receiver::serve(opts) {
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
        tracing::info!(signal, records, duplicates, "The receiver stopped.");
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
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
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
        let running = match billbox_runtime::start(&config) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "billbox cannot start.");
                return ExitCode::from(2);
            }
        };
        if let Some(m) = &monitor {
            m.set_ready(running.store().clone());
        }
        tracing::info!(
            gateway = %config.gateway.name,
            ports = running.readers(),
            metrics = ?monitor.as_ref().map(|m| m.addr()),
            version = env!("CARGO_PKG_VERSION"),
            "billbox is running."
        );
        let signal = wait_for_stop_signal().await;
        tracing::info!(
            signal,
            "Stopping: no more reading, committing what was read."
        );
        if let Some(m) = &monitor {
            m.set_stopping();
        }
        running.shutdown().await;
        if let Some(m) = &monitor {
            m.stop().await;
        }
        ExitCode::SUCCESS
    });
    actix_rt::System::current().stop();
    code
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
