//! `[transactions]`: hotel PMS and credit-card transactions (the AG 5500's
//! own records), taken in by billbox's submit API and as an AG relay.
//!
//! Everything about one key stands here together: the raw field with its
//! doc (the reference), its default, its bounds, and the checked value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::check::{check_label, check_path, Problems};
use crate::duration::{parse_duration, BareUnit};
use crate::error::Problem;
use crate::raw::{DurationValue, Int, SecretText, Text};
use crate::section::{join, Broken};
use crate::security::SecretKey;

/// `[transactions]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransactions {
    /// The address of the submit API and the AG relay (HTTP), `IP:PORT`.
    /// Required.
    pub listen: Option<Text>,
    /// `PROPERTY_ID` of every `ADD_REC` packet billbox makes, e.g.
    /// `Hotel-1`. 1-64 characters, no control characters. Required.
    pub property_id: Option<Text>,
    /// `USG_ID`: this gateway's id as the AG prints it, e.g. `00020b`.
    /// 1-64 characters, no control characters. Default: `gateway.name`.
    pub usg_id: Option<Text>,
    /// A file holding the token submitters send as
    /// `Authorization: Bearer <token>` (at least 16 bytes; line breaks at
    /// its end are ignored). Required unless `listen` is a loopback
    /// address; when absent, no token is asked for.
    pub token_file: Option<Text>,
    /// The prefix of the transaction journal files
    /// (`cycTRANS-YYMMDD.hhmmss.txt`), with the rules of a port's
    /// `alias`. Default `TRANS`.
    pub alias: Option<Text>,
    /// The prefix of the files of relayed AG packets. Default: `alias`
    /// followed by `_AG` (`TRANS_AG`: its files never start like the
    /// `alias` files, `cycTRANS-`).
    pub relay_alias: Option<Text>,
    /// Transactions per journal file, 1 to 4294967295. Default 50.
    pub billing_records: Option<Int>,
    /// How long a partly filled journal file may stay open: a duration
    /// string or a whole number of minutes; 0 for no limit. Default 60
    /// minutes.
    pub billing_timeout: Option<DurationValue>,
    /// A PEM certificate chain: the listener then speaks HTTPS (with
    /// `tls_key`). Default: plain HTTP.
    pub tls_cert: Option<Text>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<Text>,
    /// The key an AG signs its `ADD_REC` packets with (billbox's
    /// `sha256=` HMAC scheme, at least 16 bytes): relayed packets must then
    /// carry a matching `SIGNATURE`. Default: relayed signatures are not
    /// checked.
    pub ag_secret_key: Option<SecretText>,
    /// A file holding `ag_secret_key` (instead of `ag_secret_key`).
    pub ag_secret_key_file: Option<Text>,
    /// How long a transaction's id (and its status) is remembered once
    /// the transaction is delivered and filed: a retry with the same `id`
    /// within this time gets the original `rec_num`. A duration string or
    /// a whole number of seconds, 1 hour to 3650 days. Default 30 days.
    pub remember: Option<DurationValue>,
}

/// Default of `transactions.remember`.
fn default_remember() -> Duration {
    Duration::from_secs(30 * 24 * 60 * 60)
}

/// The bounds of `transactions.remember`.
const MIN_REMEMBER: Duration = Duration::from_secs(60 * 60);
const MAX_REMEMBER: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// Default of `transactions.alias`.
fn default_alias() -> String {
    "TRANS".to_string()
}

/// Default of `transactions.relay_alias`.
fn default_relay_alias(alias: &str) -> String {
    format!("{alias}_AG")
}

/// Default of `transactions.billing_records`.
fn default_billing_records() -> u32 {
    50
}

/// Default of `transactions.billing_timeout`.
fn default_billing_timeout() -> Option<Duration> {
    Some(Duration::from_secs(60 * 60))
}

/// The longest `property_id` and `usg_id`, in characters.
const MAX_ID_CHARS: usize = 64;

