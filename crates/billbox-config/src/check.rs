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
    CarbonCopyConfig, Config, DeliveryConfig, Flow, GatewayConfig, Method, MetricsConfig, Parity,
    PortConfig, PortSource, SerialSettings, StoreConfig, WhenFull, MAX_PORTS,
};
use crate::raw::{
    self, Bool, DurationValue, Int, RawCarbonCopy, RawDelivery, RawGateway, RawMetrics, RawPort,
    RawRoot, RawStore, SecretText, Text,
};
use crate::section::{expect_array, expect_table, join, read_table, Broken};
use crate::security::{SecretKey, ServerSecurity, TlsFiles};
use crate::server_url::ServerUrl;
use crate::transactions::{RawTransactions, TransactionsConfig};

/// The transaction streams must not share a listener or file names with
/// the ports and the metrics listener.
fn check_transactions_against(
    t: &TransactionsConfig,
    gateway: &GatewayConfig,
    ports: &[PortConfig],
    metrics: &MetricsConfig,
    problems: &mut Problems,
) {
    let listen = t.listen;
    if listen.port() != 0 {
        if metrics.enabled && metrics.listen == listen {
            problems.push(Problem::new(
                "transactions.listen",
                format!("{listen} is also metrics.listen; give the submit API another address"),
            ));
        }
        for (i, p) in ports.iter().enumerate() {
            if matches!(&p.source, PortSource::Listen { addr } if addr.parse::<SocketAddr>().ok() == Some(listen))
            {
                problems.push(Problem::new(
                    "transactions.listen",
                    format!("{listen} is also the listen address of ports[{i}]; give the submit API another address"),
                ));
            }
        }
    }
    for (key, prefix) in [("alias", &t.alias), ("relay_alias", &t.relay_alias)] {
        if let Some(i) = ports
            .iter()
            .position(|p| p.file_prefix(&gateway.name) == prefix.as_str())
        {
            problems.push(Problem::new(
                join("transactions", key),
                format!("{prefix:?} is also the file prefix of ports[{i}]; their files would mix"),
            ));
        }
    }
}

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
/// The largest `store.max_records`.
const MAX_RECORDS: i64 = 1_000_000_000;
/// The largest `store.min_free_mb`: 1 TiB.
const MAX_MIN_FREE_MB: i64 = 1_048_576;
/// The largest `delivery.attempts`.
const MAX_ATTEMPTS: i64 = 100;
/// The largest `delivery.retry_delay`.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60 * 60);
/// The largest `delivery.suspend`.
const MAX_SUSPEND: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest `delivery.request_timeout`.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The largest `delivery.batch_max`.
const MAX_BATCH: i64 = 10_000;
/// The largest `delivery.failback_after` (other than 0, never).
const MAX_FAILBACK: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The largest `delivery.max_in_flight`.
const MAX_IN_FLIGHT: i64 = 64;
/// The shortest `metrics.delivery_alarm` and `quiet_alarm`.
const MIN_ALARM: Duration = Duration::from_secs(1);
/// The longest `metrics.delivery_alarm`.
const MAX_DELIVERY_ALARM: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest `quiet_alarm`.
const MAX_QUIET_ALARM: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// An example server URL for messages.
const URL_EXAMPLE: &str = "\"http://billing-a:8080/billing\"";

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

    // A gateway that only takes transactions needs no port.
    let (ports, port_identities) = check_ports(root.ports, root.transactions.is_some(), problems);

    let delivery = root.delivery.and_then(|v| {
        let table = expect_table("delivery", v, "a [delivery] table", problems)?;
        let (raw, broken) = read_table::<RawDelivery>("delivery", table, problems);
        DeliveryConfig::check(raw, &broken, problems)
    });

    let carbon_copies = check_carbon_copies(root.carbon_copy, problems);

    let metrics = match root.metrics {
        Some(v) => expect_table("metrics", v, "a [metrics] table", problems)
            .map(|t| read_table::<RawMetrics>("metrics", t, problems))
            .unwrap_or_default(),
        None => Default::default(),
    };
    let metrics = MetricsConfig::check(metrics.0, &port_identities, problems);

    let transactions = root.transactions.and_then(|v| {
        let table = expect_table("transactions", v, "a [transactions] table", problems)?;
        let (raw, broken) = read_table::<RawTransactions>("transactions", table, problems);
        let t = TransactionsConfig::check(raw, &broken, &gateway.name, problems)?;
        check_transactions_against(&t, &gateway, &ports, &metrics, problems);
        Some(t)
    });

    if problems.is_empty() {
        Some(Config {
            gateway,
            store,
            ports,
            delivery,
            carbon_copies,
            metrics,
            transactions,
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

pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        Err("must not be empty".to_string())
    } else if path.contains('\0') {
        Err(format!("{path:?} contains a NUL character"))
    } else {
        Ok(())
    }
}

/// The rules of `gateway.name` and `alias`: they start file names.
pub(crate) fn check_label(name: &str) -> Result<(), String> {
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
        let max_records = check_int(
            "store.max_records",
            raw.max_records,
            1..=MAX_RECORDS,
            "records",
            problems,
        )
        .map_or_else(raw::default_max_records, |n| n as u64);
        let when_full = check_name::<WhenFull>("store.when_full", raw.when_full, problems)
            .unwrap_or_else(raw::default_when_full);
        let min_free_mb = match raw.min_free_mb {
            Some(Int(n)) if (0..=MAX_MIN_FREE_MB).contains(&n) => n as u64,
            Some(Int(n)) => {
                problems.push(Problem::new(
                    "store.min_free_mb",
                    format!("{n} is out of range; use 0 to {MAX_MIN_FREE_MB} (MiB)"),
                ));
                raw::default_min_free_mb()
            }
            None => raw::default_min_free_mb(),
        };
        StoreConfig {
            cache_mb,
            max_records,
            when_full,
            min_free_mb,
        }
    }
}

