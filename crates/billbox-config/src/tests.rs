//! Tests of the whole pipeline: TOML text (and environment) in, `Config`
//! or problems out.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A port table with a name and a serial device, plus `extra` lines.
fn serial_port(extra: &str) -> String {
    format!("[gateway]\nname = \"gw\"\n\n[[ports]]\nname = \"pbx1\"\ndevice = \"/dev/ttyUSB0\"\n{extra}\n")
}

/// A port table with a name and no source, plus `extra` lines.
fn bare_port(extra: &str) -> String {
    format!("[gateway]\nname = \"gw\"\n\n[[ports]]\nname = \"pbx1\"\n{extra}\n")
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn problems(text: &str) -> Vec<String> {
    match from_toml_str(text) {
        Ok(config) => panic!("accepted:\n{text}\n{config:#?}"),
        Err(e) => {
            assert_eq!(e.kind(), ConfigErrorKind::Invalid, "{e}");
            e.problems().iter().map(ToString::to_string).collect()
        }
    }
}

/// Exactly one problem, starting with `expected`.
pub(crate) fn one_problem(text: &str, expected: &str) {
    let found = problems(text);
    assert!(
        found.len() == 1 && found[0].starts_with(expected),
        "expected one problem starting with\n  {expected}\nin\n{text}\ngot\n{found:#?}"
    );
}

fn one_port(text: &str) -> PortConfig {
    let config = from_toml_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.ports.len(), 1);
    config.ports.into_iter().next().unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const FULL: &str = r#"
[gateway]
name = "gw-lobby"
data_dir = "/srv/billbox"
spool_dir = "/srv/spool"

[store]
cache_mb = 128

[[ports]]
name = "pbx1"
device = "/dev/ttyUSB0"
speed = 19200
data_bits = 7
parity = "even"
stop_bits = 2
flow = "hardware"
alias = "PABX-trunk9"
billing_eor = "\r\n"
billing_records = 100
billing_timeout = "90s"
max_record_bytes = 2048
reconnect_max = "2m"
quiet_alarm = "2h"

[[ports]]
name = "pbx2.tcp"
listen = "0.0.0.0:5101"
billing_records = 0
billing_timeout = 0

[[ports]]
name = "pbx_3"
connect = "10.1.2.3:1752"
reconnect_max = 10
"#;

#[test]
fn full_config_parses_with_defaults_filled() {
    let config = from_toml_str(FULL).unwrap();
    let defaults = PortConfig {
        name: String::new(),
        source: PortSource::Listen {
            addr: String::new(),
        },
        serial: SerialSettings::default(),
        alias: None,
        billing_eor: b"\n".to_vec(),
        billing_records: 50,
        billing_timeout: Some(Duration::from_secs(3600)),
        max_record_bytes: 4096,
        reconnect_max: Duration::from_secs(30),
        quiet_alarm: None,
    };
    let expected = Config {
        gateway: GatewayConfig {
            name: "gw-lobby".into(),
            data_dir: "/srv/billbox".into(),
            spool_dir: "/srv/spool".into(),
        },
        store: StoreConfig {
            cache_mb: 128,
            max_records: 1_000_000,
            when_full: WhenFull::Block,
            min_free_mb: 64,
            flush_timeout: Duration::from_secs(30),
            retain: Duration::ZERO,
        },
        ports: vec![
            PortConfig {
                name: "pbx1".into(),
                source: PortSource::Serial {
                    device: "/dev/ttyUSB0".into(),
                },
                serial: SerialSettings {
                    speed: 19200,
                    data_bits: 7,
                    parity: Parity::Even,
                    stop_bits: 2,
                    flow: Flow::Hardware,
                },
                alias: Some("PABX-trunk9".into()),
                billing_eor: b"\r\n".to_vec(),
                billing_records: 100,
                billing_timeout: Some(Duration::from_secs(90)),
                max_record_bytes: 2048,
                reconnect_max: Duration::from_secs(120),
                quiet_alarm: Some(Duration::from_secs(2 * 3600)),
            },
            PortConfig {
                name: "pbx2.tcp".into(),
                source: PortSource::Listen {
                    addr: "0.0.0.0:5101".into(),
                },
                billing_records: 0,
                billing_timeout: None,
                ..defaults.clone()
            },
            PortConfig {
                name: "pbx_3".into(),
                source: PortSource::Connect {
                    addr: "10.1.2.3:1752".into(),
                },
                reconnect_max: Duration::from_secs(10),
                ..defaults.clone()
            },
        ],
        delivery: None,
        carbon_copies: Vec::new(),
        metrics: MetricsConfig::default(),
        transactions: None,
        tcp_feeds: Vec::new(),
        warnings: Vec::new(),
    };
    assert_eq!(config, expected);

    assert!(config.ports[0].enabled());
    assert!(!config.ports[1].enabled());
    assert_eq!(config.ports[0].file_prefix("gw-lobby"), "PABX-trunk9");
    assert_eq!(config.ports[2].file_prefix("gw-lobby"), "gw-lobby");
    assert_eq!(config.port("pbx_3"), Some(&config.ports[2]));
    assert_eq!(config.ports[2].source.to_string(), "connect 10.1.2.3:1752");
}

#[test]
fn minimal_config_gets_every_default() {
    let config = from_toml_str("[[ports]]\nname = \"p\"\ndevice = \"/dev/ttyS0\"\n").unwrap();
    assert_eq!(config.gateway.data_dir, PathBuf::from("/var/lib/billbox"));
    assert_eq!(config.gateway.spool_dir, PathBuf::from("/var/run/DB"));
    assert_eq!(config.store.cache_mb, 8);
    assert_eq!(config.store.max_records, 1_000_000);
    assert_eq!(config.store.when_full, WhenFull::Block);
    assert_eq!(config.store.min_free_mb, 64);
    assert_eq!(config.store, StoreConfig::default());
    assert_eq!(config.delivery, None);
    assert_eq!(config.carbon_copies, []);
    assert_eq!(config.metrics, MetricsConfig::default());
    // The default name is the host name (this machine's is a valid one).
    let host = hostname::get().unwrap().into_string().unwrap();
    assert_eq!(config.gateway.name, host);
    let port = &config.ports[0];
    assert_eq!(port.serial, SerialSettings::default());
    assert_eq!(
        port.serial,
        SerialSettings {
            speed: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow: Flow::None
        }
    );
    assert_eq!(port.alias, None);
    assert_eq!(port.billing_eor, b"\n");
    assert_eq!(port.billing_records, 50);
    assert_eq!(port.billing_timeout, Some(Duration::from_secs(60 * 60)));
    assert_eq!(port.max_record_bytes, 4096);
    assert_eq!(port.reconnect_max, Duration::from_secs(30));
    assert_eq!(port.quiet_alarm, None);
}

#[test]
fn reference_acs_config() {
    let port = one_port(&serial_port(
        "billing_records = 50\nbilling_timeout = 60\nbilling_eor = \"\\n\"",
    ));
    assert_eq!(port.billing_records, 50);
    assert_eq!(port.billing_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(port.billing_eor, b"\n");
}

#[test]
fn billing_timeout_forms() {
    #[rustfmt::skip]
    let cases = [
        ("60", Some(3600)),
        ("\"60\"", Some(3600)),
        ("\"60m\"", Some(3600)),
        ("\"1h\"", Some(3600)),
        ("\"90s\"", Some(90)),
        ("0", None),
        ("\"0\"", None),
        ("\"0s\"", None),
    ];
    for (value, expected) in cases {
        let port = one_port(&serial_port(&format!("billing_timeout = {value}")));
        assert_eq!(
            port.billing_timeout,
            expected.map(Duration::from_secs),
            "{value}"
        );
    }
    let port = one_port(&serial_port("billing_timeout = \"500ms\""));
    assert_eq!(port.billing_timeout, Some(Duration::from_millis(500)));
}

#[test]
fn reconnect_max_forms() {
    for (value, secs) in [("30", 30), ("\"30\"", 30), ("\"5m\"", 300), ("3600", 3600)] {
        let port = one_port(&serial_port(&format!("reconnect_max = {value}")));
        assert_eq!(port.reconnect_max, Duration::from_secs(secs), "{value}");
    }
}

#[test]
fn escapes_in_billing_eor() {
    #[rustfmt::skip]
    let cases = [
        (r"'\r\n'", &b"\r\n"[..]),
        (r#""\r\n""#, b"\r\n"),
        (r#""\u0003""#, b"\x03"),
        (r"'\x03\x00'", b"\x03\x00"),
        (r"'\xff'", b"\xff"),
        (r"'\\'", b"\\"),
        (r"'\t|\0'", b"\t|\0"),
        (r#""ETX\\x03""#, b"ETX\x03"),
        ("'\u{e9}'", "\u{e9}".as_bytes()),
    ];
    for (value, bytes) in cases {
        let port = one_port(&serial_port(&format!("billing_eor = {value}")));
        assert_eq!(port.billing_eor, bytes, "{value}");
    }
}

/// One invalid value per case; the problem must name the key.
#[test]
fn every_invalid_value_names_its_key() {
    #[rustfmt::skip]
    let cases: &[(String, &str)] = &[
        // sources
        (bare_port(""), "ports[0]: no source"),
        (bare_port("device = \"/dev/a\"\nlisten = \"0.0.0.0:1\""), "ports[0]: device and listen are both set"),
        (bare_port("device = \"/dev/a\"\nlisten = \"0.0.0.0:1\"\nconnect = \"h:1\""), "ports[0]: device and listen and connect are both set"),
        (bare_port("device = \"\""), "ports[0].device: must not be empty"),
        (bare_port("listen = \"localhost:80\""), "ports[0].listen: \"localhost:80\" is not an ip:port address"),
        (bare_port("listen = \"0.0.0.0\""), "ports[0].listen:"),
        (bare_port("connect = \"10.1.2.3\""), "ports[0].connect: \"10.1.2.3\" has no port"),
        (bare_port("connect = \":1752\""), "ports[0].connect: \":1752\" has no host"),
        (bare_port("connect = \"h:0\""), "ports[0].connect: \"h:0\": \"0\" is not a port"),
        (bare_port("connect = \"h:65536\""), "ports[0].connect:"),
        (bare_port("connect = \"fd00::1:80\""), "ports[0].connect: \"fd00::1:80\": write an IPv6 address in brackets"),
        (bare_port("connect = \"[zz]:80\""), "ports[0].connect:"),
        // serial
        (serial_port("data_bits = 9"), "ports[0].data_bits: 9 is not a data bit count; use 5, 6, 7 or 8"),
        (serial_port("data_bits = 4"), "ports[0].data_bits: 4 is not a data bit count"),
        (serial_port("parity = \"foo\""), "ports[0].parity: \"foo\" is not a parity; use none, odd, even, mark or space"),
        (serial_port("parity = \"Even\""), "ports[0].parity: \"Even\" is not a parity"),
        (serial_port("flow = \"rts\""), "ports[0].flow: \"rts\" is not a flow control; use none, hardware or software"),
        (serial_port("stop_bits = 3"), "ports[0].stop_bits: 3 is not a stop bit count; use 1 or 2"),
        (serial_port("speed = 10"), "ports[0].speed: 10 is not a supported speed"),
        (serial_port("speed = 5000000"), "ports[0].speed: 5000000 is not a supported speed"),
        (serial_port("speed = -9600"), "ports[0].speed: -9600 is not a supported speed"),
        // Serial keys on a TCP port: checked all the same (and warned about).
        (bare_port("listen = \"0.0.0.0:5101\"\nspeed = 10"), "ports[0].speed: 10 is not a supported speed"),
        (bare_port("connect = \"h:1\"\nparity = \"foo\""), "ports[0].parity: \"foo\" is not a parity"),
        // names
        ("[[ports]]\ndevice = \"/dev/a\"\n".to_string(), "ports[0].name: missing"),
        (bare_port("").replace("pbx1", "pbx 1") + "device = \"/dev/a\"", "ports[0].name: \"pbx 1\" contains characters other than"),
        (bare_port("").replace("pbx1", "") + "device = \"/dev/a\"", "ports[0].name: must not be empty"),
        (bare_port("").replace("pbx1", &"p".repeat(65)) + "device = \"/dev/a\"", "ports[0].name: \"ppp"),
        (serial_port("alias = \"a/b\""), "ports[0].alias: \"a/b\" contains `/`"),
        (serial_port("alias = \"\""), "ports[0].alias: must not be empty"),
        (serial_port(&format!("alias = \"{}\"", "a".repeat(65))), "ports[0].alias:"),
        (serial_port("").replace("name = \"gw\"", "name = \"\""), "gateway.name: must not be empty"),
        (serial_port("").replace("name = \"gw\"", "name = \"a/b\""), "gateway.name: \"a/b\" contains `/`"),
        (serial_port("").replace("name = \"gw\"", "name = \"a\\u0000b\""), "gateway.name: \"a\\0b\" contains a NUL character"),
        (serial_port("").replace("name = \"gw\"", &format!("name = \"{}\"", "g".repeat(65))), "gateway.name: \"ggg"),
        (serial_port("").replace("name = \"gw\"", "data_dir = \"\""), "gateway.data_dir: must not be empty"),
        (serial_port("").replace("name = \"gw\"", "spool_dir = \"\""), "gateway.spool_dir: must not be empty"),
        // store
        (serial_port("[store]\ncache_mb = 0"), "store.cache_mb: 0 is out of range; use 1 to 4096"),
        (serial_port("[store]\ncache_mb = 4097"), "store.cache_mb: 4097 is out of range"),
        (serial_port("[store]\nmin_free_mb = -1"), "store.min_free_mb: -1 is out of range; use 0 to 1048576 (MiB)"),
        (serial_port("[store]\nflush_timeout = \"0s\""), "store.flush_timeout: 0 would fail every flush; use at least 1s"),
        (serial_port("[store]\nflush_timeout = \"500ms\""), "store.flush_timeout: 500ms is too short; at least 1s"),
        (serial_port("[store]\nflush_timeout = \"2h\""), "store.flush_timeout: 2h is too long; at most 1h"),
        (serial_port("[store]\nmin_free_mb = 1048577"), "store.min_free_mb: 1048577 is out of range; use 0 to 1048576 (MiB)"),
        (serial_port("[store]\nmin_free_mb = \"64M\""), "store.min_free_mb: expected a whole number"),
        // records
        (serial_port("billing_eor = \"\""), "ports[0].billing_eor: must not be empty"),
        (serial_port(r"billing_eor = '\xZZ'"), r"ports[0].billing_eor: `\xZZ` is not a valid escape"),
        (serial_port(r"billing_eor = '\q'"), r"ports[0].billing_eor: `\q` is not a valid escape"),
        (serial_port(r"billing_eor = 'abc\'"), r"ports[0].billing_eor: `\` is not a valid escape"),
        (serial_port(&format!("billing_eor = \"{}\"", "x".repeat(17))), "ports[0].billing_eor: is 17 bytes long after decoding; at most 16"),
        (serial_port("billing_records = -1"), "ports[0].billing_records: -1 is negative"),
        (serial_port("billing_records = 4294967296"), "ports[0].billing_records: 4294967296 is too large"),
        (serial_port("billing_eor = '\\r\\n'\nmax_record_bytes = 1"), "ports[0].max_record_bytes: 1 is smaller than billing_eor (2 bytes)"),
        (serial_port("max_record_bytes = 0"), "ports[0].max_record_bytes: 0 is smaller than billing_eor (1 byte)"),
        (serial_port("max_record_bytes = 16777217"), "ports[0].max_record_bytes: 16777217 is too large"),
        (serial_port("billing_timeout = \"abc\""), "ports[0].billing_timeout: \"abc\" is not a duration"),
        (serial_port("billing_timeout = -5"), "ports[0].billing_timeout: -5 is negative"),
        (serial_port("billing_timeout = \"-5\""), "ports[0].billing_timeout: -5 is negative"),
        (serial_port("billing_timeout = \"-5m\""), "ports[0].billing_timeout: \"-5m\" is negative"),
        (serial_port("billing_timeout = 1.5"), "ports[0].billing_timeout: expected a duration"),
        (serial_port("billing_timeout = 9223372036854775807"), "ports[0].billing_timeout: 9223372036854775807 minutes is too long"),
        (serial_port("reconnect_max = 0"), "ports[0].reconnect_max: must be greater than 0"),
        (serial_port("reconnect_max = \"0s\""), "ports[0].reconnect_max: must be greater than 0"),
        (serial_port("reconnect_max = \"2h\""), "ports[0].reconnect_max: 2h is too long; at most 1h"),
        (serial_port("reconnect_max = \"soon\""), "ports[0].reconnect_max: \"soon\" is not a duration"),
        // unknown keys
        (serial_port("").replace("[gateway]", "colour = 1\n[gateway]"), "colour: unknown key"),
        (serial_port("").replace("[gateway]", "[port]\n[gateway]"), "port: unknown key; did you mean `ports`?"),
        (serial_port("").replace("name = \"gw\"", "nmae = \"gw\""), "gateway.nmae: unknown key; did you mean `name`?"),
        (serial_port("[store]\ncache = 1"), "store.cache: unknown key; did you mean `cache_mb`?"),
        (serial_port("[store]\nmin_free_mib = 64"), "store.min_free_mib: unknown key; did you mean `min_free_mb`?"),
        (serial_port("[store]\nmin_free = 64"), "store.min_free: unknown key; did you mean `min_free_mb`?"),
        (serial_port("sped = 9600"), "ports[0].sped: unknown key; did you mean `speed`?"),
        (serial_port("Speed = 9600"), "ports[0].Speed: unknown key; did you mean `speed`?"),
        // types
        (serial_port("speed = \"fast\""), "ports[0].speed: expected a whole number, found string \"fast\""),
        (serial_port("speed = true"), "ports[0].speed: expected a whole number, found boolean true"),
        (serial_port("speed = 9600.5"), "ports[0].speed: expected a whole number, found number 9600.5"),
        (serial_port("billing_records = [1]"), "ports[0].billing_records: expected a whole number, found an array"),
        (serial_port("").replace("name = \"gw\"", "name = 1234"), "gateway.name: expected a string, found integer 1234"),
        (serial_port("parity = 1"), "ports[0].parity: expected a string, found integer 1"),
        (serial_port("alias = false"), "ports[0].alias: expected a string, found boolean false"),
        (bare_port("device = { path = \"/dev/a\" }"), "ports[0].device: expected a string, found a table"),
        (serial_port("").replace("[gateway]\nname = \"gw\"", "gateway = \"gw\""), "gateway: expected a [gateway] table, found string \"gw\""),
        (serial_port("").replace("[gateway]\nname = \"gw\"", "store = 5"), "store: expected a [store] table, found integer 5"),
        ("ports = [1]\n".to_string(), "ports[0]: expected a [[ports]] table, found integer 1"),
        ("ports = \"pbx1\"\n".to_string(), "ports: expected [[ports]] tables, found string \"pbx1\""),
        // ports list
        ("[gateway]\nname = \"gw\"\n".to_string(), "ports: configure at least one port"),
        ("ports = []\n".to_string(), "ports: configure at least one port"),
    ];
    for (text, expected) in cases {
        one_problem(text, expected);
    }
}

#[test]
fn duplicates_between_ports_name_both_indexes() {
    let text = r#"
        [[ports]]
        name = "a"
        device = "/dev/ttyS0"
        [[ports]]
        name = "b"
        listen = "0.0.0.0:5101"
        [[ports]]
        name = "a"
        device = "/dev/ttyS0"
        [[ports]]
        name = "d"
        listen = "0.0.0.0:5101"
        [[ports]]
        name = "e"
        listen = "127.0.0.1:0"
        [[ports]]
        name = "f"
        listen = "127.0.0.1:0"
        [[ports]]
        name = "g"
        connect = "pbx:1752"
        [[ports]]
        name = "h"
        connect = "pbx:1752"
    "#;
    let found = problems(text);
    assert_eq!(
        found,
        [
            "ports[2].name: \"a\" is also the name of ports[0]; port names must be unique",
            "ports[2].device: /dev/ttyS0 is also the device of ports[0]; a device can be read by one port only",
            "ports[3].listen: 0.0.0.0:5101 is also the listen address of ports[1]; an address can be used by one port only",
        ]
    );
}

#[test]
fn port_limit() {
    let mut text = String::from("[gateway]\nname = \"gw\"\n");
    for i in 0..=MAX_PORTS {
        text.push_str(&format!(
            "[[ports]]\nname = \"p{i}\"\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    assert_eq!(
        problems(&text),
        ["ports: 1025 ports are configured; at most 1024 are allowed"]
    );
    let trimmed: String = text
        .lines()
        .take(2 + 3 * MAX_PORTS)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(from_toml_str(&trimmed).unwrap().ports.len(), MAX_PORTS);
}

#[test]
fn tcp_sources() {
    for addr in ["0.0.0.0:5101", "[::]:5101", "127.0.0.1:0", "[::1]:0"] {
        let port = one_port(&bare_port(&format!("listen = \"{addr}\"")));
        assert_eq!(port.source, PortSource::Listen { addr: addr.into() });
        assert_eq!(port.serial, SerialSettings::default());
    }
    #[rustfmt::skip]
    let cases = [
        "10.1.2.3:1752",
        "pbx.example:1",
        "[fd00::1]:65535",
        "pbx-1:80",
    ];
    for addr in cases {
        let port = one_port(&bare_port(&format!("connect = \"{addr}\"")));
        assert_eq!(port.source, PortSource::Connect { addr: addr.into() });
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"
        colour = "blue"
        [gateway]
        name = "a/b"
        [store]
        cache_mb = 0
        [[ports]]
        name = "pbx1"
        device = "/dev/ttyS0"
        sped = 9600
        speed = "fast"
        data_bits = 9
        parity = "foo"
        billing_eor = '\xZZ'
        [[ports]]
        name = "pbx1"
        listen = "0.0.0.0:1"
        connect = "h:1"
        [[ports]]
        name = "p3"
        connect = "h:1"
        speed = 9600
        billing_timeout = "abc"
        reconnect_max = 0
    "#;
    let err = from_toml_str(text).unwrap_err();
    let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "colour",
            "gateway.name",
            "store.cache_mb",
            "ports[0].sped",
            "ports[0].speed",
            "ports[0].data_bits",
            "ports[0].parity",
            "ports[0].billing_eor",
            "ports[1]",
            "ports[2].billing_timeout",
            "ports[2].reconnect_max",
            "ports[1].name",
        ],
        "{found:#?}"
    );
    // Display: one problem per line, each `key: message`.
    let display = err.to_string();
    assert_eq!(display.lines().count(), keys.len());
    for (line, problem) in display.lines().zip(err.problems()) {
        assert_eq!(line, format!("{}: {}", problem.key, problem.message));
    }
}

#[test]
fn unreadable_and_non_toml_files() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.toml");
    let err = load_with_env(&missing, HashMap::new()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Read);
    assert_eq!(err.path(), Some(missing.as_path()));
    assert!(std::error::Error::source(&err).is_some());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: cannot read", missing.display())),
        "{text}"
    );

    let err = load_with_env(dir.path(), HashMap::new()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Read);
    assert!(err.to_string().contains(&dir.path().display().to_string()));

    let bad = write(&dir, "bad.toml", b"[gateway\nname = 1\n");
    let err = load_with_env(&bad, HashMap::new()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Syntax);
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "{}: not a TOML file: TOML parse error at line 1",
            bad.display()
        )),
        "{text}"
    );

    let binary = write(&dir, "binary.toml", b"name = \"\xff\xfe\"\n");
    let err = load_with_env(&binary, HashMap::new()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Syntax);
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");

    let err = from_toml_str("a = =").unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Syntax);
    assert_eq!(err.path(), None);
    assert!(
        err.to_string()
            .starts_with("<string>: not a TOML file: TOML parse error at line 1, column 5"),
        "{err}"
    );
}

