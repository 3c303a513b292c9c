//! The configuration as written: serde structs mirroring the TOML keys.
//!
//! Every field is an `Option` so the checks can tell "not given" from a
//! default and so one table of any subset of keys deserializes; defaults
//! come from the `default_*` functions when the public types are built
//! (see [`crate::model`]). Leaf values use the strict types [`Text`],
//! [`Int`] and [`DurationValue`] instead of `String`/`u32`, because the
//! `config` crate's own conversions are lenient (it turns `speed = true`
//! into 1, `speed = 9600.7` into 9601 and `name = 1234` into `"1234"`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::model::{Method, WhenFull};

/// The top level of the file: seven sections. Values stay untyped here so
/// each section is checked on its own and its problems are all reported.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoot {
    /// `[gateway]`: this machine's identity and directories.
    pub gateway: Option<config::Value>,
    /// `[store]`: the durable record store.
    pub store: Option<config::Value>,
    /// `[[ports]]`: the PBX ports to read, at least one.
    pub ports: Option<config::Value>,
    /// `[delivery]`: where records are forwarded. Absent: records are
    /// captured and filed but not forwarded.
    pub delivery: Option<config::Value>,
    /// `[[carbon_copy]]`: servers that get a copy of every record; zero
    /// or more.
    pub carbon_copy: Option<config::Value>,
    /// `[metrics]`: the monitoring listener. Absent: every key at its
    /// default.
    pub metrics: Option<config::Value>,
    /// `[transactions]`: the submit API and AG relay for hotel PMS and
    /// card transactions. Absent: off.
    pub transactions: Option<config::Value>,
}

/// `[gateway]`: this machine's identity and directories.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    /// The gateway's name, used as the prefix of the ACS files of every
    /// port without an `alias`. Default: the machine's host name. 1-64
    /// characters, no `/` and no NUL.
    pub name: Option<Text>,
    /// Where billbox keeps its record store. Default `/var/lib/billbox`.
    pub data_dir: Option<Text>,
    /// Where finished ACS files are written for pickup. Default `/var/run/DB`.
    pub spool_dir: Option<Text>,
}

/// `[store]`: the durable record store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    /// The store's page cache, in MiB. Default 8, 1 to 4096.
    pub cache_mb: Option<Int>,
    /// Capacity: the most records stored but not yet acknowledged by the
    /// primary or secondary server. Default 1000000, 1 to 1000000000.
    pub max_records: Option<Int>,
    /// What happens at capacity: `block` (stop reading the ports until
    /// space frees; nothing stored is dropped) or `drop_oldest` (the
    /// oldest undelivered record is given up for delivery, counted and
    /// logged). Default `block`.
    pub when_full: Option<Text>,
    /// Free space, in MiB, kept on the file system of `gateway.data_dir`:
    /// below it billbox stops taking new records until space returns.
    /// Default 64, 0 (no check) to 1048576.
    pub min_free_mb: Option<Int>,
}

