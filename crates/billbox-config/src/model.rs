//! The validated configuration that the rest of billbox uses, and how each
//! section is read: every key's doc comment (the reference), its default
//! and its bounds stand together here, the defaults and bounds in the
//! section's `read` function next to the struct.
//!
//! The `Default`s are the sections read from an empty table, so a default
//! is written once. Values built by [`crate::load`] and friends have passed
//! every check; the fields are public so tests can build them directly.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Problem;
use crate::escape::decode_escapes;
use crate::feed::TcpFeedConfig;
use crate::read::{check_path, Table, Unit};
use crate::security::ServerSecurity;
use crate::server_url::ServerUrl;
use crate::transactions::TransactionsConfig;

/// The most ports one configuration may have.
pub const MAX_PORTS: usize = 1024;
/// The longest gateway name, alias or port name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// The longest `billing_eor`, in bytes after decoding.
const MAX_EOR_BYTES: usize = 16;
/// The largest `max_record_bytes`.
const MAX_RECORD_BYTES: i64 = 16 * 1024 * 1024;
const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// An example server URL for messages.
const URL_EXAMPLE: &str = "\"http://billing-a:8080/billing\"";

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A whole, valid billbox configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[gateway]`: this machine's identity and directories.
    pub gateway: GatewayConfig,
    /// `[store]`: the durable record store.
    pub store: StoreConfig,
    /// `[[ports]]`: the ports to read, in file order; at most
    /// [`MAX_PORTS`], names unique; at least one unless `[transactions]`
    /// is configured.
    pub ports: Vec<PortConfig>,
    /// `[delivery]`: where records are forwarded. `None` when the section
    /// is absent: records are captured and filed but not forwarded.
    pub delivery: Option<DeliveryConfig>,
    /// `[[carbon_copy]]`: the mirror servers, in file order; names and
    /// URLs unique among them.
    pub carbon_copies: Vec<CarbonCopyConfig>,
    /// `[metrics]`: the monitoring listener and the `/healthz` alarms.
    pub metrics: MetricsConfig,
    /// `[transactions]`: the submit API and AG relay. `None` when the
    /// section is absent: no transactions are taken in.
    pub transactions: Option<TransactionsConfig>,
    /// `[[tcp_feed]]`: raw TCP feeds billing software connects to, in file
    /// order; names and listen addresses unique.
    pub tcp_feeds: Vec<TcpFeedConfig>,
    /// Settings given where they have no effect (a serial setting on a TCP
    /// port, `failback_after` with round robin, ...), one `key: why` each,
    /// in file order: `billbox validate` prints them and `run` logs each
    /// once at WARN. Never a reason not to start.
    pub warnings: Vec<Problem>,
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

    /// Reads the whole tree; `None` when anything was wrong (the problems
    /// are in `t`).
    pub(crate) fn read(t: &mut Table) -> Option<Config> {
        let gateway = t.table("gateway", "a [gateway] table");
        let gateway = match gateway {
            Some(g) => t.read(g, GatewayConfig::read),
            None => GatewayConfig::read(&mut Table::empty()),
        };
        let store = t.table("store", "a [store] table");
        let store = store.map_or_else(StoreConfig::default, |s| t.read(s, StoreConfig::read));
        let transactions_given = t.map_has("transactions");
        let (ports, identities) = read_ports(t, transactions_given);
        let delivery = match t.table("delivery", "a [delivery] table") {
            Some(d) if t.given("delivery") => t.read(d, DeliveryConfig::read),
            _ => None,
        };
        let carbon_copies = read_carbon_copies(t);
        let metrics = t.table("metrics", "a [metrics] table");
        let metrics = metrics.map_or_else(MetricsConfig::default, |m| {
            t.read(m, |m| MetricsConfig::read(m, &identities))
        });
        let transactions = match t.table("transactions", "a [transactions] table") {
            Some(x) if t.given("transactions") => {
                t.read(x, |x| TransactionsConfig::read(x, &gateway.name))
            }
            _ => None,
        };
        if let Some(x) = &transactions {
            x.check_against(t, &gateway, &ports, &metrics);
        }
        let tcp_feeds = read_tcp_feeds(t, &ports, &metrics, transactions.as_ref());
        (t.problem_count() == 0).then_some(Config {
            gateway,
            store,
            ports,
            delivery,
            carbon_copies,
            metrics,
            transactions,
            tcp_feeds,
            warnings: Vec::new(),
        })
    }
}

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

impl GatewayConfig {
    fn read(t: &mut Table) -> GatewayConfig {
        let name = match t.text("name") {
            Some(name) => {
                t.check("name", check_label(&name));
                name
            }
            None if t.given("name") => String::new(),
            None => host_name().unwrap_or_else(|why| {
                t.problem("name", why);
                String::new()
            }),
        };
        GatewayConfig {
            name,
            data_dir: t.path("data_dir").unwrap_or("/var/lib/billbox".into()),
            spool_dir: t.path("spool_dir").unwrap_or("/var/run/DB".into()),
        }
    }
}

/// The machine's host name as the default gateway name.
fn host_name() -> Result<String, String> {
    let fail =
        |why: String| format!("not set, and the machine's host name {why}; set gateway.name");
    let name = hostname::get().map_err(|e| fail(format!("cannot be read ({e})")))?;
    let name = name
        .into_string()
        .map_err(|name| fail(format!("{name:?} is not valid UTF-8")))?;
    check_label(&name).map_err(|why| fail(format!("cannot be used: {why}")))?;
    Ok(name)
}

/// The rules of `gateway.name` and the aliases: they start file names.
pub(crate) fn check_label(name: &str) -> Result<(), String> {
    check_length(name)?;
    if name.contains('/') {
        Err(format!(
            "{name:?} contains `/`; it starts file names, so it cannot contain `/`"
        ))
    } else if name.contains('\0') {
        Err(format!("{name:?} contains a NUL character"))
    } else {
        Ok(())
    }
}

/// The rules of port and carbon copy names.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    check_length(name)?;
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if name.bytes().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} contains characters other than A-Z, a-z, 0-9, `_`, `.` and `-`"
        ))
    }
}

fn check_length(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if name.is_empty() {
        Err("must not be empty".to_string())
    } else if chars > MAX_NAME_CHARS {
        Err(format!(
            "{name:?} is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        ))
    } else {
        Ok(())
    }
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
    /// How long a flush of the store may take before it is taken as
    /// failed, 1 s to 1 h. A failed flush stops billbox (exit 3) and its
    /// next start writes the store again; sled's flush can wait forever
    /// once one of its writes failed. Default 30 s.
    pub flush_timeout: Duration,
    /// How long records are kept after every consumer is done with them
    /// (filed and delivered), for `billbox replay` and TCP feed clients
    /// that come back, 0 to 10 years. 0 (the default): removed once done.
    /// Retained records do not count against `max_records`; when the disk
    /// reserve (`min_free_mb`) is reached they are removed first, oldest
    /// first, before billbox stops taking records.
    pub retain: Duration,
}

impl StoreConfig {
    /// The default of `flush_timeout`.
    pub const DEFAULT_FLUSH_TIMEOUT: Duration = secs(30);

    fn read(t: &mut Table) -> StoreConfig {
        StoreConfig {
            cache_mb: t.num("cache_mb", 8, 1..=4096, "MiB"),
            max_records: t.num("max_records", 1_000_000, 1..=1_000_000_000, "records"),
            when_full: t.word("when_full", WhenFull::Block),
            min_free_mb: t.num("min_free_mb", 64, 0..=1_048_576, "MiB"),
            flush_timeout: t
                .seconds(
                    "flush_timeout",
                    secs(1),
                    secs(HOUR),
                    Some("0 would fail every flush; use at least 1s"),
                )
                .unwrap_or(Self::DEFAULT_FLUSH_TIMEOUT),
            retain: t
                .seconds("retain", secs(1), secs(10 * 366 * DAY), None)
                .unwrap_or(Duration::ZERO),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::read(&mut Table::empty())
    }
}

/// `[metrics]`: the monitoring listener (Prometheus `/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Serve the endpoints. Default true.
    pub enabled: bool,
    /// Where to listen, `IP:PORT` (no host names). Default 127.0.0.1:9109.
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// `/healthz` turns unhealthy when records wait for delivery to the
    /// primary/secondary servers and none has been acknowledged for this long.
    /// Default 10 minutes; 1 second to 7 days.
    pub delivery_alarm: Duration,
    /// `/healthz` turns unhealthy when records waiting in the store reach
    /// this percentage of `store.max_records`. Default 90; 1 to 100.
    pub store_alarm_percent: u8,
}