#[test]
fn invalid_file_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", b"[store]\ncache_mb = 0\n");
    let err = load_with_env(&path, HashMap::new()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Invalid);
    assert_eq!(err.path(), Some(path.as_path()));
}

#[test]
fn env_overrides_gateway_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.toml",
        serial_port("[store]\ncache_mb = 16").as_bytes(),
    );
    let config = load_with_env(
        &path,
        env(&[
            ("BILLBOX__GATEWAY__NAME", "gw2"),
            ("BILLBOX__GATEWAY__DATA_DIR", "/data"),
            ("BILLBOX__GATEWAY__SPOOL_DIR", "/spool"),
            ("BILLBOX__STORE__CACHE_MB", "64"),
            ("BILLBOX__STORE__MIN_FREE_MB", "0"),
            ("BILLBOX_OTHER", "ignored"),
            ("BILLBOX", "ignored"),
            ("OTHER__GATEWAY__NAME", "ignored"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(config.gateway.name, "gw2");
    assert_eq!(config.gateway.data_dir, PathBuf::from("/data"));
    assert_eq!(config.gateway.spool_dir, PathBuf::from("/spool"));
    assert_eq!(config.store.cache_mb, 64);
    assert_eq!(config.store.min_free_mb, 0);
    assert_eq!(config.ports[0].name, "pbx1");

    // Without overrides the file's values stand.
    let config = load_with_env(&path, HashMap::new()).unwrap();
    assert_eq!(config.gateway.name, "gw");
    assert_eq!(config.store.cache_mb, 16);
    assert_eq!(config.store.min_free_mb, 64);
}

#[test]
fn min_free_mb() {
    // Default 64; 0 (no check) and the top of the range are allowed.
    let config = from_toml_str(&serial_port("")).unwrap();
    assert_eq!(config.store.min_free_mb, 64);
    assert_eq!(StoreConfig::default().min_free_mb, 64);
    for (value, expected) in [("0", 0), ("1", 1), ("1048576", 1_048_576)] {
        let config =
            from_toml_str(&serial_port(&format!("[store]\nmin_free_mb = {value}"))).unwrap();
        assert_eq!(config.store.min_free_mb, expected);
        assert_eq!(config.store.cache_mb, 8);
    }
    // Out of range: the problem names the key.
    assert_eq!(
        problems(&serial_port("[store]\nmin_free_mb = 2000000")),
        ["store.min_free_mb: 2000000 is out of range; use 0 to 1048576 (MiB)"]
    );

    // From the environment, over the file's value.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.toml",
        serial_port("[store]\nmin_free_mb = 128").as_bytes(),
    );
    let config = load_with_env(&path, HashMap::new()).unwrap();
    assert_eq!(config.store.min_free_mb, 128);
    let config = load_with_env(&path, env(&[("BILLBOX__STORE__MIN_FREE_MB", "1024")])).unwrap();
    assert_eq!(config.store.min_free_mb, 1024);
    let config = load_with_env(&path, env(&[("billbox__store__min_free_mb", "0")])).unwrap();
    assert_eq!(config.store.min_free_mb, 0);
    let err = load_with_env(&path, env(&[("BILLBOX__STORE__MIN_FREE_MB", "1048577")])).unwrap_err();
    let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        ["store.min_free_mb: 1048577 is out of range; use 0 to 1048576 (MiB) (set by environment variable BILLBOX__STORE__MIN_FREE_MB)"]
    );
}

#[test]
fn env_values_are_taken_literally() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", serial_port("").as_bytes());
    for name in ["1234", "007", "true", "TRUE", "1e3", "inf", "-1", "12.50"] {
        let config = load_with_env(&path, env(&[("BILLBOX__GATEWAY__NAME", name)])).unwrap();
        assert_eq!(config.gateway.name, name);
    }
    // Keys are case-insensitive, like the config crate's.
    let config = load_with_env(&path, env(&[("billbox__gateway__name", "lower")])).unwrap();
    assert_eq!(config.gateway.name, "lower");
}