/// `[delivery]`: where and how records are forwarded.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelivery {
    /// `failover` (A-A-B-B) or `round_robin` (A-B-A-B). Default `failover`.
    pub method: Option<Text>,
    /// The primary server's `http://` URL. Required.
    pub primary: Option<Text>,
    /// The secondary server's `http://` URL, not the primary's. Optional.
    pub secondary: Option<Text>,
    /// Attempts each server gets in one round, 1 to 100. Failover: attempts
    /// on one server before moving to the other (A-A-B-B); round_robin:
    /// every failed attempt moves to the other server (A-B-A-B). Default 3.
    pub attempts: Option<Int>,
    /// Pause after a failed attempt: a duration string or a whole number
    /// of seconds, 0 to 1 hour. Default 5 seconds.
    pub retry_delay: Option<DurationValue>,
    /// After a whole round of failed attempts (`attempts` on each server),
    /// no attempt until a new record is stored or this long has passed,
    /// then a new round from the primary; 0 for never suspend. A duration
    /// string or a whole number of seconds, at most 1 day. Default 0.
    pub suspend: Option<DurationValue>,
    /// Time limit of one whole request (connect, send, answer): a
    /// duration string or a whole number of seconds, above 0 and at most
    /// 10 minutes. Default 10 seconds.
    pub request_timeout: Option<DurationValue>,
    /// Records per POST, 1 to 10000; 1 sends AG-compatible one-record
    /// packets. Default 1.
    pub batch_max: Option<Int>,
    /// Failover only: after delivering to the secondary this long, try the
    /// primary again; 0 for never. A duration string or a whole number of
    /// seconds, at most 7 days. Default 5 minutes.
    pub failback_after: Option<DurationValue>,
    /// POSTs awaiting an answer at once, 1 to 64. Default 1 (strict
    /// attempt order).
    pub max_in_flight: Option<Int>,
    /// `https://` servers: a PEM file of the certificate authorities that
    /// sign the servers' certificates. Default: the built-in roots.
    pub ca_file: Option<Text>,
    /// `https://` servers: billbox's PEM certificate (chain) for mutual
    /// TLS, with `client_key`. Default: none.
    pub client_cert: Option<Text>,
    /// `https://` servers: the PEM private key of `client_cert`.
    pub client_key: Option<Text>,
    /// The key that signs every POST (HMAC-SHA256), at least 16 bytes.
    /// Default: packets are not signed.
    pub secret_key: Option<SecretText>,
    /// A file holding `secret_key` (instead of `secret_key`).
    pub secret_key_file: Option<Text>,
}

/// `[metrics]`: the monitoring listener (Prometheus `/metrics`, `/healthz`,
/// `/readyz`) and the limits of the `/healthz` alarms.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    /// Serve the endpoints: `true` or `false` (from the environment, the
    /// words `true` or `false`; see `env::BOOLEANS`). Default `true`.
    pub enabled: Option<Bool>,
    /// The address to listen on, `IP:PORT` (IPv6 in brackets; no host
    /// names); port 0 picks a free port. Default `127.0.0.1:9109`.
    pub listen: Option<Text>,
    /// `/healthz` turns unhealthy when records wait for delivery to the
    /// primary/secondary servers and none has been acknowledged for this
    /// long: a duration string or a whole number of seconds, 1 second to
    /// 7 days. Default 10 minutes.
    pub delivery_alarm: Option<DurationValue>,
    /// `/healthz` turns unhealthy when the records waiting in the store
    /// reach this percentage of `store.max_records`, 1 to 100. Default 90.
    pub store_alarm_percent: Option<Int>,
}

/// One `[[carbon_copy]]` entry: a server that gets a copy of every record.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCarbonCopy {
    /// The carbon copy's name, unique among carbon copies, with the rules
    /// of a port name. Default `cc1`, `cc2`, ... by position.
    pub name: Option<Text>,
    /// The server's `http://` URL, not another carbon copy's. Required.
    pub url: Option<Text>,
    /// `false`: each record is posted once on arrival, never retransmitted.
    /// `true`: retried until acknowledged, from a durable cursor of its
    /// own. Default `false`.
    pub reliable: Option<Bool>,
    /// As `delivery.ca_file`, for this server.
    pub ca_file: Option<Text>,
    /// As `delivery.client_cert`, for this server.
    pub client_cert: Option<Text>,
    /// As `delivery.client_key`, for this server.
    pub client_key: Option<Text>,
    /// As `delivery.secret_key`, for this server.
    pub secret_key: Option<SecretText>,
    /// As `delivery.secret_key_file`, for this server.
    pub secret_key_file: Option<Text>,
}