/// A whole number in `range`, or `None` (with a problem at `key` when it
/// was given but is out of range). `unit` follows the range in the message.
fn check_int(
    key: &str,
    value: Option<Int>,
    range: std::ops::RangeInclusive<i64>,
    unit: &str,
    problems: &mut Problems,
) -> Option<i64> {
    let Int(n) = value?;
    if range.contains(&n) {
        Some(n)
    } else {
        problems.push(Problem::new(
            key,
            format!(
                "{n} is out of range; use {} to {} ({unit})",
                range.start(),
                range.end()
            ),
        ));
        None
    }
}

/// One of an enum's names, or `None` (with a problem at `key` when a word
/// was given that is not one of them).
fn check_name<T>(key: &str, value: Option<Text>, problems: &mut Problems) -> Option<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let Text(text) = value?;
    text.parse::<T>()
        .map_err(|e| problems.push(Problem::new(key, e.to_string())))
        .ok()
}

/// A duration from `min` to `max` (bare numbers in seconds), or `None`
/// (with a problem at `key` when it was given but is not valid). `zero`
/// is the message for a 0, or `None` when 0 is a valid value.
pub(crate) fn check_seconds(
    key: &str,
    value: Option<&DurationValue>,
    min: Duration,
    max: Duration,
    zero: Option<&str>,
    problems: &mut Problems,
) -> Option<Duration> {
    match parse_duration(value?, BareUnit::Seconds) {
        Ok(d) if d.is_zero() => match zero {
            Some(why) => {
                problems.push(Problem::new(key, why));
                None
            }
            None => Some(d),
        },
        Ok(d) if d < min => {
            problems.push(Problem::new(
                key,
                format!("{} is too short; at least {}", show(d), show(min)),
            ));
            None
        }
        Ok(d) if d > max => {
            problems.push(Problem::new(
                key,
                format!("{} is too long; at most {}", show(d), show(max)),
            ));
            None
        }
        Ok(d) => Some(d),
        Err(why) => {
            problems.push(Problem::new(key, why));
            None
        }
    }
}

