//! The validated configuration that the rest of billbox uses.
//!
//! Values of these types built by [`crate::load`] and friends have passed
//! every check listed in `docs/configuration.md`; the fields are public so
//! tests can build them directly.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::raw;

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
}

impl Config {
    /// The port called `name`.
    pub fn port(&self, name: &str) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.name == name)
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
    /// The store's page cache in MiB, 1 to 4096. Default 32.
    pub cache_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_mb: raw::default_cache_mb(),
        }
    }
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