#[test]
fn env_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", serial_port("").as_bytes());
    #[rustfmt::skip]
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("BILLBOX__GATEWAY__NAMEX", "x")], "gateway.namex: unknown key; did you mean `name`? (set by environment variable BILLBOX__GATEWAY__NAMEX)"),
        (&[("BILLBOX__GATEWAY__NAME", "a/b")], "gateway.name: \"a/b\" contains `/`; it starts file names, so it cannot contain `/` (set by environment variable BILLBOX__GATEWAY__NAME)"),
        (&[("BILLBOX__GATEWAY__NAME", "")], "gateway.name: must not be empty (set by environment variable BILLBOX__GATEWAY__NAME)"),
        (&[("BILLBOX__STORE__CACHE_MB", "lots")], "store.cache_mb: expected a whole number, found string \"lots\" (set by environment variable BILLBOX__STORE__CACHE_MB)"),
        (&[("BILLBOX__STORE__MIN_FREE_MB", "lots")], "store.min_free_mb: expected a whole number, found string \"lots\" (set by environment variable BILLBOX__STORE__MIN_FREE_MB)"),
        (&[("BILLBOX__STORE__MIN_FREE_MBX", "1")], "store.min_free_mbx: unknown key; did you mean `min_free_mb`? (set by environment variable BILLBOX__STORE__MIN_FREE_MBX)"),
        (&[("BILLBOX__STORE__CACHE_MB", "0")], "store.cache_mb: 0 is out of range; use 1 to 4096 (MiB) (set by environment variable BILLBOX__STORE__CACHE_MB)"),
        (&[("BILLBOX__COLOUR__X", "x")], "colour: unknown key; the keys here are gateway, store, ports, delivery, carbon_copy, metrics, transactions, tcp_feed (set by environment variable BILLBOX__COLOUR__X)"),
        (&[("BILLBOX__PORTS__0__NAME", "x")], "ports: ports cannot be set from the environment (BILLBOX__PORTS__0__NAME); configure [[ports]] in the file"),
        (&[("BILLBOX__GATEWAY", "x")], "BILLBOX__GATEWAY: not a configuration key; override variables are named BILLBOX__SECTION__KEY"),
        (&[("BILLBOX__GATEWAY__NAME__X", "x")], "BILLBOX__GATEWAY__NAME__X: not a configuration key"),
        (&[("BILLBOX__GATEWAY__NAME", "a"), ("billbox__gateway__name", "b")], "gateway.name: set by both environment variables BILLBOX__GATEWAY__NAME and billbox__gateway__name"),
    ];
    for (vars, expected) in cases {
        let err = load_with_env(&path, env(vars)).unwrap_err();
        let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
        assert_eq!(err.kind(), ConfigErrorKind::Invalid);
        assert!(
            found.len() == 1 && found[0].starts_with(expected),
            "expected\n  {expected}\ngot\n{found:#?}"
        );
    }
}

#[test]
fn load_reads_the_process_environment() {
    // Only checks that `load` works on a file; the process environment of
    // a test run is not ours to change (tests run in parallel).
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", serial_port("").as_bytes());
    let has_overrides = std::env::vars_os().any(|(k, _)| {
        k.to_str()
            .is_some_and(|k| k.to_lowercase().starts_with("billbox__"))
    });
    if !has_overrides {
        assert_eq!(
            load(&path).unwrap(),
            from_toml_str(&serial_port("")).unwrap()
        );
    }
}

/// The complete example in docs/configuration.md parses, and the
/// reference mentions every key.
#[test]
fn documentation_matches_the_code() {
    let doc = include_str!("../../../docs/configuration.md");
    let example = doc
        .split("## Complete example")
        .nth(1)
        .and_then(|rest| rest.split("```toml\n").nth(1))
        .and_then(|block| block.split("\n```").next())
        .expect("a ```toml block under ## Complete example");
    let config = from_toml_str(example).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.ports.len() >= 3);
    assert!(config.delivery.is_some());
    assert!(config.carbon_copies.len() >= 2);
    assert!(
        example.contains("\n[metrics]\n"),
        "the example lacks [metrics]"
    );
    assert!(config.ports.iter().any(|p| p.quiet_alarm.is_some()));
    for section in ["## `[delivery]`", "## `[[carbon_copy]]`", "## `[metrics]`"] {
        assert!(doc.contains(section), "docs lack {section}");
    }
    let sections = model::section_keys();
    let keys = |name: &str| &sections.iter().find(|(s, _)| *s == name).unwrap().1;
    #[rustfmt::skip]
    let cases = [
        "gateway",
        "store",
        "ports",
        "delivery",
        "carbon_copy",
        "metrics",
    ];
    for section in cases {
        for key in keys(section) {
            assert!(
                doc.contains(&format!("### `{key}`")),
                "docs lack a section for {key}"
            );
        }
    }
    assert!(
        config.transactions.is_some(),
        "the example lacks [transactions]"
    );
    let transactions = doc
        .split("\n## `[transactions]`\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a ## `[transactions]` section");
    for key in keys("transactions") {
        assert!(
            transactions
                .lines()
                .any(|l| l.starts_with("### ") && l.contains(&format!("`{key}`"))),
            "the [transactions] docs lack a section for {key}"
        );
    }
    // Keys that are also other sections' keys: each section needs its own.
    let feeds = doc
        .split("\n## `[[tcp_feed]]`\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a ## `[[tcp_feed]]` section");
    for key in keys("tcp_feed") {
        assert!(
            feeds.contains(&format!("### `{key}`")),
            "the [[tcp_feed]] docs lack a section for {key}"
        );
    }
    // `listen` is also a port key: the [metrics] section needs its own.
    let metrics = doc
        .split("\n## `[metrics]`\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a ## `[metrics]` section");
    for key in keys("metrics") {
        assert!(
            metrics.contains(&format!("### `{key}`")),
            "the [metrics] docs lack a section for {key}"
        );
    }
}