/// A server URL, or `None` (with a problem at `key` when it was given but
/// is not valid).
fn check_url(key: &str, value: Option<Text>, problems: &mut Problems) -> Option<ServerUrl> {
    let Text(text) = value?;
    text.parse::<ServerUrl>()
        .map_err(|e| problems.push(Problem::new(key, e.to_string())))
        .ok()
}

/// The security keys of one server table, as written.
struct RawSecurity {
    ca_file: Option<Text>,
    client_cert: Option<Text>,
    client_key: Option<Text>,
    secret_key: Option<SecretText>,
    secret_key_file: Option<Text>,
}

/// Checks the security keys of the table at `section` (`delivery`,
/// `carbon_copy[0]`) and reads their files. `https` says whether a server
/// of the table is `https://` (`None` when its URLs were rejected: the
/// TLS keys are then not checked against it). `None` when something was
/// wrong (the problem is recorded).
fn check_security(
    section: &str,
    raw: RawSecurity,
    https: Option<bool>,
    problems: &mut Problems,
) -> Option<ServerSecurity> {
    let before = problems.len();
    let path = |field: &str, value: Option<Text>, problems: &mut Problems| {
        let Text(text) = value?;
        match check_path(&text) {
            Ok(()) => Some(PathBuf::from(text)),
            Err(why) => {
                problems.push(Problem::new(join(section, field), why));
                None
            }
        }
    };
    let given = [
        ("ca_file", raw.ca_file.is_some()),
        ("client_cert", raw.client_cert.is_some()),
        ("client_key", raw.client_key.is_some()),
    ];
    let tls = TlsFiles {
        ca_file: path("ca_file", raw.ca_file, problems),
        client_cert: path("client_cert", raw.client_cert, problems),
        client_key: path("client_key", raw.client_key, problems),
    };
    let tls_checked = problems.len() == before;
    if https == Some(false) {
        for (field, _) in given.iter().filter(|(_, g)| *g) {
            problems.push(Problem::new(
                join(section, field),
                format!(
                    "only https:// servers use TLS, and {}; use an https:// URL or remove {field}",
                    if section == "delivery" {
                        "no server of [delivery] is https://"
                    } else {
                        "the url is http://"
                    }
                ),
            ));
        }
    }

    let secret_key = match (raw.secret_key, raw.secret_key_file) {
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                join(section, "secret_key_file"),
                "give secret_key or secret_key_file, not both",
            ));
            None
        }
        (Some(SecretText(text)), None) => SecretKey::new(&text)
            .map_err(|why| problems.push(Problem::new(join(section, "secret_key"), why)))
            .ok(),
        (None, Some(Text(file))) => match check_path(&file) {
            Ok(()) => SecretKey::from_file(std::path::Path::new(&file))
                .map_err(|why| problems.push(Problem::new(join(section, "secret_key_file"), why)))
                .ok(),
            Err(why) => {
                problems.push(Problem::new(join(section, "secret_key_file"), why));
                None
            }
        },
        (None, None) => None,
    };

    // The files are read (and their problems reported) for https servers
    // only, whatever else is wrong.
    let tls = if tls_checked && https == Some(true) {
        tls
    } else {
        TlsFiles::default()
    };
    let security = ServerSecurity::new(tls, None)
        .map_err(|(field, why)| problems.push(Problem::new(join(section, field), why)))
        .ok();
    if problems.len() != before {
        return None;
    }
    let mut security = security?;
    security.secret_key = secret_key;
    Some(security)
}

