//! Turning the raw tables into the validated [`Config`], collecting every
//! problem on the way.
//!
//! Each public type is built by a constructor here that checks its values
//! and fills defaults. A value that fails is reported and replaced by its
//! default so the remaining checks still run; checks that depend on a
//! value that was rejected (its key is in a [`Broken`] set) are skipped
//! rather than reporting a second, confusing problem.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use config::{Map, Value};

use crate::duration::{parse_duration, show, BareUnit};
use crate::error::Problem;
use crate::escape::decode_escapes;
use crate::model::{
    Config, Flow, GatewayConfig, Parity, PortConfig, PortSource, SerialSettings, StoreConfig,
    MAX_PORTS,
};
use crate::raw::{self, Int, RawGateway, RawPort, RawRoot, RawStore, Text};
use crate::section::{expect_array, expect_table, join, read_table, Broken};

/// The longest gateway name, alias or port name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// The longest `billing_eor`, in bytes after decoding.
const MAX_EOR_BYTES: usize = 16;
const _: () = assert!(
    MAX_EOR_BYTES <= 4096,
    "default max_record_bytes < MAX_EOR_BYTES"
);
/// The largest `max_record_bytes`.
const MAX_RECORD_BYTES: i64 = 16 * 1024 * 1024;
/// The largest `reconnect_max`.
const MAX_RECONNECT: Duration = Duration::from_secs(60 * 60);

/// Problems collected while checking.
pub(crate) type Problems = Vec<Problem>;

/// Checks the whole configuration tree. `None` when anything was wrong,
/// and then `problems` says what.
pub(crate) fn check(root: Map<String, Value>, problems: &mut Problems) -> Option<Config> {
    let (root, _) = read_table::<RawRoot>("", root, problems);

    let gateway = match root.gateway {
        Some(v) => expect_table("gateway", v, "a [gateway] table", problems)
            .map(|t| read_table::<RawGateway>("gateway", t, problems))
            .unwrap_or_default(),
        None => Default::default(),
    };
    let gateway = GatewayConfig::check(gateway.0, &gateway.1, problems);

    let store = match root.store {
        Some(v) => expect_table("store", v, "a [store] table", problems)
            .map(|t| read_table::<RawStore>("store", t, problems))
            .unwrap_or_default(),
        None => Default::default(),
    };
    let store = StoreConfig::check(store.0, &store.1, problems);

    let ports = check_ports(root.ports, problems);

    if problems.is_empty() {
        Some(Config {
            gateway,
            store,
            ports,
        })
    } else {
        None
    }
}

impl GatewayConfig {
    fn check(raw: RawGateway, broken: &Broken, problems: &mut Problems) -> GatewayConfig {
        let name = match raw.name {
            Some(Text(name)) => {
                if let Err(why) = check_label(&name) {
                    problems.push(Problem::new("gateway.name", why));
                }
                name
            }
            None if broken.contains("name") => String::new(),
            None => host_name().unwrap_or_else(|why| {
                problems.push(Problem::new("gateway.name", why));
                String::new()
            }),
        };
        GatewayConfig {
            name,
            data_dir: check_dir(
                "gateway.data_dir",
                raw.data_dir,
                raw::default_data_dir,
                problems,
            ),
            spool_dir: check_dir(
                "gateway.spool_dir",
                raw.spool_dir,
                raw::default_spool_dir,
                problems,
            ),
        }
    }
}

/// The machine's host name as the default gateway name.
fn host_name() -> Result<String, String> {
    let name = hostname::get().map_err(|e| {
        format!("not set, and the machine's host name cannot be read ({e}); set gateway.name")
    })?;
    let name = name.into_string().map_err(|name| {
        format!(
            "not set, and the machine's host name {name:?} is not valid UTF-8; set gateway.name"
        )
    })?;
    check_label(&name).map_err(|why| {
        format!("not set, and the machine's host name cannot be used: {why}; set gateway.name")
    })?;
    Ok(name)
}