/// One `[[ports]]` entry: where billing records come from and how they are
/// cut and filed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    /// The port's name, unique among ports: 1-64 characters of
    /// `A-Z a-z 0-9 _ . -`. Required.
    pub name: Option<Text>,
    /// A serial device to read, e.g. `/dev/ttyUSB0`. Exactly one of
    /// `device`, `listen` and `connect` is required.
    pub device: Option<Text>,
    /// A TCP address (`ip:port`) to listen on; the PBX connects to billbox.
    pub listen: Option<Text>,
    /// A TCP address (`host:port`) to connect to; billbox connects to the PBX.
    pub connect: Option<Text>,
    /// Serial line speed in baud, 50 to 4000000. Serial ports only. Default 9600.
    pub speed: Option<Int>,
    /// Data bits per character, 5 to 8. Serial ports only. Default 8.
    pub data_bits: Option<Int>,
    /// `none`, `odd`, `even`, `mark` or `space`. Serial ports only. Default `none`.
    pub parity: Option<Text>,
    /// Stop bits, 1 or 2. Serial ports only. Default 1.
    pub stop_bits: Option<Int>,
    /// Flow control: `none`, `hardware` (RTS/CTS) or `software`
    /// (XON/XOFF). Serial ports only. Default `none`.
    pub flow: Option<Text>,
    /// The prefix of this port's ACS files instead of the gateway name.
    /// Same rules as `gateway.name`.
    pub alias: Option<Text>,
    /// The bytes that end one record, with backslash escapes decoded.
    /// 1-16 bytes. Default `"\n"`.
    pub billing_eor: Option<Text>,
    /// Records per ACS file; 0 turns the port off. Default 50.
    pub billing_records: Option<Int>,
    /// How long a partly filled ACS file may stay open: a duration string
    /// or a whole number of minutes; 0 for no limit. Default 60 minutes.
    pub billing_timeout: Option<DurationValue>,
    /// The longest record kept whole, in bytes, end-of-record included;
    /// longer input is cut. Default 4096, at most 16 MiB.
    pub max_record_bytes: Option<Int>,
    /// The longest wait between attempts to reopen the device or reconnect:
    /// a duration string or a whole number of seconds, above 0 and at most
    /// 1 hour. Default 30 seconds.
    pub reconnect_max: Option<DurationValue>,
    /// `/healthz` turns unhealthy when the port has committed no record
    /// for longer than this: a duration string or a whole number of
    /// seconds, 1 second to 30 days. Default: no alarm.
    pub quiet_alarm: Option<DurationValue>,
}

/// Default of `gateway.data_dir`.
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/billbox")
}

/// Default of `gateway.spool_dir`.
pub(crate) fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/run/DB")
}

/// Default of `store.cache_mb`.
pub(crate) fn default_cache_mb() -> u64 {
    8
}

/// Default of `store.max_records`.
pub(crate) fn default_max_records() -> u64 {
    1_000_000
}

/// Default of `store.when_full`.
pub(crate) fn default_when_full() -> WhenFull {
    WhenFull::Block
}

/// Default of `store.min_free_mb`.
pub(crate) fn default_min_free_mb() -> u64 {
    64
}

/// The per-server security keys, in both `[delivery]` and `[[carbon_copy]]`.
#[cfg(test)]
pub(crate) const SECURITY_KEYS: [&str; 5] = [
    "ca_file",
    "client_cert",
    "client_key",
    "secret_key",
    "secret_key_file",
];

/// Default of `delivery.method`.
pub(crate) fn default_method() -> Method {
    Method::Failover
}

/// Default of `delivery.attempts`.
pub(crate) fn default_attempts() -> u32 {
    3
}

/// Default of `delivery.retry_delay`.
pub(crate) fn default_retry_delay() -> Duration {
    Duration::from_secs(5)
}

/// Default of `delivery.suspend`: never suspend, retry every `retry_delay`.
pub(crate) fn default_suspend() -> Duration {
    Duration::ZERO
}

/// Default of `delivery.request_timeout`.
pub(crate) fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Default of `delivery.batch_max`: one record per POST, as the AG sends.
pub(crate) fn default_batch_max() -> usize {
    1
}

/// Default of `delivery.failback_after`.
pub(crate) fn default_failback_after() -> Option<Duration> {
    Some(Duration::from_secs(5 * 60))
}

/// Default of `delivery.max_in_flight`.
pub(crate) fn default_max_in_flight() -> usize {
    1
}