#[test]
fn serial_keys_on_a_tcp_port_with_a_bad_address_are_no_problem_of_their_own() {
    assert_eq!(
        problems(&bare_port("listen = \"nowhere\"\nspeed = 9600")),
        [
            "ports[0].listen: \"nowhere\" is not an ip:port address; write e.g. \"0.0.0.0:5101\" or \"[::]:5101\"",
        ]
    );
    // With a serial device, they are checked as serial settings.
    assert_eq!(
        problems(&bare_port("device = 5\ndata_bits = 9")),
        [
            "ports[0].device: expected a string, found integer 5",
            "ports[0].data_bits: 9 is not a data bit count; use 5, 6, 7 or 8",
        ]
    );
}

fn url(text: &str) -> ServerUrl {
    text.parse().unwrap()
}

/// FULL with every delivery key set.
const MIRRORING: &str = r#"
[store]
cache_mb = 64
max_records = 5000
when_full = "drop_oldest"
min_free_mb = 512
flush_timeout = "90s"
retain = "30d"

[delivery]
method = "failover"
primary = "http://billing-a:8080/billing"
secondary = "http://billing-b:8080/billing"
attempts = 5
retry_delay = "2s"
suspend = "10m"
request_timeout = "30s"
batch_max = 50
failback_after = "10m"
window = 8
connections = 4

[[carbon_copy]]
name = "audit"
url = "http://audit:9000/cc"
reliable = true

[[carbon_copy]]
url = "http://10.0.0.9/mirror?gw=lobby"

[[carbon_copy]]
name = "x.3"
url = "http://[fd00::9]:81"
reliable = false

[[ports]]
name = "pbx1"
device = "/dev/ttyUSB0"
"#;

#[test]
fn full_delivery_config() {
    let config = from_toml_str(MIRRORING).unwrap();
    assert_eq!(
        config.store,
        StoreConfig {
            cache_mb: 64,
            max_records: 5000,
            when_full: WhenFull::DropOldest,
            min_free_mb: 512,
            flush_timeout: Duration::from_secs(90),
            retain: Duration::from_secs(30 * 86400),
        }
    );
    assert_eq!(
        config.delivery,
        Some(DeliveryConfig {
            method: Method::Failover,
            primary: url("http://billing-a:8080/billing"),
            secondary: Some(url("http://billing-b:8080/billing")),
            attempts: 5,
            retry_delay: Duration::from_secs(2),
            suspend: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            batch_max: 50,
            failback_after: Some(Duration::from_secs(600)),
            window: 8,
            connections: 4,
            security: ServerSecurity::default(),
        })
    );
    assert_eq!(
        config.carbon_copies,
        [
            CarbonCopyConfig {
                name: "audit".into(),
                url: url("http://audit:9000/cc"),
                reliable: true,
                security: ServerSecurity::default(),
            },
            CarbonCopyConfig {
                name: "cc2".into(),
                url: url("http://10.0.0.9/mirror?gw=lobby"),
                reliable: false,
                security: ServerSecurity::default(),
            },
            CarbonCopyConfig {
                name: "x.3".into(),
                url: url("http://[fd00::9]:81"),
                reliable: false,
                security: ServerSecurity::default(),
            },
        ]
    );
    let delivery = config.delivery.as_ref().unwrap();
    assert_eq!(delivery.primary.host(), "billing-a");
    assert_eq!(delivery.primary.port(), 8080);
    assert_eq!(delivery.primary.path_and_query(), "/billing");
    assert_eq!(
        delivery.primary.to_string(),
        "http://billing-a:8080/billing"
    );
    assert_eq!(
        config.carbon_copies[1].url.path_and_query(),
        "/mirror?gw=lobby"
    );
    assert_eq!(config.carbon_copies[2].url.port(), 81);
    assert_eq!(config.carbon_copy("cc2"), Some(&config.carbon_copies[1]));
    assert_eq!(config.carbon_copy("cc1"), None);
}

#[test]
fn delivery_defaults() {
    let config = from_toml_str(&serial_port(
        "[delivery]\nprimary = \"http://billing-a/billing\"\n\
         [[carbon_copy]]\nurl = \"http://a/\"\n[[carbon_copy]]\nurl = \"http://b/\"",
    ))
    .unwrap();
    let delivery = config.delivery.unwrap();
    assert_eq!(
        delivery,
        DeliveryConfig::new(url("http://billing-a/billing"))
    );
    assert_eq!(
        delivery,
        DeliveryConfig {
            method: Method::Failover,
            primary: url("http://billing-a/billing"),
            secondary: None,
            attempts: 3,
            retry_delay: Duration::from_secs(5),
            suspend: Duration::ZERO,
            request_timeout: Duration::from_secs(10),
            batch_max: 1,
            failback_after: Some(Duration::from_secs(300)),
            window: crate::DEFAULT_WINDOW,
            connections: 4,
            security: ServerSecurity::default(),
        }
    );
    assert_eq!(delivery.primary.port(), 80);
    let names: Vec<&str> = config
        .carbon_copies
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["cc1", "cc2"]);
    assert!(config.carbon_copies.iter().all(|c| !c.reliable));

    // Carbon copies without [delivery] are fine, and a carbon copy may
    // (uselessly) be the primary.
    let config = from_toml_str(&serial_port("[[carbon_copy]]\nurl = \"http://a/\"")).unwrap();
    assert_eq!(config.delivery, None);
    assert_eq!(config.carbon_copies.len(), 1);
    assert!(from_toml_str(&serial_port(
        "[delivery]\nprimary = \"http://a/\"\n[[carbon_copy]]\nurl = \"http://a/\""
    ))
    .is_ok());
}

#[test]
fn delivery_value_forms() {
    let delivery = |extra: &str| {
        from_toml_str(&serial_port(&format!(
            "[delivery]\nprimary = \"http://a/\"\n{extra}"
        )))
        .unwrap_or_else(|e| panic!("{extra}: {e}"))
        .delivery
        .unwrap()
    };
    assert_eq!(
        delivery("method = \"round_robin\"").method,
        Method::RoundRobin
    );
    #[rustfmt::skip]
    let cases = [
        ("0", 0),
        ("\"0\"", 0),
        ("7", 7),
        ("\"7\"", 7),
        ("\"1h\"", 3600),
    ];
    for (value, secs) in cases {
        assert_eq!(
            delivery(&format!("retry_delay = {value}")).retry_delay,
            Duration::from_secs(secs),
            "{value}"
        );
    }
    assert_eq!(
        delivery("retry_delay = \"250ms\"").retry_delay,
        Duration::from_millis(250)
    );
    for (value, secs) in [("1", 1), ("\"10m\"", 600), ("\"1500ms\"", 1)] {
        let d = delivery(&format!("request_timeout = {value}")).request_timeout;
        assert_eq!(d.as_secs(), secs, "{value}");
    }
    assert_eq!(delivery("failback_after = 0").failback_after, None);
    assert_eq!(delivery("failback_after = \"0s\"").failback_after, None);
    assert_eq!(
        delivery("failback_after = 90").failback_after,
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        delivery("failback_after = \"7days\"").failback_after,
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(delivery("attempts = 1").attempts, 1);
    assert_eq!(delivery("attempts = 100").attempts, 100);
    assert_eq!(delivery("batch_max = 10000").batch_max, 10000);
    assert_eq!(delivery("connections = 64").connections, 64);
    assert_eq!(delivery("window = 1024").window, 1024);
    assert_eq!(delivery("window = 1").window, 1);
    // The older name of connections is still read.
    assert_eq!(delivery("max_in_flight = 2").connections, 2);
    // Same server by another spelling is still the same server.
    assert!(from_toml_str(&serial_port(
        "[delivery]\nprimary = \"http://a/x\"\nsecondary = \"http://a/y\""
    ))
    .is_ok());

    let store = |extra: &str| {
        from_toml_str(&serial_port(&format!("[store]\n{extra}")))
            .unwrap_or_else(|e| panic!("{extra}: {e}"))
            .store
    };
    assert_eq!(store("max_records = 1").max_records, 1);
    assert_eq!(store("max_records = 1000000000").max_records, 1_000_000_000);
    assert_eq!(store("when_full = \"block\"").when_full, WhenFull::Block);
}

#[test]
fn attempts_is_taken_with_both_methods() {
    let delivery = |extra: &str| {
        from_toml_str(&serial_port(&format!(
            "[delivery]\nprimary = \"http://a/\"\nsecondary = \"http://b/\"\n{extra}"
        )))
        .unwrap_or_else(|e| panic!("{extra}: {e}"))
        .delivery
        .unwrap()
    };
    for method in ["failover", "round_robin"] {
        for n in [1, 2, 100] {
            let d = delivery(&format!("method = \"{method}\"\nattempts = {n}"));
            assert_eq!(d.attempts, n, "{method}");
        }
    }
    let d = delivery("method = \"round_robin\"\nattempts = 2\nsuspend = \"30s\"");
    assert_eq!(d.method, Method::RoundRobin);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.suspend, Duration::from_secs(30));
    // failback_after is failover's: with round robin, a warning.
    let config = from_toml_str(&serial_port(
        "[delivery]\nprimary = \"http://a/\"\nsecondary = \"http://b/\"\nmethod = \"round_robin\"\nattempts = 2\nsuspend = \"30s\"\nfailback_after = \"5m\"",
    ))
    .unwrap();
    let keys: Vec<&str> = config.warnings.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["delivery.failback_after"]);
}

#[test]
fn suspend_value_forms_bounds_and_default() {
    let delivery = |extra: &str| {
        from_toml_str(&serial_port(&format!(
            "[delivery]\nprimary = \"http://a/\"\n{extra}"
        )))
        .unwrap_or_else(|e| panic!("{extra}: {e}"))
        .delivery
        .unwrap()
    };
    // Default: never suspend.
    assert_eq!(delivery("").suspend, Duration::ZERO);
    assert_eq!(
        DeliveryConfig::new(url("http://a/")).suspend,
        Duration::ZERO
    );
    #[rustfmt::skip]
    let cases = [
        ("0", Duration::ZERO),
        ("\"0s\"", Duration::ZERO),
        ("30", Duration::from_secs(30)),
        ("\"30\"", Duration::from_secs(30)),
        ("\"1500ms\"", Duration::from_millis(1500)),
        ("\"10m\"", Duration::from_secs(600)),
        ("\"1d\"", Duration::from_secs(86400)),
        ("\"24h\"", Duration::from_secs(86400)),
    ];
    for (value, d) in cases {
        assert_eq!(
            delivery(&format!("suspend = {value}")).suspend,
            d,
            "{value}"
        );
    }
    #[rustfmt::skip]
    let cases = [
        ("\"1d 1s\"", "delivery.suspend: 1day 1s is too long; at most 1day"),
        ("\"25h\"", "is too long; at most 1day"),
        ("-5", "delivery.suspend: -5 is negative"),
        ("true", "delivery.suspend: expected a duration"),
    ];
    for (value, problem) in cases {
        let err = from_toml_str(&serial_port(&format!(
            "[delivery]\nprimary = \"http://a/\"\nsuspend = {value}"
        )))
        .unwrap_err()
        .to_string();
        assert!(err.contains(problem), "{value}: {err}");
    }
}

