//! The validated configuration that the rest of billbox uses.
//!
//! Values of these types built by [`crate::load`] and friends have passed
//! every check listed in `docs/configuration.md`; the fields are public so
//! tests can build them directly.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::raw;
use crate::server_url::ServerUrl;

/// A whole, valid billbox configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[gateway]`: this machine's identity and directories.
    pub gateway: GatewayConfig,
    /// `[store]`: the durable record store.
    pub store: StoreConfig,
    /// `[[ports]]`: the ports to read, in file order; at least one, at most
    /// [`MAX_PORTS`], names unique.
    pub ports: Vec<PortConfig>,
    /// `[delivery]`: where records are forwarded. `None` when the section
    /// is absent: records are captured and filed but not forwarded.
    pub delivery: Option<DeliveryConfig>,
    /// `[[carbon_copy]]`: the mirror servers, in file order; names and
    /// URLs unique among them. Empty when there are none.
    pub carbon_copies: Vec<CarbonCopyConfig>,
    /// `[metrics]`: the monitoring listener and the `/healthz` alarms.
    /// Always present: [`MetricsConfig::default`] when the section is absent.
    pub metrics: MetricsConfig,
    /// `[transactions]`: the submit API and AG relay. `None` when the
    /// section is absent: no transactions are taken in.
    pub transactions: Option<crate::TransactionsConfig>,
}

impl Config {
    /// The port called `name`.
    pub fn port(&self, name: &str) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The carbon copy called `name`.
    pub fn carbon_copy(&self, name: &str) -> Option<&CarbonCopyConfig> {
        self.carbon_copies.iter().find(|c| c.name == name)
    }
}

/// The most ports one configuration may have.
pub const MAX_PORTS: usize = 1024;

/// `[gateway]`: this machine's identity and directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway's name: the prefix of the ACS files of every port that
    /// has no `alias`. 1-64 characters, no `/`, no NUL. Default: the
    /// machine's host name.
    pub name: String,
    /// Where billbox keeps its durable record store. Default `/var/lib/billbox`.
    pub data_dir: PathBuf,
    /// Where finished ACS files are placed for pickup. Default `/var/run/DB`.
    pub spool_dir: PathBuf,
}

/// `[store]`: the durable record store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The store's page cache in MiB, 1 to 4096. Default 8.
    pub cache_mb: u64,
    /// Capacity: the most records stored but not yet acknowledged by the
    /// primary or secondary server, 1 to 1 000 000 000. Default 1 000 000.
    pub max_records: u64,
    /// What happens when `max_records` records await delivery. Default
    /// [`WhenFull::Block`].
    pub when_full: WhenFull,
    /// Free space in MiB that billbox keeps on the file system of
    /// `gateway.data_dir`, 0 to 1 048 576. When less is free, billbox stops
    /// taking new records (the ports are not read; nothing already stored
    /// is touched), logs at ERROR, and resumes by itself when space
    /// returns. 0 means no check. Default 64.
    pub min_free_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_mb: raw::default_cache_mb(),
            max_records: raw::default_max_records(),
            when_full: raw::default_when_full(),
            min_free_mb: raw::default_min_free_mb(),
        }
    }
}

/// `[metrics]`: the monitoring listener (Prometheus `/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Serve the endpoints. Default true.
    pub enabled: bool,
    /// Where to listen. Default 127.0.0.1:9109. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// `/healthz` turns unhealthy when records wait for delivery to the
    /// primary/secondary servers and none has been acknowledged for this long.
    /// Default 10 minutes; 1 second to 7 days.
    pub delivery_alarm: Duration,
    /// `/healthz` turns unhealthy when records waiting in the store reach
    /// this percentage of `store.max_records`. Default 90; 1 to 100.
    pub store_alarm_percent: u8,
}

impl Default for MetricsConfig {
    /// Enabled on 127.0.0.1:9109; alarms after 10 minutes without an
    /// acknowledgement or at 90% of the store's capacity.
    fn default() -> Self {
        MetricsConfig {
            enabled: raw::default_metrics_enabled(),
            listen: raw::default_metrics_listen(),
            delivery_alarm: raw::default_delivery_alarm(),
            store_alarm_percent: raw::default_store_alarm_percent(),
        }
    }
}

/// `store.when_full`: what happens when the store holds `max_records`
/// undelivered records. Written `block` or `drop_oldest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading the ports until space frees; nothing stored is
    /// dropped. The PBX's own buffer (or the TCP window, or RTS/XOFF flow
    /// control) holds the data meanwhile.
    #[default]
    Block,
    /// Keep reading: the oldest undelivered record is given up for
    /// delivery (it is still filed), counted and logged at ERROR.
    DropOldest,
}