/// `[transactions]`, checked: see [`RawTransactions`] for each key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionsConfig {
    /// Where the submit API and the AG relay listen.
    pub listen: SocketAddr,
    /// `PROPERTY_ID` of the packets billbox makes.
    pub property_id: String,
    /// `USG_ID` of the packets billbox makes.
    pub usg_id: String,
    /// The bearer token submitters must send; `None`: none is asked for
    /// (only allowed on a loopback `listen`).
    pub token: Option<SecretKey>,
    /// The prefix of the transaction journal files.
    pub alias: String,
    /// The prefix of the files of relayed AG packets.
    pub relay_alias: String,
    /// Transactions per journal file (at least 1).
    pub billing_records: u32,
    /// How long a journal file may stay open; `None`: no limit.
    pub billing_timeout: Option<Duration>,
    /// The listener's certificate chain and key (PEM), for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The key relayed AG packets must be signed with.
    pub ag_secret_key: Option<SecretKey>,
    /// How long ids of delivered and filed transactions are remembered.
    pub remember: Duration,
}

fn check_id(key: &str, text: &str, problems: &mut Problems) {
    let chars = text.chars().count();
    if text.is_empty() {
        problems.push(Problem::new(key, "must not be empty"));
    } else if chars > MAX_ID_CHARS {
        problems.push(Problem::new(
            key,
            format!("{text:?} is {chars} characters long; at most {MAX_ID_CHARS} are allowed"),
        ));
    } else if text.chars().any(char::is_control) {
        problems.push(Problem::new(
            key,
            format!("{text:?} contains a control character"),
        ));
    }
}

fn check_file(key: &str, value: Option<Text>, problems: &mut Problems) -> Option<PathBuf> {
    let Text(path) = value?;
    match check_path(&path) {
        Ok(()) if std::path::Path::new(&path).is_file() => Some(PathBuf::from(path)),
        Ok(()) => {
            problems.push(Problem::new(
                key,
                format!("{path:?} is not a readable file"),
            ));
            None
        }
        Err(why) => {
            problems.push(Problem::new(key, why));
            None
        }
    }
}