/// One invalid value per case; the problem must name the key.
#[test]
fn every_invalid_delivery_value_names_its_key() {
    let with_delivery = |extra: &str| {
        serial_port(&format!(
            "[delivery]\nprimary = \"http://billing-a/billing\"\n{extra}"
        ))
    };
    #[rustfmt::skip]
    let cases: &[(String, &str)] = &[
        (with_delivery("method = \"sometimes\""), "delivery.method: \"sometimes\" is not a delivery method; use failover or round_robin"),
        (with_delivery("method = \"Failover\""), "delivery.method: \"Failover\" is not a delivery method"),
        (with_delivery("attempts = 0"), "delivery.attempts: 0 is out of range; use 1 to 100"),
        (with_delivery("attempts = 101"), "delivery.attempts: 101 is out of range; use 1 to 100"),
        (with_delivery("attempts = \"many\""), "delivery.attempts: expected a whole number, found string \"many\""),
        (with_delivery("retry_delay = \"x\""), "delivery.retry_delay: \"x\" is not a duration"),
        (with_delivery("retry_delay = \"2h\""), "delivery.retry_delay: 2h is too long; at most 1h"),
        (with_delivery("retry_delay = -1"), "delivery.retry_delay: -1 is negative"),
        (with_delivery("request_timeout = 0"), "delivery.request_timeout: must be greater than 0"),
        (with_delivery("request_timeout = \"0s\""), "delivery.request_timeout: must be greater than 0"),
        (with_delivery("request_timeout = \"11m\""), "delivery.request_timeout: 11m is too long; at most 10m"),
        (with_delivery("batch_max = 0"), "delivery.batch_max: 0 is out of range; use 1 to 10000"),
        (with_delivery("batch_max = 10001"), "delivery.batch_max: 10001 is out of range; use 1 to 10000"),
        (with_delivery("failback_after = \"-1\""), "delivery.failback_after: -1 is negative"),
        (with_delivery("failback_after = \"8days\""), "delivery.failback_after: 8days is too long; at most 7days"),
        (with_delivery("failback_after = 1.5"), "delivery.failback_after: expected a duration"),
        (with_delivery("max_in_flight = 0"), "delivery.max_in_flight: 0 is out of range; use 1 to 64"),
        (with_delivery("connections = 65"), "delivery.connections: 65 is out of range; use 1 to 64"),
        (with_delivery("window = 0"), "delivery.window: 0 is out of range; use 1 to 1024"),
        (with_delivery("window = 1025"), "delivery.window: 1025 is out of range; use 1 to 1024"),
        (with_delivery("connections = 2\nmax_in_flight = 2"), "delivery.max_in_flight: given with connections, its newer name; give connections only"),
        // Without effect, the value is judged all the same.
        (with_delivery("method = \"round_robin\"\nfailback_after = \"soon\""), "delivery.failback_after: \"soon\" is not a duration"),
        (with_delivery("method = \"round_robin\"\nattempts = 0"), "delivery.attempts: 0 is out of range; use 1 to 100"),
        (with_delivery("suspend = \"2d\""), "delivery.suspend: 2days is too long; at most 1day"),
        (with_delivery("suspend = -1"), "delivery.suspend: -1 is negative"),
        (with_delivery("suspend = \"soon\""), "delivery.suspend: \"soon\" is not a duration"),
        (with_delivery("suspend = 1.5"), "delivery.suspend: expected a duration"),
        // servers
        (serial_port("[delivery]\nattempts = 3"), "delivery.primary: missing; [delivery] needs a primary server"),
        (serial_port("[delivery]"), "delivery.primary: missing; [delivery] needs a primary server"),
        (serial_port("[delivery]\nprimary = \"ftp://x\""), "delivery.primary: \"ftp://x\": ftp:// is not supported; use http://"),
        (serial_port("[delivery]\nprimary = \"gopher://x\""), "delivery.primary: \"gopher://x\": gopher:// is not supported; use http:// or https://"),
        (serial_port("[delivery]\nprimary = \"http://\""), "delivery.primary: \"http://\" has no host"),
        (serial_port("[delivery]\nprimary = \"http://user:pw@h/\""), "delivery.primary: contains credentials"),
        (serial_port("[delivery]\nprimary = \"\""), "delivery.primary: must not be empty"),
        (serial_port("[delivery]\nprimary = \"billing-a:8080\""), "delivery.primary: \"billing-a:8080\" is not an absolute URL"),
        (serial_port("[delivery]\nprimary = \"http://h:99999/\""), "delivery.primary: \"http://h:99999/\": \"99999\" is not a port"),
        (serial_port("[delivery]\nprimary = 8080"), "delivery.primary: expected a string, found integer 8080"),
        (with_delivery("secondary = \"https://b:x/\""), "delivery.secondary: \"https://b:x/\": \"x\" is not a port"),
        (with_delivery("secondary = \"http://billing-a/billing\""), "delivery.secondary: \"http://billing-a/billing\" is the same server as primary"),
        (with_delivery("secondary = \"http://Billing-A:80/billing\""), "delivery.secondary: \"http://Billing-A:80/billing\" is the same server as primary"),
        // carbon copies
        (serial_port("[[carbon_copy]]\nname = \"a\"\nurl = \"http://a/\"\n[[carbon_copy]]\nname = \"a\"\nurl = \"http://b/\""), "carbon_copy[1].name: \"a\" is also the name of carbon_copy[0]; carbon copy names must be unique"),
        (serial_port("[[carbon_copy]]\nname = \"cc2\"\nurl = \"http://a/\"\n[[carbon_copy]]\nurl = \"http://b/\""), "carbon_copy[1].name: \"cc2\" (this carbon copy's default name) is also the name of carbon_copy[0]"),
        (serial_port("[[carbon_copy]]\nurl = \"http://a/\"\n[[carbon_copy]]\nname = \"cc1\"\nurl = \"http://b/\""), "carbon_copy[1].name: \"cc1\" is also the default name of carbon_copy[0]"),
        (serial_port("[[carbon_copy]]\nurl = \"http://a/cc\"\n[[carbon_copy]]\nurl = \"http://A:80/cc\""), "carbon_copy[1].url: \"http://A:80/cc\" is the same server as carbon_copy[0].url"),
        (serial_port("[[carbon_copy]]\nname = \"a b\"\nurl = \"http://a/\""), "carbon_copy[0].name: \"a b\" contains characters other than"),
        (serial_port("[[carbon_copy]]\nname = \"\"\nurl = \"http://a/\""), "carbon_copy[0].name: must not be empty"),
        (serial_port("[[carbon_copy]]\nname = \"a\""), "carbon_copy[0].url: missing; every carbon copy needs a url"),
        (serial_port("[[carbon_copy]]\nurl = \"https:/a/\""), "carbon_copy[0].url: \"https:/a/\" is not an absolute URL"),
        (serial_port("[[carbon_copy]]\nurl = \"http://a/\"\nreliable = \"yes\""), "carbon_copy[0].reliable: expected true or false, found string \"yes\""),
        (serial_port("[[carbon_copy]]\nurl = \"http://a/\"\nreliable = 1"), "carbon_copy[0].reliable: expected true or false, found integer 1"),
        // unknown keys and wrong shapes
        (with_delivery("retry = 3"), "delivery.retry: unknown key; did you mean `retry_delay`?"),
        (with_delivery("timeout = \"5s\""), "delivery.timeout: unknown key"),
        (serial_port("[[carbon_copy]]\nurl = \"http://a/\"\nreliabel = true"), "carbon_copy[0].reliabel: unknown key; did you mean `reliable`?"),
        (serial_port("[[carbon_copy]]\nurl = \"http://a/\"\nmethod = \"x\""), "carbon_copy[0].method: unknown key; the keys here are name, url, reliable"),
        (serial_port("[carbon_copy]\nurl = \"http://a/\""), "carbon_copy: expected [[carbon_copy]] tables, found a table"),
        (serial_port("").replace("[gateway]", "delivery = \"http://a/\"\n[gateway]"), "delivery: expected a [delivery] table, found string \"http://a/\""),
        (serial_port("").replace("[gateway]", "carbon_copy = [1]\n[gateway]"), "carbon_copy[0]: expected a [[carbon_copy]] table, found integer 1"),
        // store
        (serial_port("[store]\nmax_records = 0"), "store.max_records: 0 is out of range; use 1 to 1000000000"),
        (serial_port("[store]\nmax_records = 1000000001"), "store.max_records: 1000000001 is out of range"),
        (serial_port("[store]\nwhen_full = \"maybe\""), "store.when_full: \"maybe\" is not a when_full policy; use block or drop_oldest"),
        (serial_port("[store]\nwhen_full = true"), "store.when_full: expected a string, found boolean true"),
    ];
    for (text, expected) in cases {
        one_problem(text, expected);
    }
}

#[test]
fn credentials_are_not_repeated_in_problems() {
    let found = problems(&serial_port(
        "[delivery]\nprimary = \"http://billing:s3cret@billing-a/\"",
    ));
    assert_eq!(found.len(), 1);
    assert!(!found[0].contains("s3cret"), "{found:?}");
}

#[test]
fn all_delivery_problems_are_reported_at_once() {
    let text = r#"
        [store]
        max_records = 0
        when_full = "maybe"
        [[ports]]
        name = "p"
        device = "/dev/ttyS0"
        [delivery]
        method = "sometimes"
        primary = "gopher://a/"
        secondary = "http://user:pw@b/"
        attempts = 0
        retry_delay = "x"
        suspend = "25h"
        request_timeout = 0
        batch_max = 0
        failback_after = "-1"
        max_in_flight = 0
        colour = "blue"
        [[carbon_copy]]
        name = "a"
        url = "ftp://a/"
        [[carbon_copy]]
        name = "a"
        url = "http://b/"
        reliabel = true
        [[carbon_copy]]
        name = "c"
        url = "http://b/"
        [[carbon_copy]]
        name = "bad name"
    "#;
    let err = from_toml_str(text).unwrap_err();
    let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "store.max_records",
            "store.when_full",
            "delivery.colour",
            "delivery.method",
            "delivery.primary",
            "delivery.secondary",
            "delivery.attempts",
            "delivery.retry_delay",
            "delivery.suspend",
            "delivery.request_timeout",
            "delivery.batch_max",
            "delivery.failback_after",
            "delivery.max_in_flight",
            "carbon_copy[0].url",
            "carbon_copy[1].reliabel",
            "carbon_copy[3].name",
            "carbon_copy[3].url",
            "carbon_copy[1].name",
            "carbon_copy[2].url",
        ],
        "{found:#?}"
    );
}