impl MetricsConfig {
    /// `ports` are the ports' identities, whose listen addresses the
    /// metrics listener must not take.
    fn read(t: &mut Table, ports: &[Identity]) -> MetricsConfig {
        let enabled = t.bool("enabled").unwrap_or(true);
        let default = SocketAddr::from(([127, 0, 0, 1], 9109));
        let listen = match t.text("listen") {
            Some(addr) => addr.parse::<SocketAddr>().ok().or_else(|| {
                let why = "is not an address; write IP:PORT, e.g. \"127.0.0.1:9109\"";
                t.fail("listen", format!("{addr:?} {why}"))
            }),
            None => (!t.given("listen")).then_some(default),
        };
        // Port 0 asks for any free port, which never clashes.
        let port = |a: &SocketAddr| ports.iter().position(|p| p.listen == Some(*a));
        if let Some((addr, i)) = listen
            .filter(|a| enabled && a.port() != 0)
            .and_then(|a| Some((a, port(&a)?)))
        {
            let why = "give the metrics listener another address";
            t.problem(
                "listen",
                format!("{addr} is also the listen address of ports[{i}]; {why}"),
            );
        }
        let listen = listen.unwrap_or(default);
        let gt0 = Some("must be greater than 0");
        MetricsConfig {
            enabled,
            listen,
            delivery_alarm: (t.seconds("delivery_alarm", secs(1), secs(7 * DAY), gt0))
                .unwrap_or(secs(10 * MINUTE)),
            store_alarm_percent: t.num(
                "store_alarm_percent",
                90,
                1..=100,
                "percent of store.max_records",
            ),
        }
    }
}