impl DeliveryConfig {
    /// Checks `[delivery]`; `None` when a value was rejected (the problem
    /// is recorded).
    fn check(raw: RawDelivery, broken: &Broken, problems: &mut Problems) -> Option<DeliveryConfig> {
        let before = problems.len();

        let method = check_name::<Method>("delivery.method", raw.method, problems)
            .unwrap_or_else(raw::default_method);

        let primary = match raw.primary {
            Some(text) => check_url("delivery.primary", Some(text), problems),
            None => {
                if !broken.contains("primary") {
                    problems.push(Problem::new(
                        "delivery.primary",
                        format!(
                            "missing; [delivery] needs a primary server, e.g. primary = {URL_EXAMPLE}"
                        ),
                    ));
                }
                None
            }
        };
        let secondary_given = raw.secondary.is_some();
        let secondary = check_url("delivery.secondary", raw.secondary, problems);
        if let (Some(primary), Some(secondary)) = (&primary, &secondary) {
            if primary.same_target(secondary) {
                problems.push(Problem::new(
                    "delivery.secondary",
                    format!(
                        "{:?} is the same server as primary; give another server or leave secondary out",
                        secondary.as_str()
                    ),
                ));
            }
        }

        // With round_robin the failover-only key would be silently unused.
        // (A value of the wrong type is already reported.) `attempts` is
        // taken by both methods: the attempts each server gets in a round.
        let failover_only = |k: &str, present: bool, problems: &mut Problems| {
            let refused = method == Method::RoundRobin && present;
            if refused {
                problems.push(Problem::new(
                    join("delivery", k),
                    format!(
                        "only method = \"failover\" takes {k}; round_robin moves to the \
                         other server after every failed attempt"
                    ),
                ));
            }
            !refused
        };
        let attempts = check_int(
            "delivery.attempts",
            raw.attempts,
            1..=MAX_ATTEMPTS,
            "attempts on one server",
            problems,
        );
        let retry_delay = check_seconds(
            "delivery.retry_delay",
            raw.retry_delay.as_ref(),
            Duration::ZERO,
            MAX_RETRY_DELAY,
            None,
            problems,
        );
        let suspend = check_seconds(
            "delivery.suspend",
            raw.suspend.as_ref(),
            Duration::ZERO,
            MAX_SUSPEND,
            None,
            problems,
        );
        let request_timeout = check_seconds(
            "delivery.request_timeout",
            raw.request_timeout.as_ref(),
            Duration::ZERO,
            MAX_REQUEST_TIMEOUT,
            Some("must be greater than 0"),
            problems,
        );
        let batch_max = check_int(
            "delivery.batch_max",
            raw.batch_max,
            1..=MAX_BATCH,
            "records per POST",
            problems,
        );
        let failback_after =
            if failover_only("failback_after", raw.failback_after.is_some(), problems) {
                check_seconds(
                    "delivery.failback_after",
                    raw.failback_after.as_ref(),
                    Duration::ZERO,
                    MAX_FAILBACK,
                    None,
                    problems,
                )
                .map(|d| Some(d).filter(|d| !d.is_zero()))
            } else {
                None
            };
        let max_in_flight = check_int(
            "delivery.max_in_flight",
            raw.max_in_flight,
            1..=MAX_IN_FLIGHT,
            "POSTs awaiting an answer",
            problems,
        );

        // Whether a server is https, when that is known.
        let https = match (&primary, &secondary) {
            (Some(p), Some(s)) => Some(p.is_https() || s.is_https()),
            (Some(p), None) if !secondary_given || p.is_https() => Some(p.is_https()),
            _ => None,
        };
        let security = check_security(
            "delivery",
            RawSecurity {
                ca_file: raw.ca_file,
                client_cert: raw.client_cert,
                client_key: raw.client_key,
                secret_key: raw.secret_key,
                secret_key_file: raw.secret_key_file,
            },
            https,
            problems,
        );

        if problems.len() != before || !broken.is_empty() {
            return None;
        }
        let security = security?;
        Some(DeliveryConfig {
            method,
            primary: primary?.with_security(security.clone()),
            secondary: secondary.map(|s| s.with_security(security)),
            attempts: attempts.map_or_else(raw::default_attempts, |n| n as u32),
            retry_delay: retry_delay.unwrap_or_else(raw::default_retry_delay),
            suspend: suspend.unwrap_or_else(raw::default_suspend),
            request_timeout: request_timeout.unwrap_or_else(raw::default_request_timeout),
            batch_max: batch_max.map_or_else(raw::default_batch_max, |n| n as usize),
            failback_after: failback_after.unwrap_or_else(raw::default_failback_after),
            max_in_flight: max_in_flight.map_or_else(raw::default_max_in_flight, |n| n as usize),
        })
    }
}