#[test]
fn env_overrides_delivery_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.toml",
        serial_port("[delivery]\nprimary = \"http://a/\"\nattempts = 2\n[[carbon_copy]]\nurl = \"http://cc/\"")
            .as_bytes(),
    );
    let config = load_with_env(
        &path,
        env(&[
            ("BILLBOX__DELIVERY__METHOD", "failover"),
            (
                "BILLBOX__DELIVERY__PRIMARY",
                "http://billing-a:8080/billing",
            ),
            (
                "BILLBOX__DELIVERY__SECONDARY",
                "http://billing-b:8080/billing",
            ),
            ("BILLBOX__DELIVERY__ATTEMPTS", "7"),
            ("BILLBOX__DELIVERY__RETRY_DELAY", "9"),
            ("BILLBOX__DELIVERY__SUSPEND", "2m"),
            ("BILLBOX__DELIVERY__REQUEST_TIMEOUT", "1m"),
            ("BILLBOX__DELIVERY__BATCH_MAX", "20"),
            ("BILLBOX__DELIVERY__FAILBACK_AFTER", "0"),
            ("billbox__delivery__max_in_flight", "2"),
            ("BILLBOX__STORE__MAX_RECORDS", "123"),
            ("BILLBOX__STORE__WHEN_FULL", "drop_oldest"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.delivery,
        Some(DeliveryConfig {
            method: Method::Failover,
            primary: url("http://billing-a:8080/billing"),
            secondary: Some(url("http://billing-b:8080/billing")),
            attempts: 7,
            retry_delay: Duration::from_secs(9),
            suspend: Duration::from_secs(120),
            request_timeout: Duration::from_secs(60),
            batch_max: 20,
            failback_after: None,
            window: crate::DEFAULT_WINDOW,
            connections: 2,
            security: ServerSecurity::default(),
        })
    );
    assert_eq!(config.store.max_records, 123);
    assert_eq!(config.store.when_full, WhenFull::DropOldest);
    assert_eq!(config.carbon_copies[0].url, url("http://cc/"));

    // Round robin from the environment.
    let config = load_with_env(
        &write(
            &dir,
            "rr.toml",
            serial_port("[delivery]\nprimary = \"http://a/\"").as_bytes(),
        ),
        env(&[("BILLBOX__DELIVERY__METHOD", "round_robin")]),
    )
    .unwrap();
    assert_eq!(config.delivery.unwrap().method, Method::RoundRobin);
}

#[test]
fn env_alone_can_create_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", serial_port("").as_bytes());
    let config = load_with_env(
        &path,
        env(&[("BILLBOX__DELIVERY__PRIMARY", "http://billing-a/billing")]),
    )
    .unwrap();
    assert_eq!(
        config.delivery,
        Some(DeliveryConfig::new(url("http://billing-a/billing")))
    );

    let config = load_with_env(
        &path,
        env(&[
            ("BILLBOX__DELIVERY__PRIMARY", "http://a/"),
            ("BILLBOX__DELIVERY__BATCH_MAX", "100"),
        ]),
    )
    .unwrap();
    assert_eq!(config.delivery.unwrap().batch_max, 100);
}

#[test]
fn env_delivery_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", serial_port("").as_bytes());
    let with_primary = write(
        &dir,
        "p.toml",
        serial_port("[delivery]\nprimary = \"http://a/\"").as_bytes(),
    );
    /// The file, the environment and the one problem expected.
    type Case<'a> = (&'a PathBuf, &'a [(&'a str, &'a str)], &'a str);
    #[rustfmt::skip]
    let cases: &[Case] = &[
        (&path, &[("BILLBOX__DELIVERY__ATTEMPTS", "3")], "delivery.primary: missing; [delivery] needs a primary server, e.g. primary = \"http://billing-a:8080/billing\" ([delivery] has a key from environment variable BILLBOX__DELIVERY__ATTEMPTS)"),
        (&path, &[("BILLBOX__DELIVERY__PRIMARY", "ftp://a/")], "delivery.primary: \"ftp://a/\": ftp:// is not supported; use http:// or https:// (set by environment variable BILLBOX__DELIVERY__PRIMARY)"),
        (&path, &[("BILLBOX__DELIVERY__PRIMARY", "")], "delivery.primary: must not be empty"),
        (&with_primary, &[("BILLBOX__DELIVERY__ATTEMPTS", "0")], "delivery.attempts: 0 is out of range; use 1 to 100 (attempts on one server) (set by environment variable BILLBOX__DELIVERY__ATTEMPTS)"),
        (&with_primary, &[("BILLBOX__DELIVERY__METHOD", "sometimes")], "delivery.method: \"sometimes\" is not a delivery method; use failover or round_robin (set by environment variable BILLBOX__DELIVERY__METHOD)"),
        (&with_primary, &[("BILLBOX__DELIVERY__RETRY", "5s")], "delivery.retry: unknown key; did you mean `retry_delay`? (set by environment variable BILLBOX__DELIVERY__RETRY)"),
        (&with_primary, &[("BILLBOX__DELIVERY__SECONDARY", "http://a/")], "delivery.secondary: \"http://a/\" is the same server as primary"),
        (&with_primary, &[("BILLBOX__STORE__WHEN_FULL", "maybe")], "store.when_full: \"maybe\" is not a when_full policy; use block or drop_oldest (set by environment variable BILLBOX__STORE__WHEN_FULL)"),
        (&with_primary, &[("BILLBOX__CARBON_COPY__0__URL", "http://cc/")], "carbon_copy: carbon_copy cannot be set from the environment (BILLBOX__CARBON_COPY__0__URL); configure [[carbon_copy]] in the file"),
        (&with_primary, &[("BILLBOX__CARBON_COPY__URL", "http://cc/")], "carbon_copy: carbon_copy cannot be set from the environment (BILLBOX__CARBON_COPY__URL)"),
    ];
    for (path, vars, expected) in cases {
        let err = load_with_env(path, env(vars)).unwrap_err();
        let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
        assert_eq!(err.kind(), ConfigErrorKind::Invalid);
        assert!(
            found.len() == 1 && found[0].starts_with(expected),
            "expected\n  {expected}\ngot\n{found:#?}"
        );
    }
}

/// Found by the config fuzz target: an empty TOML key.
#[test]
fn an_empty_key_is_named_visibly() {
    let e = from_toml_str("\"\" = 81").unwrap_err();
    assert!(e.problems().iter().all(|p| !p.key.is_empty()), "{e}");
    assert!(e.to_string().contains("\"\""), "{e}");
}

#[test]
fn metrics_defaults() {
    let config = from_toml_str(&serial_port("")).unwrap();
    let expected = MetricsConfig {
        enabled: true,
        listen: "127.0.0.1:9109".parse().unwrap(),
        delivery_alarm: Duration::from_secs(600),
        store_alarm_percent: 90,
    };
    assert_eq!(config.metrics, expected);
    assert_eq!(MetricsConfig::default(), expected);
    // An empty section is the same as none.
    let config = from_toml_str(&serial_port("[metrics]")).unwrap();
    assert_eq!(config.metrics, expected);
}

#[test]
fn metrics_values() {
    let metrics = |extra: &str| {
        from_toml_str(&serial_port(&format!("[metrics]\n{extra}")))
            .unwrap_or_else(|e| panic!("{extra}: {e}"))
            .metrics
    };
    let all = metrics(
        "enabled = false\nlisten = \"0.0.0.0:9200\"\ndelivery_alarm = \"30m\"\nstore_alarm_percent = 75",
    );
    assert_eq!(
        all,
        MetricsConfig {
            enabled: false,
            listen: "0.0.0.0:9200".parse().unwrap(),
            delivery_alarm: Duration::from_secs(1800),
            store_alarm_percent: 75,
        }
    );
    assert!(metrics("enabled = true").enabled);
    for addr in ["127.0.0.1:0", "[::]:9109", "[::1]:1", "10.0.0.5:65535"] {
        assert_eq!(
            metrics(&format!("listen = \"{addr}\"")).listen,
            addr.parse::<std::net::SocketAddr>().unwrap(),
            "{addr}"
        );
    }
    #[rustfmt::skip]
    let cases = [
        ("1", Duration::from_secs(1)),
        ("\"90\"", Duration::from_secs(90)),
        ("600", Duration::from_secs(600)),
        ("\"1s\"", Duration::from_secs(1)),
        ("\"1500ms\"", Duration::from_millis(1500)),
        ("\"1h 30m\"", Duration::from_secs(5400)),
        ("\"7days\"", Duration::from_secs(7 * 86400)),
        ("604800", Duration::from_secs(7 * 86400)),
    ];
    for (value, expected) in cases {
        assert_eq!(
            metrics(&format!("delivery_alarm = {value}")).delivery_alarm,
            expected,
            "{value}"
        );
    }
    for (value, expected) in [("1", 1), ("100", 100), ("\"50\"", 50)] {
        assert_eq!(
            metrics(&format!("store_alarm_percent = {value}")).store_alarm_percent,
            expected,
            "{value}"
        );
    }
    // A disabled listener may share a port's address: it is not opened.
    let config = from_toml_str(&bare_port(
        "listen = \"0.0.0.0:9109\"\n[metrics]\nenabled = false\nlisten = \"0.0.0.0:9109\"",
    ))
    .unwrap();
    assert!(!config.metrics.enabled);
    // Port 0 never clashes.
    assert!(from_toml_str(&bare_port(
        "listen = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\""
    ))
    .is_ok());
}

#[test]
fn quiet_alarm_forms() {
    #[rustfmt::skip]
    let cases = [
        ("1", Duration::from_secs(1)),
        ("\"1\"", Duration::from_secs(1)),
        ("3600", Duration::from_secs(3600)),
        ("\"1s\"", Duration::from_secs(1)),
        ("\"90s\"", Duration::from_secs(90)),
        ("\"2h\"", Duration::from_secs(7200)),
        ("\"1h 30m\"", Duration::from_secs(5400)),
        ("\"1500ms\"", Duration::from_millis(1500)),
        ("\"30days\"", Duration::from_secs(30 * 86400)),
        ("2592000", Duration::from_secs(30 * 86400)),
    ];
    for (value, expected) in cases {
        let port = one_port(&serial_port(&format!("quiet_alarm = {value}")));
        assert_eq!(port.quiet_alarm, Some(expected), "{value}");
    }
    // TCP ports take it too; it is not a serial key.
    let port = one_port(&bare_port("connect = \"pbx:1752\"\nquiet_alarm = \"4h\""));
    assert_eq!(port.quiet_alarm, Some(Duration::from_secs(4 * 3600)));
}