fn check_dir(
    key: &str,
    value: Option<Text>,
    default: fn() -> PathBuf,
    problems: &mut Problems,
) -> PathBuf {
    match value {
        Some(Text(dir)) => {
            if let Err(why) = check_path(&dir) {
                problems.push(Problem::new(key, why));
            }
            PathBuf::from(dir)
        }
        None => default(),
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        Err("must not be empty".to_string())
    } else if path.contains('\0') {
        Err(format!("{path:?} contains a NUL character"))
    } else {
        Ok(())
    }
}

/// The rules of `gateway.name` and `alias`: they start file names.
fn check_label(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if name.is_empty() {
        Err("must not be empty".to_string())
    } else if chars > MAX_NAME_CHARS {
        Err(format!(
            "{name:?} is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        ))
    } else if name.contains('/') {
        Err(format!(
            "{name:?} contains `/`; it starts file names, so it cannot contain `/`"
        ))
    } else if name.contains('\0') {
        Err(format!("{name:?} contains a NUL character"))
    } else {
        Ok(())
    }
}

/// The rules of a port's `name`.
fn check_port_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if name.is_empty() {
        Err("must not be empty".to_string())
    } else if chars > MAX_NAME_CHARS {
        Err(format!(
            "{name:?} is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        ))
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Err(format!(
            "{name:?} contains characters other than A-Z, a-z, 0-9, `_`, `.` and `-`"
        ))
    } else {
        Ok(())
    }
}

impl StoreConfig {
    fn check(raw: RawStore, _broken: &Broken, problems: &mut Problems) -> StoreConfig {
        let cache_mb = match raw.cache_mb {
            Some(Int(n)) if (1..=4096).contains(&n) => n as u64,
            Some(Int(n)) => {
                problems.push(Problem::new(
                    "store.cache_mb",
                    format!("{n} is out of range; use 1 to 4096 (MiB)"),
                ));
                raw::default_cache_mb()
            }
            None => raw::default_cache_mb(),
        };
        StoreConfig { cache_mb }
    }
}

/// What the checks between ports compare.
#[derive(Default)]
struct Identity {
    name: Option<String>,
    device: Option<PathBuf>,
    listen: Option<SocketAddr>,
}

fn check_ports(ports: Option<Value>, problems: &mut Problems) -> Vec<PortConfig> {
    let Some(ports) = ports else {
        problems.push(Problem::new(
            "ports",
            "configure at least one port (a [[ports]] table)",
        ));
        return Vec::new();
    };
    let Some(ports) = expect_array("ports", ports, "[[ports]] tables", problems) else {
        return Vec::new();
    };
    if ports.is_empty() {
        problems.push(Problem::new(
            "ports",
            "configure at least one port (a [[ports]] table)",
        ));
    }
    if ports.len() > MAX_PORTS {
        problems.push(Problem::new(
            "ports",
            format!(
                "{} ports are configured; at most {MAX_PORTS} are allowed",
                ports.len()
            ),
        ));
    }

    let mut out = Vec::with_capacity(ports.len());
    let mut identities = Vec::with_capacity(ports.len());
    for (index, value) in ports.into_iter().enumerate() {
        let key = format!("ports[{index}]");
        let Some(table) = expect_table(&key, value, "a [[ports]] table", problems) else {
            identities.push(Identity::default());
            continue;
        };
        let (raw, broken) = read_table::<RawPort>(&key, table, problems);
        let (port, identity) = PortConfig::check(&key, raw, &broken, problems);
        out.extend(port);
        identities.push(identity);
    }
    check_unique(&identities, problems);
    out
}

/// Names, devices and listen addresses must not repeat.
fn check_unique(ports: &[Identity], problems: &mut Problems) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut devices: HashMap<&PathBuf, usize> = HashMap::new();
    let mut listens: HashMap<SocketAddr, usize> = HashMap::new();
    for (index, port) in ports.iter().enumerate() {
        if let Some(name) = &port.name {
            let first = *names.entry(name.as_str()).or_insert(index);
            if first != index {
                problems.push(Problem::new(
                    format!("ports[{index}].name"),
                    format!(
                        "{name:?} is also the name of ports[{first}]; port names must be unique"
                    ),
                ));
            }
        }
        if let Some(device) = &port.device {
            let first = *devices.entry(device).or_insert(index);
            if first != index {
                problems.push(Problem::new(
                    format!("ports[{index}].device"),
                    format!(
                        "{} is also the device of ports[{first}]; a device can be read by one port only",
                        device.display()
                    ),
                ));
            }
        }
        // Port 0 asks for any free port, so several of those never clash.
        if let Some(addr) = port.listen.filter(|a| a.port() != 0) {
            let first = *listens.entry(addr).or_insert(index);
            if first != index {
                problems.push(Problem::new(
                    format!("ports[{index}].listen"),
                    format!(
                        "{addr} is also the listen address of ports[{first}]; \
                         an address can be used by one port only"
                    ),
                ));
            }
        }
    }
}

/// The serial-only keys, for the check that TCP ports have none of them.
const SERIAL_KEYS: [&str; 5] = ["speed", "data_bits", "parity", "stop_bits", "flow"];

impl PortConfig {
    /// Checks the port at `key` (`ports[3]`).
    fn check(
        key: &str,
        mut raw: RawPort,
        broken: &Broken,
        problems: &mut Problems,
    ) -> (Option<PortConfig>, Identity) {
        let before = problems.len();
        let at = |field: &str| join(key, field);
        let mut identity = Identity::default();

        let name = match raw.name.take() {
            Some(Text(name)) => {
                match check_port_name(&name) {
                    Ok(()) => identity.name = Some(name.clone()),
                    Err(why) => problems.push(Problem::new(at("name"), why)),
                }
                name
            }
            None => {
                if !broken.contains("name") {
                    problems.push(Problem::new(at("name"), "missing; every port needs a name"));
                }
                String::new()
            }
        };

        let source = check_source(key, &raw, broken, &mut identity, problems);

        // Judged by the keys given, not by whether their values are valid,
        // so a TCP port with a bad address still has its serial keys flagged.
        let given = |k: &str| broken.contains(k);
        let serial_source = raw.device.is_some() || given("device");
        let tcp_source =
            raw.listen.is_some() || raw.connect.is_some() || given("listen") || given("connect");
        let serial = if tcp_source && !serial_source {
            let present = [
                raw.speed.is_some(),
                raw.data_bits.is_some(),
                raw.parity.is_some(),
                raw.stop_bits.is_some(),
                raw.flow.is_some(),
            ];
            for (_, k) in present.iter().zip(SERIAL_KEYS).filter(|(p, _)| **p) {
                problems.push(Problem::new(
                    at(k),
                    format!("only serial ports (device) take {k}"),
                ));
            }
            SerialSettings::default()
        } else {
            SerialSettings::check(key, &raw, problems)
        };

        let alias = raw.alias.map(|Text(alias)| {
            if let Err(why) = check_label(&alias) {
                problems.push(Problem::new(at("alias"), why));
            }
            alias
        });

        let billing_eor = match raw.billing_eor {
            Some(Text(text)) => match decode_escapes(&text) {
                Ok(bytes) if bytes.is_empty() => {
                    problems.push(Problem::new(
                        at("billing_eor"),
                        "must not be empty; records need an end-of-record string (ACS uses \"\\n\")",
                    ));
                    None
                }
                Ok(bytes) if bytes.len() > MAX_EOR_BYTES => {
                    problems.push(Problem::new(
                        at("billing_eor"),
                        format!(
                            "is {} bytes long after decoding; at most {MAX_EOR_BYTES} are allowed",
                            bytes.len()
                        ),
                    ));
                    None
                }
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    problems.push(Problem::new(at("billing_eor"), e.to_string()));
                    None
                }
            },
            None if broken.contains("billing_eor") => None,
            None => Some(raw::default_billing_eor()),
        };

        let billing_records = match raw.billing_records {
            Some(Int(n)) => u32::try_from(n).unwrap_or_else(|_| {
                let why = if n < 0 {
                    format!(
                        "{n} is negative; use the number of records per file, or 0 to turn the port off"
                    )
                } else {
                    format!("{n} is too large; at most {}", u32::MAX)
                };
                problems.push(Problem::new(at("billing_records"), why));
                0
            }),
            None => raw::default_billing_records(),
        };

        let billing_timeout = match &raw.billing_timeout {
            Some(v) => match parse_duration(v, BareUnit::Minutes) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(why) => {
                    problems.push(Problem::new(at("billing_timeout"), why));
                    None
                }
            },
            None => raw::default_billing_timeout(),
        };

        let max_record_bytes = match raw.max_record_bytes {
            Some(Int(n)) => {
                let eor_len = billing_eor.as_ref().map_or(1, Vec::len);
                if n > MAX_RECORD_BYTES {
                    problems.push(Problem::new(
                        at("max_record_bytes"),
                        format!("{n} is too large; at most {MAX_RECORD_BYTES} (16 MiB)"),
                    ));
                } else if n < eor_len as i64 {
                    let why = if billing_eor.is_some() {
                        format!(
                            "{n} is smaller than billing_eor ({eor_len} byte{}); \
                             a record must hold at least its end-of-record bytes",
                            if eor_len == 1 { "" } else { "s" }
                        )
                    } else {
                        format!("{n} is too small; use at least 1")
                    };
                    problems.push(Problem::new(at("max_record_bytes"), why));
                }
                usize::try_from(n).unwrap_or(0)
            }
            None if broken.contains("max_record_bytes") => 0,
            // The default always holds the longest billing_eor.
            None => raw::default_max_record_bytes(),
        };

        let reconnect_max = match &raw.reconnect_max {
            Some(v) => match parse_duration(v, BareUnit::Seconds) {
                Ok(d) if d.is_zero() => {
                    problems.push(Problem::new(at("reconnect_max"), "must be greater than 0"));
                    d
                }
                Ok(d) if d > MAX_RECONNECT => {
                    problems.push(Problem::new(
                        at("reconnect_max"),
                        format!("{} is too long; at most {}", show(d), show(MAX_RECONNECT)),
                    ));
                    d
                }
                Ok(d) => d,
                Err(why) => {
                    problems.push(Problem::new(at("reconnect_max"), why));
                    Duration::ZERO
                }
            },
            None => raw::default_reconnect_max(),
        };

        let ok = problems.len() == before && broken.is_empty();
        let port = match (ok, source, billing_eor) {
            (true, Some(source), Some(billing_eor)) => Some(PortConfig {
                name,
                source,
                serial,
                alias,
                billing_eor,
                billing_records,
                billing_timeout,
                max_record_bytes,
                reconnect_max,
            }),
            _ => None,
        };
        (port, identity)
    }
}