/// Default of `metrics.enabled`.
pub(crate) fn default_metrics_enabled() -> bool {
    true
}

/// Default of `metrics.listen`: loopback only, port 9109.
pub(crate) fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9109))
}

/// Default of `metrics.delivery_alarm`.
pub(crate) fn default_delivery_alarm() -> Duration {
    Duration::from_secs(10 * 60)
}

/// Default of `metrics.store_alarm_percent`.
pub(crate) fn default_store_alarm_percent() -> u8 {
    90
}

/// Default of a carbon copy's `name`: `cc1` for the first `[[carbon_copy]]`
/// table (`index` 0), `cc2` for the second, ...
pub(crate) fn default_carbon_copy_name(index: usize) -> String {
    format!("cc{}", index + 1)
}

/// Default of a carbon copy's `reliable`.
pub(crate) fn default_reliable() -> bool {
    false
}

/// Default of `speed`.
pub(crate) fn default_speed() -> u32 {
    9600
}

/// Default of `data_bits`.
pub(crate) fn default_data_bits() -> u8 {
    8
}

/// Default of `stop_bits`.
pub(crate) fn default_stop_bits() -> u8 {
    1
}

/// Default of `billing_eor`: a line feed, as in ACS.
pub(crate) fn default_billing_eor() -> Vec<u8> {
    b"\n".to_vec()
}

/// Default of `billing_records`.
pub(crate) fn default_billing_records() -> u32 {
    50
}

/// Default of `billing_timeout`.
pub(crate) fn default_billing_timeout() -> Option<Duration> {
    Some(Duration::from_secs(60 * 60))
}

/// Default of `max_record_bytes`.
pub(crate) fn default_max_record_bytes() -> usize {
    4096
}

/// Default of `reconnect_max`.
pub(crate) fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}

/// Default of `quiet_alarm`: no alarm (many PBXes are quiet at night).
pub(crate) fn default_quiet_alarm() -> Option<Duration> {
    None
}

/// A string value. Unlike `String` it refuses numbers and booleans, which
/// the `config` crate would otherwise turn into text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub String);

/// A secret string (a signing key). Like [`Text`], but neither its `Debug`
/// nor its error messages ever show the value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretText(pub String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// An integer value, written bare (`speed = 9600`) or as a string of digits
/// (`"9600"`, which is how environment overrides arrive). Booleans and
/// fractions are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int(pub i64);

/// A boolean value, `true` or `false`. Unlike `bool` it refuses numbers
/// and strings, which the `config` crate would otherwise turn into booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bool(pub bool);

/// A duration as written: a bare integer or a string (a humantime
/// duration or a whole number). See [`crate::duration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationValue {
    /// `billing_timeout = 60`
    Number(i64),
    /// `billing_timeout = "60m"` or `"60"`
    Text(String),
}

/// Formats an unexpected value the way messages show it.
struct Found<'a>(de::Unexpected<'a>);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            de::Unexpected::Bool(b) => write!(f, "boolean {b}"),
            de::Unexpected::Signed(n) => write!(f, "integer {n}"),
            de::Unexpected::Unsigned(n) => write!(f, "integer {n}"),
            de::Unexpected::Float(x) => write!(f, "number {x}"),
            de::Unexpected::Str(s) => write!(f, "string {s:?}"),
            de::Unexpected::Seq => write!(f, "an array"),
            de::Unexpected::Map => write!(f, "a table"),
            de::Unexpected::Unit => write!(f, "nothing"),
            ref other => write!(f, "{other}"),
        }
    }
}

fn wrong<E: de::Error>(expected: &str, found: de::Unexpected<'_>) -> E {
    E::custom(format_args!("expected {expected}, found {}", Found(found)))
}