/// One invalid value per case; the problem must name the key.
#[test]
fn every_invalid_monitoring_value_names_its_key() {
    #[rustfmt::skip]
    let cases: &[(String, &str)] = &[
        // metrics.enabled
        (serial_port("[metrics]\nenabled = \"true\""), "metrics.enabled: expected true or false, found string \"true\""),
        (serial_port("[metrics]\nenabled = \"no\""), "metrics.enabled: expected true or false, found string \"no\""),
        (serial_port("[metrics]\nenabled = 1"), "metrics.enabled: expected true or false, found integer 1"),
        (serial_port("[metrics]\nenabled = 0.0"), "metrics.enabled: expected true or false, found number 0"),
        // metrics.listen
        (serial_port("[metrics]\nlisten = \"localhost\""), "metrics.listen: \"localhost\" is not an address; write IP:PORT, e.g. \"127.0.0.1:9109\""),
        (serial_port("[metrics]\nlisten = \"localhost:9109\""), "metrics.listen: \"localhost:9109\" is not an address; write IP:PORT"),
        (serial_port("[metrics]\nlisten = \"127.0.0.1\""), "metrics.listen: \"127.0.0.1\" is not an address"),
        (serial_port("[metrics]\nlisten = \"127.0.0.1:65536\""), "metrics.listen: \"127.0.0.1:65536\" is not an address"),
        (serial_port("[metrics]\nlisten = \"::1:9109\""), "metrics.listen: \"::1:9109\" is not an address"),
        (serial_port("[metrics]\nlisten = \"\""), "metrics.listen: \"\" is not an address"),
        (serial_port("[metrics]\nlisten = 9109"), "metrics.listen: expected a string, found integer 9109"),
        (bare_port("listen = \"0.0.0.0:9109\"\n[metrics]\nlisten = \"0.0.0.0:9109\""), "metrics.listen: 0.0.0.0:9109 is also the listen address of ports[0]; give the metrics listener another address"),
        // A listen address that is refused is not compared with the ports.
        (bare_port("listen = \"127.0.0.1:9109\"\n[metrics]\nlisten = \"nowhere\""), "metrics.listen: \"nowhere\" is not an address"),
        // metrics.delivery_alarm
        (serial_port("[metrics]\ndelivery_alarm = 0"), "metrics.delivery_alarm: must be greater than 0"),
        (serial_port("[metrics]\ndelivery_alarm = \"0s\""), "metrics.delivery_alarm: must be greater than 0"),
        (serial_port("[metrics]\ndelivery_alarm = \"500ms\""), "metrics.delivery_alarm: 500ms is too short; at least 1s"),
        (serial_port("[metrics]\ndelivery_alarm = \"8days\""), "metrics.delivery_alarm: 8days is too long; at most 7days"),
        (serial_port("[metrics]\ndelivery_alarm = 604801"), "metrics.delivery_alarm: 7days 1s is too long; at most 7days"),
        (serial_port("[metrics]\ndelivery_alarm = -1"), "metrics.delivery_alarm: -1 is negative"),
        (serial_port("[metrics]\ndelivery_alarm = \"soon\""), "metrics.delivery_alarm: \"soon\" is not a duration"),
        (serial_port("[metrics]\ndelivery_alarm = 1.5"), "metrics.delivery_alarm: expected a duration"),
        (serial_port("[metrics]\ndelivery_alarm = true"), "metrics.delivery_alarm: expected a duration"),
        // metrics.store_alarm_percent
        (serial_port("[metrics]\nstore_alarm_percent = 0"), "metrics.store_alarm_percent: 0 is out of range; use 1 to 100 (percent of store.max_records)"),
        (serial_port("[metrics]\nstore_alarm_percent = 101"), "metrics.store_alarm_percent: 101 is out of range; use 1 to 100"),
        (serial_port("[metrics]\nstore_alarm_percent = -5"), "metrics.store_alarm_percent: -5 is out of range"),
        (serial_port("[metrics]\nstore_alarm_percent = 90.5"), "metrics.store_alarm_percent: expected a whole number, found number 90.5"),
        (serial_port("[metrics]\nstore_alarm_percent = \"90%\""), "metrics.store_alarm_percent: expected a whole number, found string \"90%\""),
        // [metrics] itself
        (serial_port("[metrics]\nport = 9109"), "metrics.port: unknown key; the keys here are enabled, listen, delivery_alarm, store_alarm_percent"),
        (serial_port("[metrics]\nenable = true"), "metrics.enable: unknown key; did you mean `enabled`?"),
        (serial_port("[metrics]\ndelivery = \"5m\""), "metrics.delivery: unknown key; did you mean `delivery_alarm`?"),
        (serial_port("").replace("[gateway]", "metrics = true\n[gateway]"), "metrics: expected a [metrics] table, found boolean true"),
        (serial_port("").replace("[gateway]", "[[metrics]]\n[gateway]"), "metrics: expected a [metrics] table, found an array"),
        (serial_port("").replace("[gateway]", "[metric]\n[gateway]"), "metric: unknown key; did you mean `metrics`?"),
        // quiet_alarm
        (serial_port("quiet_alarm = 0"), "ports[0].quiet_alarm: must be greater than 0; leave quiet_alarm out for no alarm"),
        (serial_port("quiet_alarm = \"0s\""), "ports[0].quiet_alarm: must be greater than 0"),
        (serial_port("quiet_alarm = \"999ms\""), "ports[0].quiet_alarm: 999ms is too short; at least 1s"),
        (serial_port("quiet_alarm = \"30days 1h\""), "ports[0].quiet_alarm: 30days 1h is too long; at most 30days"),
        (serial_port("quiet_alarm = 2592001"), "ports[0].quiet_alarm: 30days 1s is too long; at most 30days"),
        (serial_port("quiet_alarm = -60"), "ports[0].quiet_alarm: -60 is negative"),
        (serial_port("quiet_alarm = \"-1h\""), "ports[0].quiet_alarm: \"-1h\" is negative"),
        (serial_port("quiet_alarm = \"night\""), "ports[0].quiet_alarm: \"night\" is not a duration"),
        (serial_port("quiet_alarm = 1.5"), "ports[0].quiet_alarm: expected a duration"),
        (serial_port("quiet_alarm = false"), "ports[0].quiet_alarm: expected a duration"),
        (serial_port("quiet = \"1h\""), "ports[0].quiet: unknown key; did you mean `quiet_alarm`?"),
    ];
    for (text, expected) in cases {
        one_problem(text, expected);
    }
}

#[test]
fn all_monitoring_problems_are_reported_at_once() {
    let text = r#"
        [metrics]
        enabled = "yes"
        listen = "localhost"
        delivery_alarm = 0
        store_alarm_percent = 0
        colour = "blue"
        [[ports]]
        name = "p"
        device = "/dev/ttyS0"
        quiet_alarm = "forever"
        [[carbon_copy]]
        url = "ftp://a/"
    "#;
    let err = from_toml_str(text).unwrap_err();
    let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "ports[0].quiet_alarm",
            "carbon_copy[0].url",
            "metrics.colour",
            "metrics.enabled",
            "metrics.listen",
            "metrics.delivery_alarm",
            "metrics.store_alarm_percent",
        ],
        "{found:#?}"
    );
}

#[test]
fn env_overrides_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", serial_port("").as_bytes());
    // Variables alone make the section.
    let config =
        load_with_env(&path, env(&[("BILLBOX__METRICS__LISTEN", "0.0.0.0:9109")])).unwrap();
    assert_eq!(config.metrics.listen, "0.0.0.0:9109".parse().unwrap());
    assert_eq!(
        config.metrics,
        MetricsConfig {
            listen: "0.0.0.0:9109".parse().unwrap(),
            ..MetricsConfig::default()
        }
    );

    // Over the file's values, every key.
    let path = write(
        &dir,
        "m.toml",
        serial_port(
            "[metrics]\nenabled = true\nlisten = \"127.0.0.1:9200\"\n\
             delivery_alarm = \"1h\"\nstore_alarm_percent = 50",
        )
        .as_bytes(),
    );
    let config = load_with_env(&path, HashMap::new()).unwrap();
    assert_eq!(config.metrics.listen, "127.0.0.1:9200".parse().unwrap());
    let config = load_with_env(
        &path,
        env(&[
            ("BILLBOX__METRICS__ENABLED", "false"),
            ("BILLBOX__METRICS__LISTEN", "[::]:0"),
            ("BILLBOX__METRICS__DELIVERY_ALARM", "90"),
            ("billbox__metrics__store_alarm_percent", "99"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.metrics,
        MetricsConfig {
            enabled: false,
            listen: "[::]:0".parse().unwrap(),
            delivery_alarm: Duration::from_secs(90),
            store_alarm_percent: 99,
        }
    );
    let config = load_with_env(&path, env(&[("BILLBOX__METRICS__ENABLED", "true")])).unwrap();
    assert!(config.metrics.enabled);
    let config = load_with_env(&path, env(&[("BILLBOX__METRICS__DELIVERY_ALARM", "2m")])).unwrap();
    assert_eq!(config.metrics.delivery_alarm, Duration::from_secs(120));

    // The file's own booleans stay strict: only a variable's "true" or
    // "false" is read as a boolean.
    let quoted = write(
        &dir,
        "q.toml",
        serial_port("[metrics]\nenabled = \"false\"").as_bytes(),
    );
    let err = load_with_env(&quoted, HashMap::new()).unwrap_err();
    assert_eq!(
        err.problems()[0].to_string(),
        "metrics.enabled: expected true or false, found string \"false\""
    );
}

#[test]
fn env_metrics_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", serial_port("").as_bytes());
    #[rustfmt::skip]
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("BILLBOX__METRICS__LISTEN", "localhost:9109")], "metrics.listen: \"localhost:9109\" is not an address; write IP:PORT, e.g. \"127.0.0.1:9109\" (set by environment variable BILLBOX__METRICS__LISTEN)"),
        (&[("BILLBOX__METRICS__LISTEN", "")], "metrics.listen: \"\" is not an address; write IP:PORT, e.g. \"127.0.0.1:9109\" (set by environment variable BILLBOX__METRICS__LISTEN)"),
        (&[("BILLBOX__METRICS__ENABLED", "yes")], "metrics.enabled: expected true or false, found string \"yes\" (set by environment variable BILLBOX__METRICS__ENABLED)"),
        (&[("BILLBOX__METRICS__ENABLED", "TRUE")], "metrics.enabled: expected true or false, found string \"TRUE\""),
        (&[("BILLBOX__METRICS__ENABLED", "1")], "metrics.enabled: expected true or false, found string \"1\""),
        (&[("BILLBOX__METRICS__DELIVERY_ALARM", "0")], "metrics.delivery_alarm: must be greater than 0 (set by environment variable BILLBOX__METRICS__DELIVERY_ALARM)"),
        (&[("BILLBOX__METRICS__STORE_ALARM_PERCENT", "101")], "metrics.store_alarm_percent: 101 is out of range; use 1 to 100 (percent of store.max_records) (set by environment variable BILLBOX__METRICS__STORE_ALARM_PERCENT)"),
        (&[("BILLBOX__METRICS__PORT", "9109")], "metrics.port: unknown key; the keys here are enabled, listen, delivery_alarm, store_alarm_percent (set by environment variable BILLBOX__METRICS__PORT)"),
        (&[("BILLBOX__PORTS__0__QUIET_ALARM", "1h")], "ports: ports cannot be set from the environment (BILLBOX__PORTS__0__QUIET_ALARM); configure [[ports]] in the file"),
    ];
    for (vars, expected) in cases {
        let err = load_with_env(&path, env(vars)).unwrap_err();
        let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
        assert_eq!(err.kind(), ConfigErrorKind::Invalid);
        assert!(
            found.len() == 1 && found[0].starts_with(expected),
            "expected\n  {expected}\ngot\n{found:#?}"
        );
    }
}