impl Default for MetricsConfig {
    /// Enabled on 127.0.0.1:9109; alarms after 10 minutes without an
    /// acknowledgement or at 90% of the store's capacity.
    fn default() -> Self {
        MetricsConfig::read(&mut Table::empty(), &[])
    }
}

/// `[delivery]`: where and how records are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// How the two servers are used. Default [`Method::Failover`].
    pub method: Method,
    /// The primary server. Required.
    pub primary: ServerUrl,
    /// The secondary server, not the same as the primary. Optional.
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
    /// primary again; at most 7 days. `None` (configured as 0) means never
    /// go back by itself. Default 5 minutes. Only [`Method::Failover`]
    /// takes it.
    pub failback_after: Option<Duration>,
    /// Packets awaiting an answer on one connection (HTTP/1.1
    /// pipelining), 1 to 1024. Default [`DEFAULT_WINDOW`]. 1: each
    /// connection waits for an answer before it sends the next packet.
    pub window: usize,
    /// Keep-alive connections to the server in use, 1 to 64. Default 4.
    /// Each port always posts on the same one (port *i* on connection
    /// *i* mod `connections`), so its records reach the server in order;
    /// the ports on one connection share its `window`. `max_in_flight` is
    /// this key's older name, still read.
    pub connections: usize,
    /// The section's `ca_file`, `client_cert`, `client_key` and
    /// `secret_key` (or `secret_key_file`), for both servers.
    pub security: ServerSecurity,
}

impl DeliveryConfig {
    /// A delivery to `primary` only, every other key at its default.
    pub fn new(primary: ServerUrl) -> Self {
        let read = DeliveryConfig::read(&mut Table::with(&[("primary", primary.as_str())]));
        DeliveryConfig {
            primary,
            ..read.expect("a valid URL")
        }
    }

    /// `None` when a value was rejected (the problem is recorded).
    fn read(t: &mut Table) -> Option<DeliveryConfig> {
        let method = t.word("method", Method::Failover);
        let primary = t.text("primary");
        if primary.is_none() && !t.given("primary") {
            let why = "missing; [delivery] needs a primary server, e.g. primary =";
            t.missing("primary", format!("{why} {URL_EXAMPLE}"));
        }
        let primary = primary.and_then(|text| read_url(t, "primary", &text));
        let secondary = t.text("secondary");
        let secondary_given = t.accepted("secondary");
        let secondary = secondary.and_then(|text| read_url(t, "secondary", &text));
        if let (Some(p), Some(s)) = (&primary, &secondary) {
            if p.same_target(s) {
                let why =
                    "is the same server as primary; give another server or leave secondary out";
                t.problem("secondary", format!("{:?} {why}", s.as_str()));
            }
        }
        let attempts = t.num("attempts", 3, 1..=100, "attempts on one server");
        let retry_delay = t.seconds("retry_delay", Duration::ZERO, secs(HOUR), None);
        let suspend = t.seconds("suspend", Duration::ZERO, secs(DAY), None);
        let switches_on_attempts = method == Method::Failover && secondary_given;
        if t.accepted("attempts")
            && suspend.unwrap_or(Duration::ZERO).is_zero()
            && !switches_on_attempts
        {
            let why = match secondary_given {
                true => "round_robin moves to the other server after every failed attempt",
                false => "without a secondary every failed attempt is retried on the primary",
            };
            t.warning(
                "attempts",
                format!("has no effect: {why}, and with suspend = 0 no round is counted"),
            );
        }
        let gt0 = Some("must be greater than 0");
        let request_timeout = t.seconds("request_timeout", Duration::ZERO, secs(10 * MINUTE), gt0);
        let batch_max = t.num("batch_max", 1, 1..=10_000, "records per POST");
        if method == Method::RoundRobin {
            t.unused(Some(
                "has no effect: only method = \"failover\" uses {key}; round_robin \
                 moves to the other server after every failed attempt"
                    .to_string(),
            ));
        } else if !secondary_given {
            t.unused(Some(
                "has no effect: {key} says when to go back from the secondary, \
                 and there is no secondary"
                    .to_string(),
            ));
        }
        let failback_after = t.seconds("failback_after", Duration::ZERO, secs(7 * DAY), None);
        t.unused(None);
        let window = t.num(
            "window",
            DEFAULT_WINDOW,
            1..=1024,
            "packets awaiting an answer on one connection",
        );
        let connections = read_connections(t);
        // Whether a server is https, when that is known.
        let https = match (&primary, &secondary) {
            (Some(p), Some(s)) => Some(p.is_https() || s.is_https()),
            (Some(p), None) if !secondary_given || p.is_https() => Some(p.is_https()),
            _ => None,
        };
        let security = ServerSecurity::read(t, https, "no server of [delivery] is https://");
        Some(DeliveryConfig {
            method,
            primary: primary?,
            secondary,
            attempts,
            retry_delay: retry_delay.unwrap_or(secs(5)),
            suspend: suspend.unwrap_or(Duration::ZERO),
            request_timeout: request_timeout.unwrap_or(secs(10)),
            batch_max,
            failback_after: failback_after
                .map_or(Some(secs(5 * MINUTE)), |d| Some(d).filter(|d| !d.is_zero())),
            window,
            connections,
            security: security?,
        })
    }
}