/// `[delivery]`: where and how records are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// How the two servers are used. Default [`Method::Failover`].
    pub method: Method,
    /// The primary server. Required. Its [`ServerUrl::security`] holds the
    /// section's `ca_file`, `client_cert`, `client_key` and `secret_key`.
    pub primary: ServerUrl,
    /// The secondary server, different from the primary. Optional. It has
    /// the same security settings as the primary.
    pub secondary: Option<ServerUrl>,
    /// Attempts each server gets in one round, 1 to 100. Default 3.
    /// Failover: attempts on one server before moving to the other
    /// (A-A-B-B). Round robin: every failed attempt moves to the other
    /// server (A-B-A-B), so a round is A-B repeated `attempts` times.
    pub attempts: u32,
    /// Pause after a failed attempt, 0 to 1 hour. Default 5 seconds.
    pub retry_delay: Duration,
    /// The AG's task suspension: after a whole round failed (`attempts`
    /// consecutive failed attempts on each server), no attempt until a new
    /// record is stored or this long has passed, whichever comes first;
    /// then a new round starts with the primary. Records are never given
    /// up. 0 to 1 day; default 0: never suspend (retry every
    /// `retry_delay`).
    pub suspend: Duration,
    /// Time limit of one whole request (connect, send, answer), above 0
    /// and at most 10 minutes. Default 10 seconds.
    pub request_timeout: Duration,
    /// Records per POST, 1 to 10000; 1 sends AG-compatible one-record
    /// packets. Default 1.
    pub batch_max: usize,
    /// Failover: after delivering to the secondary this long, try the
    /// primary again. `None` (configured as 0) means never go back by
    /// itself. Default 5 minutes. Unused with [`Method::RoundRobin`].
    pub failback_after: Option<Duration>,
    /// POSTs awaiting an answer at once, 1 to 64. Default 1, which keeps
    /// the attempt order strict.
    pub max_in_flight: usize,
}

impl DeliveryConfig {
    /// A delivery to `primary` only, every other key at its default.
    pub fn new(primary: ServerUrl) -> Self {
        DeliveryConfig {
            method: raw::default_method(),
            primary,
            secondary: None,
            attempts: raw::default_attempts(),
            retry_delay: raw::default_retry_delay(),
            suspend: raw::default_suspend(),
            request_timeout: raw::default_request_timeout(),
            batch_max: raw::default_batch_max(),
            failback_after: raw::default_failback_after(),
            max_in_flight: raw::default_max_in_flight(),
        }
    }
}

/// `delivery.method`: how the primary (A) and secondary (B) servers are
/// used. Written `failover` or `round_robin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A-A-B-B: `attempts` tries on one server, then `attempts` on the
    /// other, and so on; back to the primary after `failback_after` on
    /// the secondary.
    #[default]
    Failover,
    /// A-B-A-B: switch server after every failed attempt.
    RoundRobin,
}

/// One `[[carbon_copy]]` entry: a server that gets a copy of every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarbonCopyConfig {
    /// The carbon copy's name, unique among carbon copies: 1-64 characters
    /// of `A-Z a-z 0-9 _ . -`. Default `cc1`, `cc2`, ... by position
    /// (counting from 1).
    pub name: String,
    /// The server, with this table's security settings
    /// ([`ServerUrl::security`]).
    pub url: ServerUrl,
    /// `false`: each record is posted once when it arrives and never
    /// retransmitted (as the AG does). `true`: the carbon copy has its own
    /// durable cursor and each record is retried until acknowledged.
    /// Default `false`.
    pub reliable: bool,
}

/// One `[[ports]]` entry: a PBX output that billbox reads records from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The port's name, unique among ports: 1-64 characters of
    /// `A-Z a-z 0-9 _ . -`.
    pub name: String,
    /// Where the bytes come from: a serial device or a TCP connection.
    pub source: PortSource,
    /// Serial line settings. Always present; for TCP ports they are the
    /// defaults (9600 8N1, no flow control) and unused.
    pub serial: SerialSettings,
    /// The prefix of this port's ACS files instead of the gateway name.
    pub alias: Option<String>,
    /// The bytes that end one record (1-16 bytes). Default `\n`.
    pub billing_eor: Vec<u8>,
    /// Records per ACS file. 0 means the port is off. Default 50.
    pub billing_records: u32,
    /// How long a partly filled ACS file may stay open before it is closed
    /// anyway. `None` (configured as 0) means no limit. Default 60 minutes.
    pub billing_timeout: Option<Duration>,
    /// The longest record kept whole, in bytes, `billing_eor` included;
    /// at least `billing_eor.len()`, at most 16 MiB. Default 4096.
    pub max_record_bytes: usize,
    /// The cap of the backoff between attempts to reopen the device or
    /// reconnect; above zero, at most one hour. Default 30 seconds.
    pub reconnect_max: Duration,
    /// `/healthz` turns unhealthy when the port has committed no record
    /// for longer than this; 1 second to 30 days. Default `None`: no alarm
    /// (many PBXes are quiet at night).
    pub quiet_alarm: Option<Duration>,
}