/// Exactly one of `device`, `listen` and `connect`.
fn check_source(
    key: &str,
    raw: &RawPort,
    broken: &Broken,
    identity: &mut Identity,
    problems: &mut Problems,
) -> Option<PortSource> {
    let given: Vec<&str> = [
        ("device", raw.device.is_some()),
        ("listen", raw.listen.is_some()),
        ("connect", raw.connect.is_some()),
    ]
    .into_iter()
    .filter(|(k, given)| *given || broken.contains(k))
    .map(|(k, _)| k)
    .collect();
    match given.as_slice() {
        [] => {
            problems.push(Problem::new(
                key,
                "no source; set one of device (serial), listen or connect (TCP)",
            ));
            return None;
        }
        [_] => {}
        [first, rest @ ..] => {
            problems.push(Problem::new(
                key,
                format!(
                    "{first} and {} are both set; a port reads from exactly one of device, listen or connect",
                    rest.join(" and ")
                ),
            ));
            return None;
        }
    }
    let at = |field: &str| join(key, field);
    if let Some(Text(device)) = &raw.device {
        if let Err(why) = check_path(device) {
            problems.push(Problem::new(at("device"), why));
            return None;
        }
        let device = PathBuf::from(device);
        identity.device = Some(device.clone());
        return Some(PortSource::Serial { device });
    }
    if let Some(Text(addr)) = &raw.listen {
        return match addr.parse::<SocketAddr>() {
            Ok(parsed) => {
                identity.listen = Some(parsed);
                Some(PortSource::Listen { addr: addr.clone() })
            }
            Err(_) => {
                problems.push(Problem::new(
                    at("listen"),
                    format!(
                        "{addr:?} is not an ip:port address; write e.g. \"0.0.0.0:5101\" or \"[::]:5101\""
                    ),
                ));
                None
            }
        };
    }
    if let Some(Text(addr)) = &raw.connect {
        return match check_host_port(addr) {
            Ok(()) => Some(PortSource::Connect { addr: addr.clone() }),
            Err(why) => {
                problems.push(Problem::new(at("connect"), why));
                None
            }
        };
    }
    None // the given key's value was rejected
}

