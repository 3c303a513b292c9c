//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// billbox: collects billing records from PBX serial and TCP ports, keeps each
/// one durably, and writes ACS-style rotated files per port.
#[derive(Debug, Parser)]
#[command(name = "billbox", version, about, long_about = None)]
pub struct Cli {
    /// Log format; JSON (one object per line) by default when stderr is not a terminal.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `billbox_runtime=debug`.
    #[arg(long, global = true, default_value = "info", env = "BILLBOX_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector until SIGTERM or SIGINT.
    Run {
        /// The TOML config file (environment: BILLBOX__SECTION__KEY overrides).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file: exit 0 when valid, 1 with one line per problem.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print what the store holds per port (JSON lines). Stop billbox first.
    Inspect {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show billbox at work with simulated PBXes: no hardware, no config.
    Demo(DemoArgs),
    /// Read what can be read from a quarantined (moved-aside) store: write its
    /// records that were not yet in files to new ACS files, and deliver those
    /// not yet acknowledged to the configured servers, with their original
    /// ids (servers drop the ones they already have).
    Salvage {
        #[arg(long, short)]
        config: PathBuf,
        /// How long to keep trying to deliver before giving up.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        /// The quarantined store directory (data_dir/store.quarantined-...).
        dir: PathBuf,
    },
    /// Ask a running billbox whether it is healthy (for container health
    /// checks): exit 0 when `/healthz` (or `/readyz`) answers 200, 1 otherwise.
    Health {
        /// The metrics listener of the billbox to ask (`metrics.listen`).
        #[arg(long, default_value = "127.0.0.1:9109")]
        addr: std::net::SocketAddr,
        /// Ask `/readyz` (store open, config loaded) instead of `/healthz`.
        #[arg(long)]
        ready: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Show a running billbox's status page in the terminal: ports, files,
    /// destinations, the store, and the alarms in words. Exit 0 when
    /// healthy, 1 when an alarm holds, 2 when billbox cannot be reached.
    Status {
        /// The metrics listener to ask (`metrics.listen`). Default: the
        /// `metrics.listen` of --config, or 127.0.0.1:9109.
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Take the address from this config's `metrics.listen`.
        #[arg(long, short, conflicts_with = "addr")]
        config: Option<PathBuf>,
        /// Print the status as JSON (what `/status.json` answers).
        #[arg(long)]
        json: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Ask the running billbox to send a range of a port's stored records
    /// again, as ordinary packets with their original ids, to a server or
    /// to the [delivery] servers; prints progress. Stopped (Ctrl-C) and run
    /// again, it resumes where it stopped.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// The port whose records to send.
        #[arg(long)]
        port: String,
        /// The first record: a sequence number, or an RFC 3339 time (the
        /// first record stored at or after it).
        #[arg(long)]
        from: String,
        /// The last record: a sequence number, or an RFC 3339 time (the
        /// last record before it). Default: the port's last record.
        #[arg(long)]
        to: Option<String>,
        /// Send to this server.
        #[arg(
            long,
            conflicts_with = "destination",
            required_unless_present = "destination"
        )]
        url: Option<String>,
        /// Send to a configured destination: `delivery` (primary, then
        /// secondary).
        #[arg(long)]
        destination: Option<String>,
        /// Start over instead of resuming an earlier run of this replay.
        #[arg(long)]
        again: bool,
    },
    /// Print the billbox config of the billing ports (`protocol billing`) of
    /// a Cyclades ACS `pslave.conf`: serial settings, alias, billing_records,
    /// billing_timeout, billing_eor and the files directory; every other key
    /// as a comment. The output passes `billbox validate`.
    ImportAcs {
        /// The ACS's /etc/portslave/pslave.conf.
        file: PathBuf,
        /// `gateway.name` (ACS named files after its hostname when a port has
        /// no alias); `acs` when not given.
        #[arg(long)]
        gateway: Option<String>,
    },
    /// Run the reference billing server: acknowledges billbox packets, files
    /// records per gateway and port, drops duplicates and reports gaps.
    Receive {
        /// Address to listen on, e.g. 0.0.0.0:8080 (port 0 picks a free one).
        #[arg(long)]
        listen: String,
        /// Directory for OUT/<gateway>/<port>.txt (records) and .ids (one line per record), and OUT/transactions/<USG_ID>/<PROPERTY_ID>.txt and .packets (AG transactions).
        #[arg(long)]
        out: PathBuf,
        /// Sync files before acknowledging (turn off only for benchmarks).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        durable: bool,
        /// Check every packet's X-Billbox-Signature with this key (the
        /// `secret_key` of billbox's config, at least 16 bytes): a packet
        /// whose signature is missing or wrong is refused (403, ERROR ack)
        /// and billbox sends it again. Other users of the machine can see
        /// arguments: prefer --secret-key-file.
        #[arg(
            long,
            value_name = "KEY",
            conflicts_with = "secret_key_file",
            value_parser = |text: &str| billbox_config::SecretKey::new(text).map_err(|why| format!("the key {why}")),
        )]
        secret_key: Option<billbox_config::SecretKey>,
        /// Like --secret-key, with the key read from this file (a line
        /// break at its end is not part of the key).
        #[arg(long, value_name = "FILE")]
        secret_key_file: Option<PathBuf>,
        /// Serve HTTPS with this PEM certificate (chain, the server's own
        /// certificate first); needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require clients (billbox) to present a certificate signed by an
        /// authority in this PEM file (mutual TLS); needs --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        client_ca: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to keep the demo's store and files (default: a new temporary directory, kept).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Records each simulated PBX sends.
    #[arg(long, default_value_t = 120)]
    pub records: u64,
}