/// The default of `delivery.window` (see docs/configuration.md for why).
pub const DEFAULT_WINDOW: usize = 32;

/// `connections`, or its older name `max_in_flight` (not both).
fn read_connections(t: &mut Table) -> usize {
    const WHAT: &str = "connections to each server";
    let connections = t.num("connections", 4, 1..=64, WHAT);
    let older = t.num("max_in_flight", 4, 1..=64, WHAT);
    match (t.given("connections"), t.given("max_in_flight")) {
        (true, true) => {
            t.problem(
                "max_in_flight",
                "given with connections, its newer name; give connections only",
            );
            connections
        }
        (false, true) => older,
        _ => connections,
    }
}

fn read_url(t: &mut Table, key: &str, text: &str) -> Option<ServerUrl> {
    text.parse()
        .map_err(|e: crate::UrlError| t.problem(key, e.to_string()))
        .ok()
}

/// One `[[carbon_copy]]` entry: a server that gets a copy of every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarbonCopyConfig {
    /// The carbon copy's name, unique among carbon copies: 1-64 characters
    /// of `A-Z a-z 0-9 _ . -`. Default `cc1`, `cc2`, ... by position
    /// (counting from 1).
    pub name: String,
    /// The server, not another carbon copy's. Required.
    pub url: ServerUrl,
    /// `false`: each record is posted once when it arrives and never
    /// retransmitted (as the AG does). `true`: the carbon copy has its own
    /// durable cursor and each record is retried until acknowledged.
    /// Default `false`.
    pub reliable: bool,
    /// This table's `ca_file`, `client_cert`, `client_key` and
    /// `secret_key` (or `secret_key_file`), as in `[delivery]`.
    pub security: ServerSecurity,
}

/// What the checks between carbon copies compare.
#[derive(Default)]
struct CopyIdentity {
    /// The name, given or default, when it follows the rules.
    name: Option<String>,
    /// Whether `name` is the default (`cc1`, ...), for messages.
    default_name: bool,
    url: Option<ServerUrl>,
}

impl CarbonCopyConfig {
    /// The `index`th `[[carbon_copy]]` table.
    fn read(t: &mut Table, index: usize) -> (Option<CarbonCopyConfig>, CopyIdentity) {
        let mut id = CopyIdentity::default();
        let name = match t.text("name") {
            Some(name) => {
                match check_name(&name) {
                    Ok(()) => id.name = Some(name.clone()),
                    Err(why) => t.problem("name", why),
                }
                name
            }
            None if t.given("name") => String::new(),
            None => {
                id.default_name = true;
                id.name = Some(format!("cc{}", index + 1));
                format!("cc{}", index + 1)
            }
        };
        let url = t.text("url");
        if url.is_none() && !t.given("url") {
            let why = "missing; every carbon copy needs a url, e.g. url =";
            t.missing("url", format!("{why} {URL_EXAMPLE}"));
        }
        id.url = url.and_then(|text| read_url(t, "url", &text));
        let reliable = t.bool("reliable").unwrap_or(false);
        let https = id.url.as_ref().map(ServerUrl::is_https);
        let security = ServerSecurity::read(t, https, "the url is http://");
        let copy = match (&id.url, security) {
            (Some(url), Some(security)) => Some(CarbonCopyConfig {
                name,
                url: url.clone(),
                reliable,
                security,
            }),
            _ => None,
        };
        (copy, id)
    }
}