/// `host:port` with a non-empty host (IPv6 in brackets) and a port 1-65535.
fn check_host_port(addr: &str) -> Result<(), String> {
    let example = "write host:port, e.g. \"10.1.2.3:1752\" or \"pbx.example:1752\"";
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} has no port; {example}"));
    };
    if host.is_empty() {
        return Err(format!("{addr:?} has no host; {example}"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
        if !ok {
            return Err(format!(
                "{addr:?}: {host:?} is not an IPv6 address in brackets"
            ));
        }
    } else if host.contains(':') {
        return Err(format!(
            "{addr:?}: write an IPv6 address in brackets, e.g. \"[fd00::1]:1752\""
        ));
    } else if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '[' | ']'))
    {
        return Err(format!("{addr:?}: {host:?} is not a host name or address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{addr:?}: {port:?} is not a port; use 1 to 65535")),
    }
}

impl SerialSettings {
    /// Checks the serial keys of the port at `key`; rejected values fall
    /// back to their defaults (the problem is recorded).
    fn check(key: &str, raw: &RawPort, problems: &mut Problems) -> SerialSettings {
        let at = |field: &str| join(key, field);
        let mut s = SerialSettings::default();
        if let Some(Int(n)) = raw.speed {
            match u32::try_from(n) {
                Ok(speed) if (50..=4_000_000).contains(&speed) => s.speed = speed,
                _ => problems.push(Problem::new(
                    at("speed"),
                    format!("{n} is not a supported speed; use 50 to 4000000 (baud)"),
                )),
            }
        }
        if let Some(Int(n)) = raw.data_bits {
            match n {
                5..=8 => s.data_bits = n as u8,
                _ => problems.push(Problem::new(
                    at("data_bits"),
                    format!("{n} is not a data bit count; use 5, 6, 7 or 8"),
                )),
            }
        }
        if let Some(Text(text)) = &raw.parity {
            match text.parse::<Parity>() {
                Ok(parity) => s.parity = parity,
                Err(e) => problems.push(Problem::new(at("parity"), e.to_string())),
            }
        }
        if let Some(Int(n)) = raw.stop_bits {
            match n {
                1 | 2 => s.stop_bits = n as u8,
                _ => problems.push(Problem::new(
                    at("stop_bits"),
                    format!("{n} is not a stop bit count; use 1 or 2"),
                )),
            }
        }
        if let Some(Text(text)) = &raw.flow {
            match text.parse::<Flow>() {
                Ok(flow) => s.flow = flow,
                Err(e) => problems.push(Problem::new(at("flow"), e.to_string())),
            }
        }
        s
    }
}
