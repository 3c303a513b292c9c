//! `[transactions]`: hotel PMS and credit-card transactions (the AG 5500's
//! own records), taken in by billbox's submit API and as an AG relay.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{check_label, GatewayConfig, MetricsConfig, PortConfig, PortSource};
use crate::read::{Table, Unit};
use crate::security::{read_secret, SecretKey};

/// The longest `property_id` and `usg_id`, in characters.
const MAX_ID_CHARS: usize = 64;

/// `[transactions]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionsConfig {
    /// `listen`: the address of the submit API and the AG relay (HTTP),
    /// `IP:PORT`. Required.
    pub listen: SocketAddr,
    /// `PROPERTY_ID` of every `ADD_REC` packet billbox makes, e.g.
    /// `Hotel-1`. 1-64 characters, no control characters. Required.
    pub property_id: String,
    /// `USG_ID`: this gateway's id as the AG prints it, e.g. `00020b`.
    /// 1-64 characters, no control characters. Default: `gateway.name`.
    pub usg_id: String,
    /// `token_file`: a file holding the token submitters send as
    /// `Authorization: Bearer <token>` (at least 16 bytes; line breaks at
    /// its end are ignored). Required unless `listen` is a loopback
    /// address; `None`: no token is asked for.
    pub token: Option<SecretKey>,
    /// The prefix of the transaction journal files
    /// (`cycTRANS-YYMMDD.hhmmss.txt`), with the rules of a port's
    /// `alias`. Default `TRANS`.
    pub alias: String,
    /// The prefix of the files of relayed AG packets. Default: `alias`
    /// followed by `_AG` (`TRANS_AG`: its files never start like the
    /// `alias` files, `cycTRANS-`).
    pub relay_alias: String,
    /// Transactions per journal file, 1 to 4294967295. Default 50.
    pub billing_records: u32,
    /// How long a partly filled journal file may stay open: a duration
    /// or a whole number of minutes; `None` (configured as 0): no limit.
    /// Default 60 minutes.
    pub billing_timeout: Option<Duration>,
    /// `tls_cert` and `tls_key`: a PEM certificate chain and its private
    /// key; the listener then speaks HTTPS. Default: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `ag_secret_key` (or `ag_secret_key_file`): the key an AG signs its
    /// `ADD_REC` packets with (billbox's `sha256=` HMAC scheme, at least
    /// 16 bytes): relayed packets must then carry a matching `SIGNATURE`.
    /// Default: relayed signatures are not checked.
    pub ag_secret_key: Option<SecretKey>,
    /// How long a transaction's id (and its status) is remembered once
    /// the transaction is delivered and filed: a retry with the same `id`
    /// within this time gets the original `rec_num`. 1 hour to 3650 days.
    /// Default 30 days.
    pub remember: Duration,
}

fn check_id(t: &mut Table, key: &'static str) -> Option<String> {
    let text = t.text(key)?;
    let chars = text.chars().count();
    if text.is_empty() {
        t.problem(key, "must not be empty");
    } else if chars > MAX_ID_CHARS {
        let why = format!("at most {MAX_ID_CHARS} are allowed");
        t.problem(key, format!("{text:?} is {chars} characters long; {why}"));
    } else if text.chars().any(char::is_control) {
        t.problem(key, format!("{text:?} contains a control character"));
    }
    Some(text)
}

/// A file prefix, with the rules of `gateway.name`.
fn read_label(t: &mut Table, key: &'static str) -> Option<String> {
    let text = t.text(key)?;
    let checked = check_label(&text);
    t.check(key, checked.clone());
    checked.ok().map(|()| text)
}

fn read_file(t: &mut Table, key: &'static str) -> Option<PathBuf> {
    let path = t.path(key)?;
    if !path.is_file() {
        let shown = path.display().to_string();
        t.problem(key, format!("{shown:?} is not a readable file"));
        return None;
    }
    Some(path)
}