fn read_tcp_feeds(
    t: &mut Table,
    ports: &[PortConfig],
    metrics: &MetricsConfig,
    transactions: Option<&TransactionsConfig>,
) -> Vec<TcpFeedConfig> {
    let names: Vec<String> = ports.iter().map(|p| p.name.clone()).collect();
    let mut feeds: Vec<(usize, TcpFeedConfig)> = Vec::new();
    for (index, value) in t
        .array("tcp_feed", "[[tcp_feed]] tables")
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("tcp_feed[{index}]");
        if let Some(table) = t.child(at, value, "a [[tcp_feed]] table") {
            if let Some(feed) = t.read(table, |f| TcpFeedConfig::read(f, index, &names)) {
                feeds.push((index, feed));
            }
        }
    }
    // Names and addresses must not repeat, nor take another listener's.
    let mut taken: Vec<(SocketAddr, String)> = ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.source {
            PortSource::Listen { addr } => Some((addr.parse().ok()?, format!("ports[{i}].listen"))),
            _ => None,
        })
        .collect();
    if metrics.enabled {
        taken.push((metrics.listen, "metrics.listen".into()));
    }
    if let Some(x) = transactions {
        taken.push((x.listen, "transactions.listen".into()));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (index, feed) in &feeds {
        if seen.contains(&feed.name.as_str()) {
            let why = format!(
                "{:?} is also the name of another feed; feed names must be unique",
                feed.name
            );
            t.problem(&format!("tcp_feed[{index}].name"), why);
        }
        seen.push(&feed.name);
        if feed.listen.port() != 0 {
            if let Some((_, other)) = taken.iter().find(|(a, _)| *a == feed.listen) {
                let why = format!(
                    "{} is also {other}; give the feed an address of its own",
                    feed.listen
                );
                t.problem(&format!("tcp_feed[{index}].listen"), why);
            }
            taken.push((feed.listen, format!("tcp_feed[{index}].listen")));
        }
    }
    feeds.into_iter().map(|(_, f)| f).collect()
}

fn read_carbon_copies(t: &mut Table) -> Vec<CarbonCopyConfig> {
    let copies = t.array("carbon_copy", "[[carbon_copy]] tables");
    let mut out = Vec::new();
    let mut ids: Vec<CopyIdentity> = Vec::new();
    for (index, value) in copies.into_iter().flatten().enumerate() {
        let at = format!("carbon_copy[{index}]");
        let (copy, id) = match t.child(at, value, "a [[carbon_copy]] table") {
            Some(table) => t.read(table, |c| CarbonCopyConfig::read(c, index)),
            None => (None, CopyIdentity::default()),
        };
        out.extend(copy);
        ids.push(id);
    }
    // Names (given or default) and URLs must not repeat.
    for (index, copy) in ids.iter().enumerate() {
        let earlier = ids[..index].iter().enumerate();
        if let Some(name) = &copy.name {
            if let Some((first, other)) =
                earlier.clone().find(|(_, c)| c.name.as_ref() == Some(name))
            {
                let this = match copy.default_name {
                    true => " (this carbon copy's default name)",
                    false => "",
                };
                let whose = match other.default_name {
                    true => "default name",
                    false => "name",
                };
                t.problem(
                    &format!("carbon_copy[{index}].name"),
                    format!(
                        "{name:?}{this} is also the {whose} of carbon_copy[{first}]; \
                         carbon copy names must be unique"
                    ),
                );
            }
        }
        if let Some(url) = &copy.url {
            let same = |(_, c): &(usize, &CopyIdentity)| {
                c.url.as_ref().is_some_and(|o| o.same_target(url))
            };
            if let Some((first, _)) = earlier.clone().find(same) {
                t.problem(
                    &format!("carbon_copy[{index}].url"),
                    format!(
                        "{:?} is the same server as carbon_copy[{first}].url; \
                         each carbon copy needs its own server",
                        url.as_str()
                    ),
                );
            }
        }
    }
    out
}