#[test]
fn transactions_section_defaults_and_rules() {
    let base = serial_port("");
    let config = from_toml_str(&format!(
        "{base}\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"Hotel-1\"\n"
    ))
    .unwrap();
    let t = config.transactions.unwrap();
    assert_eq!(t.listen, "127.0.0.1:9120".parse().unwrap());
    assert_eq!(
        (t.property_id.as_str(), t.usg_id.as_str()),
        ("Hotel-1", "gw")
    );
    assert_eq!(
        (t.alias.as_str(), t.relay_alias.as_str()),
        ("TRANS", "TRANS_AG")
    );
    assert_eq!(t.billing_records, 50);
    assert_eq!(t.billing_timeout, Some(Duration::from_secs(3600)));
    assert!(t.token.is_none() && t.tls.is_none() && t.ag_secret_key.is_none());
    assert_eq!(t.remember, Duration::from_secs(30 * 24 * 3600));
    one_problem(
        &format!("{base}\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"H\"\nremember = \"10m\"\n"),
        "transactions.remember: 10m is too short; at least 1h",
    );

    one_problem(
        &format!("{base}\n[transactions]\nproperty_id = \"H\"\n"),
        "transactions.listen: missing",
    );
    one_problem(
        &format!("{base}\n[transactions]\nlisten = \"0.0.0.0:9120\"\nproperty_id = \"H\"\n"),
        "transactions.token_file: missing; 0.0.0.0:9120 is reachable",
    );
    one_problem(
        &format!("{base}\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"H\"\nbilling_records = 0\n"),
        "transactions.billing_records: 0 is out of range",
    );
    one_problem(
        &format!("{base}\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"H\"\nalias = \"gw\"\n"),
        "transactions.alias: \"gw\" is also the file prefix of ports[0]",
    );
    one_problem(
        &format!("{base}\n[transactions]\nlisten = \"127.0.0.1:9109\"\nproperty_id = \"H\"\n"),
        "transactions.listen: 127.0.0.1:9109 is also metrics.listen",
    );
    one_problem(
        &format!("{base}\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"H\"\ncolour = 1\n"),
        "transactions.colour",
    );
    // A tls_cert of the wrong type is not half of a pair.
    one_problem(
        &format!("{base}\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"H\"\ntls_cert = 1\n"),
        "transactions.tls_cert: expected a string, found integer 1",
    );

    // A gateway that only takes transactions needs no port.
    let only = from_toml_str(
        "[gateway]\nname = \"gw\"\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"H\"\n",
    )
    .unwrap();
    assert!(only.ports.is_empty() && only.transactions.is_some());

    let dir = tempfile::tempdir().unwrap();
    let token = write(&dir, "token", b"0123456789abcdef-token\n");
    let config = from_toml_str(&format!(
        "{base}\n[transactions]\nlisten = \"0.0.0.0:9120\"\nproperty_id = \"H\"\ntoken_file = {:?}\n",
        token.display().to_string()
    ))
    .unwrap();
    let t = config.transactions.unwrap();
    assert_eq!(
        t.token.as_ref().map(|k| k.expose().to_vec()),
        Some(b"0123456789abcdef-token".to_vec())
    );
}

/// A `[[carbon_copy]]` element that is not a table still counts.
#[test]
fn carbon_copy_indexes_count_every_element() {
    let text = serial_port("").replace(
        "[gateway]",
        "carbon_copy = [1, { url = \"http://a/\" }, { url = \"http://a/\" }]\n[gateway]",
    );
    assert_eq!(
        problems(&text),
        [
            "carbon_copy[0]: expected a [[carbon_copy]] table, found integer 1",
            "carbon_copy[2].url: \"http://a/\" is the same server as carbon_copy[1].url; \
             each carbon copy needs its own server",
        ]
    );
}

/// A section of the wrong shape is listed in the order of the sections.
#[test]
fn sections_of_the_wrong_shape_keep_their_place() {
    let text = "ports = \"pbx1\"\ncarbon_copy = 1\n[gateway]\nname = \"\"\n";
    assert_eq!(
        problems(text),
        [
            "gateway.name: must not be empty",
            "ports: expected [[ports]] tables, found string \"pbx1\"",
            "carbon_copy: expected [[carbon_copy]] tables, found integer 1",
        ]
    );
}

/// The message for a text that is not a duration names the unit of a
/// bare number, which is the key's.
#[test]
fn duration_messages_name_the_unit() {
    let found = problems(&serial_port(
        "billing_timeout = \"abc\"\nreconnect_max = \"abc\"",
    ));
    assert!(
        found[0].ends_with("or a whole number of minutes"),
        "{found:#?}"
    );
    assert!(
        found[1].ends_with("or a whole number of seconds"),
        "{found:#?}"
    );
}

/// A known key where it has no effect: the config loads, with a warning
/// naming the key and why (each case used to be an error).
#[test]
fn settings_without_effect_are_warnings_not_errors() {
    let delivery =
        |extra: &str| serial_port(&format!("[delivery]\nprimary = \"http://a/\"\n{extra}"));
    let both = |extra: &str| delivery(&format!("secondary = \"http://b/\"\n{extra}"));
    #[rustfmt::skip]
    let cases = [
        (bare_port("listen = \"0.0.0.0:5101\"\nspeed = 9600"), "ports[0].speed: has no effect: only serial ports (device) use speed, and this port is TCP"),
        (bare_port("connect = \"h:1\"\ndata_bits = 8"), "ports[0].data_bits: has no effect: only serial ports (device) use data_bits"),
        (bare_port("connect = \"h:1\"\nparity = \"none\""), "ports[0].parity: has no effect"),
        (bare_port("connect = \"h:1\"\nstop_bits = 1"), "ports[0].stop_bits: has no effect"),
        (bare_port("connect = \"h:1\"\nflow = \"none\""), "ports[0].flow: has no effect"),
        (both("method = \"round_robin\"\nfailback_after = \"5m\""), "delivery.failback_after: has no effect: only method = \"failover\" uses failback_after"),
        (delivery("failback_after = \"5m\""), "delivery.failback_after: has no effect: failback_after says when to go back from the secondary, and there is no secondary"),
        (both("method = \"round_robin\"\nattempts = 5"), "delivery.attempts: has no effect: round_robin moves to the other server after every failed attempt, and with suspend = 0 no round is counted"),
        (delivery("attempts = 5"), "delivery.attempts: has no effect: without a secondary every failed attempt is retried on the primary"),
    ];
    for (text, expected) in cases {
        let config = from_toml_str(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
        let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 1, "{text}: {warnings:?}");
        assert!(warnings[0].starts_with(expected), "{text}: {warnings:?}");
    }
    // Where they do have an effect: no warning.
    for text in [
        serial_port("speed = 19200"),
        both("attempts = 5\nfailback_after = \"5m\""),
        both("method = \"round_robin\"\nattempts = 5\nsuspend = \"1m\""),
        delivery("attempts = 5\nsuspend = \"1m\""),
    ] {
        let config = from_toml_str(&text).unwrap();
        assert!(config.warnings.is_empty(), "{text}: {:?}", config.warnings);
    }
}

#[test]
fn tcp_feeds_are_read_and_checked() {
    let two_ports = |extra: &str| {
        format!(
            "{}\n[[ports]]\nname = \"pbx2\"\nlisten = \"127.0.0.1:5101\"\n{extra}",
            serial_port("")
        )
    };
    let config = from_toml_str(&two_ports(
        "[[tcp_feed]]\nlisten = \"0.0.0.0:1752\"\nallow = [\"10.0.0.5\", \"10.1.0.0/16\"]\nports = [\"pbx2\"]\nfrom = \"new\"\n\
         [[tcp_feed]]\nname = \"audit\"\nlisten = \"127.0.0.1:1753\"\n",
    ))
    .unwrap();
    let (a, b) = (&config.tcp_feeds[0], &config.tcp_feeds[1]);
    assert_eq!(
        (a.name.as_str(), a.cursor()),
        ("feed1", "feed:feed1".to_string())
    );
    assert_eq!(a.ports, ["pbx2"]);
    assert_eq!(a.from, FeedStart::New);
    assert!(a.allows("10.1.2.3".parse().unwrap()) && !a.allows("10.0.0.6".parse().unwrap()));
    assert_eq!((b.name.as_str(), b.from), ("audit", FeedStart::Unsent));
    assert!(b.allow.is_empty() && b.allows("192.0.2.1".parse().unwrap()));
    #[rustfmt::skip]
    let cases = [
        ("[[tcp_feed]]\nname = \"x\"", "tcp_feed[0].listen: missing"),
        ("[[tcp_feed]]\nlisten = \"anywhere\"", "tcp_feed[0].listen: \"anywhere\" is not an address"),
        ("[[tcp_feed]]\nlisten = \"0.0.0.0:1\"\nallow = [\"10.0.0.0/40\"]", "tcp_feed[0].allow[0]: \"10.0.0.0/40\": the prefix must be 0 to 32"),
        ("[[tcp_feed]]\nlisten = \"0.0.0.0:1\"\nallow = [5]", "tcp_feed[0].allow[0]: expected a string"),
        ("[[tcp_feed]]\nlisten = \"0.0.0.0:1\"\nports = [\"pbx9\"]", "tcp_feed[0].ports[0]: \"pbx9\" is not a port of this config (pbx1, pbx2)"),
        ("[[tcp_feed]]\nlisten = \"0.0.0.0:1\"\nfrom = \"oldest\"", "tcp_feed[0].from: \"oldest\" is not a feed start"),
        ("[[tcp_feed]]\nlisten = \"127.0.0.1:5101\"", "tcp_feed[0].listen: 127.0.0.1:5101 is also ports[1].listen"),
        ("[[tcp_feed]]\nlisten = \"127.0.0.1:9109\"", "tcp_feed[0].listen: 127.0.0.1:9109 is also metrics.listen"),
        ("[[tcp_feed]]\nlisten = \"0.0.0.0:1\"\n[[tcp_feed]]\nname = \"feed1\"\nlisten = \"0.0.0.0:2\"", "tcp_feed[1].name: \"feed1\" is also the name of another feed"),
        ("[[tcp_feed]]\nlisten = \"0.0.0.0:1\"\n[[tcp_feed]]\nlisten = \"0.0.0.0:1\"", "tcp_feed[1].listen: 0.0.0.0:1 is also tcp_feed[0].listen"),
        ("[[tcp_feed]]\nlisten = \"0.0.0.0:1\"\nport = [\"pbx1\"]", "tcp_feed[0].port: unknown key; did you mean `ports`?"),
    ];
    for (feeds, expected) in cases {
        one_problem(&two_ports(feeds), expected);
    }
}