impl PortConfig {
    /// Whether the port collects records (`billing_records` above 0).
    pub fn enabled(&self) -> bool {
        self.billing_records > 0
    }

    /// The prefix of this port's ACS files: its `alias`, or else `gateway`,
    /// the gateway's name.
    pub fn file_prefix<'a>(&'a self, gateway: &'a str) -> &'a str {
        self.alias.as_deref().unwrap_or(gateway)
    }
}

/// Where a port's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortSource {
    /// `device = "/dev/ttyUSB0"`: a serial line.
    Serial {
        /// The device path.
        device: PathBuf,
    },
    /// `listen = "0.0.0.0:5101"`: billbox listens and the PBX connects.
    Listen {
        /// The local address, as written; it parses as a `SocketAddr`.
        addr: String,
    },
    /// `connect = "10.1.2.3:1752"`: billbox connects to the PBX.
    Connect {
        /// `host:port` as written: a non-empty host name or address
        /// (IPv6 in brackets) and a port from 1 to 65535.
        addr: String,
    },
}

impl PortSource {
    /// Whether this is a serial line.
    pub fn is_serial(&self) -> bool {
        matches!(self, PortSource::Serial { .. })
    }
}

impl fmt::Display for PortSource {
    /// `device /dev/ttyUSB0`, `listen 0.0.0.0:5101` or `connect host:1752`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSource::Serial { device } => write!(f, "device {}", device.display()),
            PortSource::Listen { addr } => write!(f, "listen {addr}"),
            PortSource::Connect { addr } => write!(f, "connect {addr}"),
        }
    }
}

/// Serial line settings of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SerialSettings {
    /// Line speed in baud, 50 to 4000000. Default 9600.
    pub speed: u32,
    /// Data bits per character, 5 to 8. Default 8.
    pub data_bits: u8,
    /// Parity. Default none.
    pub parity: Parity,
    /// Stop bits, 1 or 2. Default 1.
    pub stop_bits: u8,
    /// Flow control. Default none.
    pub flow: Flow,
}

impl Default for SerialSettings {
    /// 9600 baud, 8 data bits, no parity, 1 stop bit, no flow control.
    fn default() -> Self {
        SerialSettings {
            speed: raw::default_speed(),
            data_bits: raw::default_data_bits(),
            parity: Parity::None,
            stop_bits: raw::default_stop_bits(),
            flow: Flow::None,
        }
    }
}

/// Serial parity. Written in lower case: `none`, `odd`, `even`, `mark`, `space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
    /// The parity bit is always 1.
    Mark,
    /// The parity bit is always 0.
    Space,
}

/// Serial flow control. Written in lower case: `none`, `hardware`, `software`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// No flow control.
    #[default]
    None,
    /// RTS/CTS.
    Hardware,
    /// XON/XOFF.
    Software,
}

/// A word that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a {what}; use {choices}")]
pub struct UnknownName {
    given: String,
    what: &'static str,
    choices: &'static str,
}

impl Parity {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Parity::None => "none",
            Parity::Odd => "odd",
            Parity::Even => "even",
            Parity::Mark => "mark",
            Parity::Space => "space",
        }
    }
}

impl FromStr for Parity {
    type Err = UnknownName;

    /// Exactly the lower-case names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Parity::None),
            "odd" => Ok(Parity::Odd),
            "even" => Ok(Parity::Even),
            "mark" => Ok(Parity::Mark),
            "space" => Ok(Parity::Space),
            _ => Err(UnknownName {
                given: s.to_string(),
                what: "parity",
                choices: "none, odd, even, mark or space",
            }),
        }
    }
}

impl fmt::Display for Parity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Flow {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::None => "none",
            Flow::Hardware => "hardware",
            Flow::Software => "software",
        }
    }
}

impl FromStr for Flow {
    type Err = UnknownName;

    /// Exactly the lower-case names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Flow::None),
            "hardware" => Ok(Flow::Hardware),
            "software" => Ok(Flow::Software),
            _ => Err(UnknownName {
                given: s.to_string(),
                what: "flow control",
                choices: "none, hardware or software",
            }),
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Method {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Failover => "failover",
            Method::RoundRobin => "round_robin",
        }
    }
}

impl FromStr for Method {
    type Err = UnknownName;

    /// Exactly the lower-case names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "failover" => Ok(Method::Failover),
            "round_robin" => Ok(Method::RoundRobin),
            _ => Err(UnknownName {
                given: s.to_string(),
                what: "delivery method",
                choices: "failover or round_robin",
            }),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WhenFull {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropOldest => "drop_oldest",
        }
    }
}

impl FromStr for WhenFull {
    type Err = UnknownName;

    /// Exactly the lower-case names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(WhenFull::Block),
            "drop_oldest" => Ok(WhenFull::DropOldest),
            _ => Err(UnknownName {
                given: s.to_string(),
                what: "when_full policy",
                choices: "block or drop_oldest",
            }),
        }
    }
}

impl fmt::Display for WhenFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