/// One `[[ports]]` entry: a PBX output that billbox reads records from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The port's name, unique among ports: 1-64 characters of
    /// `A-Z a-z 0-9 _ . -`. Required.
    pub name: String,
    /// Where the bytes come from: exactly one of the keys `device`,
    /// `listen` and `connect`.
    pub source: PortSource,
    /// Serial line settings (serial ports only). Always present; for TCP
    /// ports they are the defaults (9600 8N1, no flow control) and unused.
    pub serial: SerialSettings,
    /// The prefix of this port's ACS files instead of the gateway name,
    /// with the rules of `gateway.name`.
    pub alias: Option<String>,
    /// The bytes that end one record, written with backslash escapes
    /// (`\r \n \t \0 \\ \xNN`); 1-16 bytes. Default `\n`.
    pub billing_eor: Vec<u8>,
    /// Records per ACS file. 0 means the port is off. Default 50.
    pub billing_records: u32,
    /// How long a partly filled ACS file may stay open before it is closed
    /// anyway: a duration, or a whole number of minutes. `None` (configured
    /// as 0) means no limit. Default 60 minutes.
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

    /// `None` when a value was rejected (the problem is recorded).
    fn read(t: &mut Table, id: &mut Identity) -> Option<PortConfig> {
        let before = t.problem_count();
        let name = t.text("name");
        match &name {
            Some(name) => match check_name(name) {
                Ok(()) => id.name = Some(name.clone()),
                Err(why) => t.problem("name", why),
            },
            None if !t.given("name") => t.missing("name", "missing; every port needs a name"),
            None => {}
        }
        let source = read_source(t, id);
        // Judged by the keys given, not by whether their values are valid,
        // so a TCP port with a bad address still has its serial keys flagged.
        if !t.given("device") && (t.given("listen") || t.given("connect")) {
            t.unused(Some(
                "has no effect: only serial ports (device) use {key}, and this port is TCP"
                    .to_string(),
            ));
        }
        let serial = SerialSettings::read(t);
        t.unused(None);
        let alias = t.text("alias");
        if let Some(alias) = &alias {
            t.check("alias", check_label(alias));
        }
        let billing_eor = match t.text("billing_eor").map(|text| decode_escapes(&text)) {
            None if t.given("billing_eor") => None,
            None => Some(b"\n".to_vec()),
            Some(Err(e)) => t.fail("billing_eor", e.to_string()),
            Some(Ok(bytes)) if bytes.is_empty() => {
                t.problem(
                    "billing_eor",
                    "must not be empty; records need an end-of-record string (ACS uses \"\\n\")",
                );
                None
            }
            Some(Ok(bytes)) if bytes.len() > MAX_EOR_BYTES => {
                let why = format!("at most {MAX_EOR_BYTES} are allowed");
                let n = bytes.len();
                t.problem(
                    "billing_eor",
                    format!("is {n} bytes long after decoding; {why}"),
                );
                None
            }
            Some(Ok(bytes)) => Some(bytes),
        };
        let billing_records = t.int("billing_records").map_or(50, |n| {
            u32::try_from(n).unwrap_or_else(|_| {
                let why = match n < 0 {
                    true => {
                        "is negative; use the number of records per file, or 0 to turn the port off"
                            .to_string()
                    }
                    false => format!("is too large; at most {}", u32::MAX),
                };
                t.problem("billing_records", format!("{n} {why}"));
                0
            })
        });
        let billing_timeout = match t.duration("billing_timeout", Unit::Minutes) {
            Some(d) => Some(d).filter(|d| !d.is_zero()),
            None if t.given("billing_timeout") => None,
            None => Some(secs(HOUR)),
        };
        let max_record_bytes = t.int("max_record_bytes").map_or(4096, |n| {
            let eor = billing_eor.as_ref().map_or(1, Vec::len);
            if n > MAX_RECORD_BYTES {
                let why = format!("is too large; at most {MAX_RECORD_BYTES} (16 MiB)");
                t.problem("max_record_bytes", format!("{n} {why}"));
            } else if n < eor as i64 && billing_eor.is_some() {
                let s = if eor == 1 { "" } else { "s" };
                t.problem(
                    "max_record_bytes",
                    format!(
                        "{n} is smaller than billing_eor ({eor} byte{s}); \
                         a record must hold at least its end-of-record bytes"
                    ),
                );
            } else if n < 1 {
                t.problem(
                    "max_record_bytes",
                    format!("{n} is too small; use at least 1"),
                );
            }
            usize::try_from(n).unwrap_or(0)
        });
        let gt0 = Some("must be greater than 0");
        let reconnect_max = t.seconds("reconnect_max", Duration::ZERO, secs(HOUR), gt0);
        let no_alarm = Some("must be greater than 0; leave quiet_alarm out for no alarm");
        let quiet_alarm = t.seconds("quiet_alarm", secs(1), secs(30 * DAY), no_alarm);
        (t.problem_count() == before).then_some(())?;
        Some(PortConfig {
            name: name?,
            source: source?,
            serial,
            alias,
            billing_eor: billing_eor?,
            billing_records,
            billing_timeout,
            max_record_bytes,
            reconnect_max: reconnect_max.unwrap_or(secs(30)),
            quiet_alarm,
        })
    }
}