impl MetricsConfig {
    /// Checks `[metrics]`; rejected values fall back to their defaults (the
    /// problem is recorded). `ports` are the ports' identities, whose
    /// listen addresses the metrics listener must not take.
    fn check(raw: RawMetrics, ports: &[Identity], problems: &mut Problems) -> MetricsConfig {
        let enabled = raw
            .enabled
            .map_or_else(raw::default_metrics_enabled, |Bool(b)| b);
        let listen = match raw.listen {
            Some(Text(addr)) => match addr.parse::<SocketAddr>() {
                Ok(parsed) => Some(parsed),
                Err(_) => {
                    problems.push(Problem::new(
                        "metrics.listen",
                        format!(
                            "{addr:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:9109\""
                        ),
                    ));
                    None
                }
            },
            None => Some(raw::default_metrics_listen()),
        };
        // Port 0 asks for any free port, which never clashes.
        if let Some(addr) = listen.filter(|a| enabled && a.port() != 0) {
            if let Some(index) = ports.iter().position(|p| p.listen == Some(addr)) {
                problems.push(Problem::new(
                    "metrics.listen",
                    format!(
                        "{addr} is also the listen address of ports[{index}]; \
                         give the metrics listener another address"
                    ),
                ));
            }
        }
        let delivery_alarm = check_seconds(
            "metrics.delivery_alarm",
            raw.delivery_alarm.as_ref(),
            MIN_ALARM,
            MAX_DELIVERY_ALARM,
            Some("must be greater than 0"),
            problems,
        );
        let store_alarm_percent = check_int(
            "metrics.store_alarm_percent",
            raw.store_alarm_percent,
            1..=100,
            "percent of store.max_records",
            problems,
        );
        MetricsConfig {
            enabled,
            listen: listen.unwrap_or_else(raw::default_metrics_listen),
            delivery_alarm: delivery_alarm.unwrap_or_else(raw::default_delivery_alarm),
            store_alarm_percent: store_alarm_percent
                .map_or_else(raw::default_store_alarm_percent, |n| n as u8),
        }
    }
}

/// What the checks between carbon copies compare.
struct CopyIdentity {
    /// The name, given or default, when it follows the rules.
    name: Option<String>,
    /// Whether `name` is the default (`cc1`, ...), for messages.
    default_name: bool,
    url: Option<ServerUrl>,
}

fn check_carbon_copies(copies: Option<Value>, problems: &mut Problems) -> Vec<CarbonCopyConfig> {
    let Some(copies) = copies else {
        return Vec::new();
    };
    let Some(copies) = expect_array("carbon_copy", copies, "[[carbon_copy]] tables", problems)
    else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(copies.len());
    let mut identities = Vec::with_capacity(copies.len());
    for (index, value) in copies.into_iter().enumerate() {
        let key = format!("carbon_copy[{index}]");
        let Some(table) = expect_table(&key, value, "a [[carbon_copy]] table", problems) else {
            identities.push(CopyIdentity {
                name: None,
                default_name: false,
                url: None,
            });
            continue;
        };
        let (raw, broken) = read_table::<RawCarbonCopy>(&key, table, problems);
        let (copy, identity) = CarbonCopyConfig::check(&key, index, raw, &broken, problems);
        out.extend(copy);
        identities.push(identity);
    }
    check_unique_copies(&identities, problems);
    out
}