/// Implements the visitor methods that refuse a kind of value.
macro_rules! refuse {
    ($expected:expr; $($kind:ident)*) => { $( refuse!(@one $expected, $kind); )* };
    (@one $expected:expr, bool) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(wrong($expected, de::Unexpected::Bool(v)))
        }
    };
    (@one $expected:expr, float) => {
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(wrong($expected, de::Unexpected::Float(v)))
        }
    };
    (@one $expected:expr, int) => {
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(wrong($expected, de::Unexpected::Signed(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(wrong($expected, de::Unexpected::Unsigned(v)))
        }
    };
    (@one $expected:expr, seq) => {
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong($expected, de::Unexpected::Seq))
        }
    };
    (@one $expected:expr, map) => {
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong($expected, de::Unexpected::Map))
        }
    };
    (@one $expected:expr, unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(wrong($expected, de::Unexpected::Unit))
        }
    };
}

const TEXT: &str = "a string";
const INT: &str = "a whole number";
const BOOL: &str = "true or false";
const DURATION: &str = "a duration such as \"90s\" or a whole number";

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TEXT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            refuse!(TEXT; bool float int seq map unit);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TEXT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretText, E> {
                Ok(SecretText(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<SecretText, E> {
                Ok(SecretText(v))
            }
            // Not `refuse!`: that would quote the value.
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretText, E> {
                Err(E::custom("expected a string, found a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretText, E> {
                Err(E::custom(
                    "expected a string, found a number (write it in quotes)",
                ))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretText, E> {
                Err(E::custom(
                    "expected a string, found a number (write it in quotes)",
                ))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretText, E> {
                Err(E::custom(
                    "expected a string, found a number (write it in quotes)",
                ))
            }
            refuse!(TEXT; seq map unit);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(INT)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom(format_args!("{v} is far too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim()
                    .parse()
                    .map(Int)
                    .map_err(|_| wrong(INT, de::Unexpected::Str(v)))
            }
            refuse!(INT; bool float seq map unit);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(BOOL)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Bool, E> {
                Ok(Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bool, E> {
                Err(wrong(BOOL, de::Unexpected::Str(v)))
            }
            refuse!(BOOL; float int seq map unit);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                Ok(DurationValue::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                i64::try_from(v)
                    .map(DurationValue::Number)
                    .map_err(|_| E::custom(format_args!("{v} is far too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                Ok(DurationValue::Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<DurationValue, E> {
                Ok(DurationValue::Text(v))
            }
            refuse!(DURATION; bool float seq map unit);
        }
        d.deserialize_any(V)
    }
}

/// The field names of a struct deriving `Deserialize`, in declaration
/// order, read from what serde's derive passes to `deserialize_struct`.
/// Used to tell unknown keys from values of the wrong type and to suggest
/// the key that was probably meant.
pub(crate) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_the_structs() {
        assert_eq!(
            field_names::<RawRoot>(),
            [
                "gateway",
                "store",
                "ports",
                "delivery",
                "carbon_copy",
                "metrics",
                "transactions"
            ]
        );
        assert_eq!(
            field_names::<RawGateway>(),
            ["name", "data_dir", "spool_dir"]
        );
        assert_eq!(
            field_names::<RawStore>(),
            ["cache_mb", "max_records", "when_full", "min_free_mb"]
        );
        assert_eq!(field_names::<RawDelivery>().len(), 15);
        assert_eq!(field_names::<RawDelivery>()[0], "method");
        assert_eq!(field_names::<RawDelivery>()[5], "suspend");
        assert_eq!(field_names::<RawDelivery>()[10..], SECURITY_KEYS,);
        assert_eq!(
            field_names::<RawCarbonCopy>(),
            [
                "name",
                "url",
                "reliable",
                "ca_file",
                "client_cert",
                "client_key",
                "secret_key",
                "secret_key_file"
            ]
        );
        assert_eq!(
            field_names::<RawMetrics>(),
            ["enabled", "listen", "delivery_alarm", "store_alarm_percent"]
        );
        assert_eq!(field_names::<RawPort>().len(), 16);
        assert_eq!(field_names::<RawPort>()[15], "quiet_alarm");
        assert_eq!(field_names::<RawPort>()[0], "name");
    }
}