/// What the checks between ports compare.
#[derive(Default)]
struct Identity {
    name: Option<String>,
    device: Option<PathBuf>,
    listen: Option<SocketAddr>,
}

/// The valid ports, and the identities of all `[[ports]]` tables by index.
fn read_ports(t: &mut Table, transactions: bool) -> (Vec<PortConfig>, Vec<Identity>) {
    const NO_PORT: &str =
        "configure at least one port (a [[ports]] table), or take transactions ([transactions])";
    let given = t.map_has("ports");
    let ports = t.array("ports", "[[ports]] tables");
    if ports.as_ref().map_or(!given, Vec::is_empty) && !transactions {
        t.problem("ports", NO_PORT);
    }
    let ports = ports.unwrap_or_default();
    if ports.len() > MAX_PORTS {
        let n = ports.len();
        t.problem(
            "ports",
            format!("{n} ports are configured; at most {MAX_PORTS} are allowed"),
        );
    }
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for (index, value) in ports.into_iter().enumerate() {
        let mut id = Identity::default();
        if let Some(table) = t.child(format!("ports[{index}]"), value, "a [[ports]] table") {
            out.extend(t.read(table, |p| PortConfig::read(p, &mut id)));
        }
        ids.push(id);
    }
    // Names, devices and listen addresses must not repeat.
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut devices: HashMap<&PathBuf, usize> = HashMap::new();
    let mut listens: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(name) = &id.name {
            let first = *names.entry(name).or_insert(i);
            if first != i {
                let why = "port names must be unique";
                let message = format!("{name:?} is also the name of ports[{first}]; {why}");
                t.problem(&format!("ports[{i}].name"), message);
            }
        }
        if let Some(device) = &id.device {
            let first = *devices.entry(device).or_insert(i);
            if first != i {
                let why = "a device can be read by one port only";
                let d = device.display();
                let message = format!("{d} is also the device of ports[{first}]; {why}");
                t.problem(&format!("ports[{i}].device"), message);
            }
        }
        // Port 0 asks for any free port, so several of those never clash.
        if let Some(addr) = id.listen.filter(|a| a.port() != 0) {
            let first = *listens.entry(addr).or_insert(i);
            if first != i {
                let why = "an address can be used by one port only";
                let message = format!("{addr} is also the listen address of ports[{first}]; {why}");
                t.problem(&format!("ports[{i}].listen"), message);
            }
        }
    }
    (out, ids)
}