impl CarbonCopyConfig {
    /// Checks the carbon copy at `key` (`carbon_copy[2]`), the `index`th
    /// `[[carbon_copy]]` table.
    fn check(
        key: &str,
        index: usize,
        raw: RawCarbonCopy,
        broken: &Broken,
        problems: &mut Problems,
    ) -> (Option<CarbonCopyConfig>, CopyIdentity) {
        let before = problems.len();
        let at = |field: &str| join(key, field);
        let mut identity = CopyIdentity {
            name: None,
            default_name: false,
            url: None,
        };

        let name = match raw.name {
            Some(Text(name)) => {
                match check_port_name(&name) {
                    Ok(()) => identity.name = Some(name.clone()),
                    Err(why) => problems.push(Problem::new(at("name"), why)),
                }
                name
            }
            None if broken.contains("name") => String::new(),
            None => {
                let name = raw::default_carbon_copy_name(index);
                identity.name = Some(name.clone());
                identity.default_name = true;
                name
            }
        };

        let url = match raw.url {
            Some(text) => check_url(&at("url"), Some(text), problems),
            None => {
                if !broken.contains("url") {
                    problems.push(Problem::new(
                        at("url"),
                        format!("missing; every carbon copy needs a url, e.g. url = {URL_EXAMPLE}"),
                    ));
                }
                None
            }
        };
        identity.url = url.clone();

        let reliable = raw.reliable.map_or_else(raw::default_reliable, |Bool(b)| b);

        let security = check_security(
            key,
            RawSecurity {
                ca_file: raw.ca_file,
                client_cert: raw.client_cert,
                client_key: raw.client_key,
                secret_key: raw.secret_key,
                secret_key_file: raw.secret_key_file,
            },
            url.as_ref().map(ServerUrl::is_https),
            problems,
        );

        let copy = match (url, security) {
            (Some(url), Some(security)) if problems.len() == before && broken.is_empty() => {
                Some(CarbonCopyConfig {
                    name,
                    url: url.with_security(security),
                    reliable,
                })
            }
            _ => None,
        };
        (copy, identity)
    }
}

/// Carbon copy names (given or default) and URLs must not repeat.
fn check_unique_copies(copies: &[CopyIdentity], problems: &mut Problems) {
    for (index, copy) in copies.iter().enumerate() {
        let earlier = &copies[..index];
        if let Some(name) = &copy.name {
            if let Some((first, other)) = earlier
                .iter()
                .enumerate()
                .find(|(_, c)| c.name.as_ref() == Some(name))
            {
                let whose = |default: bool| if default { "default name" } else { "name" };
                problems.push(Problem::new(
                    format!("carbon_copy[{index}].name"),
                    format!(
                        "{name:?}{} is also the {} of carbon_copy[{first}]; \
                         carbon copy names must be unique",
                        if copy.default_name {
                            " (this carbon copy's default name)"
                        } else {
                            ""
                        },
                        whose(other.default_name),
                    ),
                ));
            }
        }
        if let Some(url) = &copy.url {
            if let Some((first, _)) = earlier
                .iter()
                .enumerate()
                .find(|(_, c)| c.url.as_ref().is_some_and(|other| other.same_target(url)))
            {
                problems.push(Problem::new(
                    format!("carbon_copy[{index}].url"),
                    format!(
                        "{:?} is the same server as carbon_copy[{first}].url; \
                         each carbon copy needs its own server",
                        url.as_str()
                    ),
                ));
            }
        }
    }
}

/// What the checks between ports compare.
#[derive(Default)]
struct Identity {
    name: Option<String>,
    device: Option<PathBuf>,
    listen: Option<SocketAddr>,
}

/// The valid ports, and what the checks between ports (and with
/// `metrics.listen`) compare of every `[[ports]]` table, by index.
fn check_ports(
    ports: Option<Value>,
    transactions: bool,
    problems: &mut Problems,
) -> (Vec<PortConfig>, Vec<Identity>) {
    const NO_PORT: &str =
        "configure at least one port (a [[ports]] table), or take transactions ([transactions])";
    let Some(ports) = ports else {
        if !transactions {
            problems.push(Problem::new("ports", NO_PORT));
        }
        return (Vec::new(), Vec::new());
    };
    let Some(ports) = expect_array("ports", ports, "[[ports]] tables", problems) else {
        return (Vec::new(), Vec::new());
    };
    if ports.is_empty() && !transactions {
        problems.push(Problem::new("ports", NO_PORT));
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
    (out, identities)
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

        let quiet_alarm = check_seconds(
            &at("quiet_alarm"),
            raw.quiet_alarm.as_ref(),
            MIN_ALARM,
            MAX_QUIET_ALARM,
            Some("must be greater than 0; leave quiet_alarm out for no alarm"),
            problems,
        )
        .or_else(raw::default_quiet_alarm);

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
                quiet_alarm,
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