impl TransactionsConfig {
    /// Checks `[transactions]`; `gateway` is the gateway's name (the
    /// default `usg_id`). `None` when a value was rejected (the problem is
    /// recorded).
    pub(crate) fn check(
        raw: RawTransactions,
        broken: &Broken,
        gateway: &str,
        problems: &mut Problems,
    ) -> Option<TransactionsConfig> {
        let before = problems.len();
        let at = |k: &str| join("transactions", k);
        let listen = match raw.listen {
            Some(Text(addr)) => {
                match addr.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        problems.push(Problem::new(
                        at("listen"),
                        format!("{addr:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:9120\""),
                    ));
                        None
                    }
                }
            }
            None => {
                if !broken.contains("listen") {
                    problems.push(Problem::new(
                        at("listen"),
                        "missing; [transactions] needs the submit API's address, e.g. listen = \"127.0.0.1:9120\"",
                    ));
                }
                None
            }
        };
        let property_id = match raw.property_id {
            Some(Text(id)) => {
                check_id(&at("property_id"), &id, problems);
                id
            }
            None => {
                if !broken.contains("property_id") {
                    problems.push(Problem::new(
                        at("property_id"),
                        "missing; give the PROPERTY_ID of the packets, e.g. property_id = \"Hotel-1\"",
                    ));
                }
                String::new()
            }
        };
        let usg_id = match raw.usg_id {
            Some(Text(id)) => {
                check_id(&at("usg_id"), &id, problems);
                id
            }
            None => gateway.to_string(),
        };
        let token = match raw.token_file {
            Some(Text(file)) => match check_path(&file) {
                Ok(()) => SecretKey::from_file(std::path::Path::new(&file))
                    .map_err(|why| problems.push(Problem::new(at("token_file"), why)))
                    .ok(),
                Err(why) => {
                    problems.push(Problem::new(at("token_file"), why));
                    None
                }
            },
            None => {
                if let Some(addr) = listen.filter(|a| !a.ip().is_loopback()) {
                    problems.push(Problem::new(
                        at("token_file"),
                        format!(
                            "missing; {addr} is reachable from other machines, so submitters must \
                             send a token: give token_file, or listen on a loopback address"
                        ),
                    ));
                }
                None
            }
        };
        let label = |k: &str, value: Option<Text>, problems: &mut Problems| {
            let Text(text) = value?;
            match check_label(&text) {
                Ok(()) => Some(text),
                Err(why) => {
                    problems.push(Problem::new(at(k), why));
                    None
                }
            }
        };
        let alias = label("alias", raw.alias, problems).unwrap_or_else(default_alias);
        let relay_alias = label("relay_alias", raw.relay_alias, problems)
            .unwrap_or_else(|| default_relay_alias(&alias));
        if relay_alias == alias {
            problems.push(Problem::new(
                at("relay_alias"),
                format!(
                    "{relay_alias:?} is also the alias; relayed packets need files of their own"
                ),
            ));
        }
        let billing_records = match raw.billing_records {
            Some(Int(n)) => match u32::try_from(n) {
                Ok(n) if n > 0 => n,
                _ => {
                    problems.push(Problem::new(
                        at("billing_records"),
                        format!(
                            "{n} is out of range; use 1 to {} (transactions are always filed)",
                            u32::MAX
                        ),
                    ));
                    default_billing_records()
                }
            },
            None => default_billing_records(),
        };
        let billing_timeout = match &raw.billing_timeout {
            Some(v) => match parse_duration(v, BareUnit::Minutes) {
                Ok(d) => Some(d).filter(|d| !d.is_zero()),
                Err(why) => {
                    problems.push(Problem::new(at("billing_timeout"), why));
                    None
                }
            },
            None => default_billing_timeout(),
        };
        let tls_cert_given = raw.tls_cert.is_some();
        let tls_key_given = raw.tls_key.is_some();
        let cert = check_file(&at("tls_cert"), raw.tls_cert, problems);
        let key = check_file(&at("tls_key"), raw.tls_key, problems);
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            _ if tls_cert_given != tls_key_given => {
                let missing = if tls_cert_given {
                    "tls_key"
                } else {
                    "tls_cert"
                };
                problems.push(Problem::new(
                    at(missing),
                    "missing; HTTPS needs both tls_cert and tls_key",
                ));
                None
            }
            _ => None,
        };
        let ag_secret_key = match (raw.ag_secret_key, raw.ag_secret_key_file) {
            (Some(_), Some(_)) => {
                problems.push(Problem::new(
                    at("ag_secret_key_file"),
                    "give ag_secret_key or ag_secret_key_file, not both",
                ));
                None
            }
            (Some(SecretText(text)), None) => SecretKey::new(&text)
                .map_err(|why| problems.push(Problem::new(at("ag_secret_key"), why)))
                .ok(),
            (None, Some(Text(file))) => SecretKey::from_file(std::path::Path::new(&file))
                .map_err(|why| problems.push(Problem::new(at("ag_secret_key_file"), why)))
                .ok(),
            (None, None) => None,
        };
        let remember = crate::check::check_seconds(
            &at("remember"),
            raw.remember.as_ref(),
            MIN_REMEMBER,
            MAX_REMEMBER,
            Some("must be at least 1 hour"),
            problems,
        )
        .unwrap_or_else(default_remember);
        if problems.len() != before || !broken.is_empty() {
            return None;
        }
        Some(TransactionsConfig {
            remember,
            listen: listen?,
            property_id,
            usg_id,
            token,
            alias,
            relay_alias,
            billing_records,
            billing_timeout,
            tls,
            ag_secret_key,
        })
    }
}