/// Exactly one of `device`, `listen` and `connect`.
fn read_source(t: &mut Table, id: &mut Identity) -> Option<PortSource> {
    let device = t.text("device");
    let listen = t.text("listen");
    let connect = t.text("connect");
    let given: Vec<&str> = ["device", "listen", "connect"]
        .into_iter()
        .filter(|k| t.given(k))
        .collect();
    match given.as_slice() {
        [] => {
            let why = "no source; set one of device (serial), listen or connect (TCP)";
            t.problem("", why);
            return None;
        }
        [_] => {}
        [first, rest @ ..] => {
            t.problem(
                "",
                format!(
                    "{first} and {} are both set; a port reads from exactly one of \
                     device, listen or connect",
                    rest.join(" and ")
                ),
            );
            return None;
        }
    }
    if let Some(device) = device {
        if let Err(why) = check_path(&device) {
            t.problem("device", why);
            return None;
        }
        id.device = Some(PathBuf::from(&device));
        return Some(PortSource::Serial {
            device: device.into(),
        });
    }
    if let Some(addr) = listen {
        let Ok(parsed) = addr.parse::<SocketAddr>() else {
            let why = "is not an ip:port address; write e.g. \"0.0.0.0:5101\" or \"[::]:5101\"";
            t.problem("listen", format!("{addr:?} {why}"));
            return None;
        };
        id.listen = Some(parsed);
        return Some(PortSource::Listen { addr });
    }
    let addr = connect?;
    match check_host_port(&addr) {
        Ok(()) => Some(PortSource::Connect { addr }),
        Err(why) => t.fail("connect", why),
    }
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
        let ip = inner.strip_suffix(']').map(str::parse::<Ipv6Addr>);
        if !matches!(ip, Some(Ok(_))) {
            return Err(format!(
                "{addr:?}: {host:?} is not an IPv6 address in brackets"
            ));
        }
    } else if host.contains(':') {
        let why = "write an IPv6 address in brackets, e.g. \"[fd00::1]:1752\"";
        return Err(format!("{addr:?}: {why}"));
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

/// Serial line settings of a port (the keys `speed`, `data_bits`,
/// `parity`, `stop_bits` and `flow`, which only serial ports take).
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

impl SerialSettings {
    fn read(t: &mut Table) -> SerialSettings {
        SerialSettings {
            speed: t.num_or(
                "speed",
                9600,
                50..=4_000_000,
                "is not a supported speed; use 50 to 4000000 (baud)",
            ),
            data_bits: t.num_or(
                "data_bits",
                8,
                5..=8,
                "is not a data bit count; use 5, 6, 7 or 8",
            ),
            parity: t.word("parity", Parity::None),
            stop_bits: t.num_or("stop_bits", 1, 1..=2, "is not a stop bit count; use 1 or 2"),
            flow: t.word("flow", Flow::None),
        }
    }
}

impl Default for SerialSettings {
    /// 9600 baud, 8 data bits, no parity, 1 stop bit, no flow control.
    fn default() -> Self {
        SerialSettings::read(&mut Table::empty())
    }
}

/// A word that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a {what}; use {choices}")]
pub struct UnknownName {
    given: String,
    what: &'static str,
    choices: &'static str,
}

/// An enum written as one of a few lower-case words: the enum, `as_str`,
/// `FromStr` (exactly those words) and `Display`.
macro_rules! words {
    ($(#[$doc:meta])* $name:ident, $what:literal, $choices:literal {
        $($(#[$vdoc:meta])* $variant:ident = $word:literal,)*
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            #[default]
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// The name as written in the configuration.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word,)* }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)*
                    _ => Err(UnknownName { given: s.to_string(), what: $what, choices: $choices }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// `store.when_full`: what happens when the store holds `max_records`
    /// undelivered records. The first variant is the default.
    WhenFull, "when_full policy", "block or drop_oldest" {
        /// Stop reading the ports until space frees; nothing stored is
        /// dropped. The PBX's own buffer (or the TCP window, or RTS/XOFF
        /// flow control) holds the data meanwhile.
        Block = "block",
        /// Keep reading: the oldest undelivered record is given up for
        /// delivery (it is still filed), counted and logged at ERROR.
        DropOldest = "drop_oldest",
    }
}

words! {
    /// `delivery.method`: how the primary (A) and secondary (B) servers
    /// are used.
    Method, "delivery method", "failover or round_robin" {
        /// A-A-B-B: `attempts` tries on one server, then `attempts` on the
        /// other, and so on; back to the primary after `failback_after` on
        /// the secondary.
        Failover = "failover",
        /// A-B-A-B: switch server after every failed attempt.
        RoundRobin = "round_robin",
    }
}

words! {
    /// Serial parity.
    Parity, "parity", "none, odd, even, mark or space" {
        /// No parity bit.
        None = "none",
        /// Odd parity.
        Odd = "odd",
        /// Even parity.
        Even = "even",
        /// The parity bit is always 1.
        Mark = "mark",
        /// The parity bit is always 0.
        Space = "space",
    }
}

words! {
    /// Serial flow control.
    Flow, "flow control", "none, hardware or software" {
        /// No flow control.
        None = "none",
        /// RTS/CTS.
        Hardware = "hardware",
        /// XON/XOFF.
        Software = "software",
    }
}

/// The defaults of a port's `billing_records` and `billing_timeout` (for
/// finishing the files of a port the config no longer names).
pub fn default_file_limits() -> (u32, Option<Duration>) {
    let mut t = Table::with(&[("name", "p"), ("device", "/dev/null")]);
    let port = PortConfig::read(&mut t, &mut Identity::default());
    let port = port.unwrap_or_else(|| unreachable!("a nameless port is refused"));
    (port.billing_records, port.billing_timeout)
}

/// Each section's keys, in the order of the reference: what reading an
/// empty table asks for.
#[cfg(test)]
pub(crate) fn section_keys() -> Vec<(&'static str, Vec<&'static str>)> {
    fn keys<R>(read: impl FnOnce(&mut Table) -> R) -> Vec<&'static str> {
        let mut t = Table::empty();
        read(&mut t);
        t.keys().to_vec()
    }
    vec![
        ("", keys(Config::read)),
        ("gateway", keys(GatewayConfig::read)),
        ("store", keys(StoreConfig::read)),
        (
            "ports",
            keys(|t| PortConfig::read(t, &mut Identity::default())),
        ),
        ("delivery", keys(DeliveryConfig::read)),
        ("carbon_copy", keys(|t| CarbonCopyConfig::read(t, 0))),
        ("metrics", keys(|t| MetricsConfig::read(t, &[]))),
        ("transactions", keys(|t| TransactionsConfig::read(t, "gw"))),
        ("tcp_feed", keys(|t| TcpFeedConfig::read(t, 0, &[]))),
    ]
}