impl TransactionsConfig {
    /// `gateway` is the gateway's name (the default `usg_id`). `None` when
    /// a value was rejected (the problem is recorded).
    pub(crate) fn read(t: &mut Table, gateway: &str) -> Option<TransactionsConfig> {
        let listen = t.text("listen");
        let listen = match listen {
            Some(addr) => addr.parse::<SocketAddr>().ok().or_else(|| {
                let why = "is not an address; write IP:PORT, e.g. \"127.0.0.1:9120\"";
                t.fail("listen", format!("{addr:?} {why}"))
            }),
            None if !t.given("listen") => {
                let why = "missing; [transactions] needs the submit API's address, \
                           e.g. listen = \"127.0.0.1:9120\"";
                t.missing("listen", why);
                None
            }
            None => None,
        };
        let property_id = check_id(t, "property_id");
        if property_id.is_none() && !t.given("property_id") {
            let why =
                "missing; give the PROPERTY_ID of the packets, e.g. property_id = \"Hotel-1\"";
            t.missing("property_id", why);
        }
        let usg_id = check_id(t, "usg_id").unwrap_or_else(|| gateway.to_string());
        let token = match t.path("token_file") {
            Some(file) => SecretKey::from_file(&file)
                .map_err(|e| t.problem("token_file", e.to_string()))
                .ok(),
            None => {
                if let Some(addr) =
                    listen.filter(|a| !a.ip().is_loopback() && !t.accepted("token_file"))
                {
                    t.missing(
                        "token_file",
                        format!(
                            "missing; {addr} is reachable from other machines, so submitters must \
                             send a token: give token_file, or listen on a loopback address"
                        ),
                    );
                }
                None
            }
        };
        let alias = read_label(t, "alias").unwrap_or("TRANS".to_string());
        let relay_alias = read_label(t, "relay_alias").unwrap_or(format!("{alias}_AG"));
        if relay_alias == alias {
            let why = "is also the alias; relayed packets need files of their own";
            t.problem("relay_alias", format!("{relay_alias:?} {why}"));
        }
        let max = u32::MAX as i64;
        let why = format!("is out of range; use 1 to {max} (transactions are always filed)");
        let billing_records = t.num_or("billing_records", 50, 1..=max, &why);
        let billing_timeout = match t.duration("billing_timeout", Unit::Minutes) {
            Some(d) => Some(d).filter(|d| !d.is_zero()),
            None if t.given("billing_timeout") => None,
            None => Some(Duration::from_secs(60 * 60)),
        };
        let cert = read_file(t, "tls_cert");
        let key = read_file(t, "tls_key");
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            _ if t.accepted("tls_cert") != t.accepted("tls_key") => {
                let missing = if t.accepted("tls_cert") {
                    "tls_key"
                } else {
                    "tls_cert"
                };
                t.missing(missing, "missing; HTTPS needs both tls_cert and tls_key");
                None
            }
            _ => None,
        };
        let ag_secret_key = read_secret(t, "ag_secret_key", "ag_secret_key_file");
        let hour = Duration::from_secs(60 * 60);
        let at_least = Some("must be at least 1 hour");
        let remember = t.seconds("remember", hour, 3650 * 24 * hour, at_least);
        (t.problem_count() == 0).then_some(())?;
        Some(TransactionsConfig {
            listen: listen?,
            property_id: property_id?,
            usg_id,
            token,
            alias,
            relay_alias,
            billing_records,
            billing_timeout,
            tls,
            ag_secret_key: ag_secret_key?,
            remember: remember.unwrap_or(30 * 24 * hour),
        })
    }

    /// The transaction streams must not share a listener or file names
    /// with the ports and the metrics listener (`t` is the top level).
    pub(crate) fn check_against(
        &self,
        t: &mut Table,
        gateway: &GatewayConfig,
        ports: &[PortConfig],
        metrics: &MetricsConfig,
    ) {
        let listen = self.listen;
        let why = "give the submit API another address";
        if listen.port() != 0 {
            if metrics.enabled && metrics.listen == listen {
                let message = format!("{listen} is also metrics.listen; {why}");
                t.problem("transactions.listen", message);
            }
            for (i, p) in ports.iter().enumerate() {
                if matches!(&p.source, PortSource::Listen { addr } if addr.parse().ok() == Some(listen))
                {
                    let message =
                        format!("{listen} is also the listen address of ports[{i}]; {why}");
                    t.problem("transactions.listen", message);
                }
            }
        }
        for (key, prefix) in [("alias", &self.alias), ("relay_alias", &self.relay_alias)] {
            let prefix = prefix.as_str();
            if let Some(i) = ports
                .iter()
                .position(|p| p.file_prefix(&gateway.name) == prefix)
            {
                let why = "their files would mix";
                let message = format!("{prefix:?} is also the file prefix of ports[{i}]; {why}");
                t.problem(&format!("transactions.{key}"), message);
            }
        }
    }
}
