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

fn problems(text: &str) -> Vec<String> {
    match from_toml_str(text) {
        Ok(config) => panic!("accepted:\n{text}\n{config:#?}"),
        Err(e) => {
            assert_eq!(e.kind(), ConfigErrorKind::Invalid, "{e}");
            e.problems().iter().map(ToString::to_string).collect()
        }
    }
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
    };
    let expected = Config {
        gateway: GatewayConfig {
            name: "gw-lobby".into(),
            data_dir: "/srv/billbox".into(),
            spool_dir: "/srv/spool".into(),
        },
        store: StoreConfig { cache_mb: 128 },
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
    assert_eq!(config.store.cache_mb, 32);
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
    for (value, expected) in [
        ("60", Some(3600)),
        ("\"60\"", Some(3600)),
        ("\"60m\"", Some(3600)),
        ("\"1h\"", Some(3600)),
        ("\"90s\"", Some(90)),
        ("0", None),
        ("\"0\"", None),
        ("\"0s\"", None),
    ] {
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
    for (value, bytes) in [
        (r"'\r\n'", &b"\r\n"[..]),
        (r#""\r\n""#, b"\r\n"),
        (r#""\u0003""#, b"\x03"),
        (r"'\x03\x00'", b"\x03\x00"),
        (r"'\xff'", b"\xff"),
        (r"'\\'", b"\\"),
        (r"'\t|\0'", b"\t|\0"),
        (r#""ETX\\x03""#, b"ETX\x03"),
        ("'\u{e9}'", "\u{e9}".as_bytes()),
    ] {
        let port = one_port(&serial_port(&format!("billing_eor = {value}")));
        assert_eq!(port.billing_eor, bytes, "{value}");
    }
}

/// One invalid value per case; the problem must name the key.
#[test]
fn every_invalid_value_names_its_key() {
    let cases: &[(String, &str)] = &[
        // sources
        (bare_port(""), "ports[0]: no source"),
        (
            bare_port("device = \"/dev/a\"\nlisten = \"0.0.0.0:1\""),
            "ports[0]: device and listen are both set",
        ),
        (
            bare_port("device = \"/dev/a\"\nlisten = \"0.0.0.0:1\"\nconnect = \"h:1\""),
            "ports[0]: device and listen and connect are both set",
        ),
        (
            bare_port("device = \"\""),
            "ports[0].device: must not be empty",
        ),
        (
            bare_port("listen = \"localhost:80\""),
            "ports[0].listen: \"localhost:80\" is not an ip:port address",
        ),
        (bare_port("listen = \"0.0.0.0\""), "ports[0].listen:"),
        (
            bare_port("connect = \"10.1.2.3\""),
            "ports[0].connect: \"10.1.2.3\" has no port",
        ),
        (
            bare_port("connect = \":1752\""),
            "ports[0].connect: \":1752\" has no host",
        ),
        (
            bare_port("connect = \"h:0\""),
            "ports[0].connect: \"h:0\": \"0\" is not a port",
        ),
        (bare_port("connect = \"h:65536\""), "ports[0].connect:"),
        (
            bare_port("connect = \"fd00::1:80\""),
            "ports[0].connect: \"fd00::1:80\": write an IPv6 address in brackets",
        ),
        (bare_port("connect = \"[zz]:80\""), "ports[0].connect:"),
        // serial
        (
            serial_port("data_bits = 9"),
            "ports[0].data_bits: 9 is not a data bit count; use 5, 6, 7 or 8",
        ),
        (
            serial_port("data_bits = 4"),
            "ports[0].data_bits: 4 is not a data bit count",
        ),
        (
            serial_port("parity = \"foo\""),
            "ports[0].parity: \"foo\" is not a parity; use none, odd, even, mark or space",
        ),
        (
            serial_port("parity = \"Even\""),
            "ports[0].parity: \"Even\" is not a parity",
        ),
        (
            serial_port("flow = \"rts\""),
            "ports[0].flow: \"rts\" is not a flow control; use none, hardware or software",
        ),
        (
            serial_port("stop_bits = 3"),
            "ports[0].stop_bits: 3 is not a stop bit count; use 1 or 2",
        ),
        (
            serial_port("speed = 10"),
            "ports[0].speed: 10 is not a supported speed",
        ),
        (
            serial_port("speed = 5000000"),
            "ports[0].speed: 5000000 is not a supported speed",
        ),
        (
            serial_port("speed = -9600"),
            "ports[0].speed: -9600 is not a supported speed",
        ),
        (
            bare_port("listen = \"0.0.0.0:5101\"\nspeed = 9600"),
            "ports[0].speed: only serial ports (device) take speed",
        ),
        (
            bare_port("connect = \"h:1\"\ndata_bits = 8"),
            "ports[0].data_bits: only serial ports (device) take data_bits",
        ),
        (
            bare_port("connect = \"h:1\"\nparity = \"none\""),
            "ports[0].parity: only serial ports (device) take parity",
        ),
        (
            bare_port("connect = \"h:1\"\nstop_bits = 1"),
            "ports[0].stop_bits: only serial ports (device) take stop_bits",
        ),
        (
            bare_port("connect = \"h:1\"\nflow = \"none\""),
            "ports[0].flow: only serial ports (device) take flow",
        ),
        // names
        (
            "[[ports]]\ndevice = \"/dev/a\"\n".to_string(),
            "ports[0].name: missing",
        ),
        (
            bare_port("").replace("pbx1", "pbx 1") + "device = \"/dev/a\"",
            "ports[0].name: \"pbx 1\" contains characters other than",
        ),
        (
            bare_port("").replace("pbx1", "") + "device = \"/dev/a\"",
            "ports[0].name: must not be empty",
        ),
        (
            bare_port("").replace("pbx1", &"p".repeat(65)) + "device = \"/dev/a\"",
            "ports[0].name: \"ppp",
        ),
        (
            serial_port("alias = \"a/b\""),
            "ports[0].alias: \"a/b\" contains `/`",
        ),
        (
            serial_port("alias = \"\""),
            "ports[0].alias: must not be empty",
        ),
        (
            serial_port(&format!("alias = \"{}\"", "a".repeat(65))),
            "ports[0].alias:",
        ),
        (
            serial_port("").replace("name = \"gw\"", "name = \"\""),
            "gateway.name: must not be empty",
        ),
        (
            serial_port("").replace("name = \"gw\"", "name = \"a/b\""),
            "gateway.name: \"a/b\" contains `/`",
        ),
        (
            serial_port("").replace("name = \"gw\"", "name = \"a\\u0000b\""),
            "gateway.name: \"a\\0b\" contains a NUL character",
        ),
        (
            serial_port("").replace("name = \"gw\"", &format!("name = \"{}\"", "g".repeat(65))),
            "gateway.name: \"ggg",
        ),
        (
            serial_port("").replace("name = \"gw\"", "data_dir = \"\""),
            "gateway.data_dir: must not be empty",
        ),
        (
            serial_port("").replace("name = \"gw\"", "spool_dir = \"\""),
            "gateway.spool_dir: must not be empty",
        ),
        // store
        (
            serial_port("[store]\ncache_mb = 0"),
            "store.cache_mb: 0 is out of range; use 1 to 4096",
        ),
        (
            serial_port("[store]\ncache_mb = 4097"),
            "store.cache_mb: 4097 is out of range",
        ),
        // records
        (
            serial_port("billing_eor = \"\""),
            "ports[0].billing_eor: must not be empty",
        ),
        (
            serial_port(r"billing_eor = '\xZZ'"),
            r"ports[0].billing_eor: `\xZZ` is not a valid escape",
        ),
        (
            serial_port(r"billing_eor = '\q'"),
            r"ports[0].billing_eor: `\q` is not a valid escape",
        ),
        (
            serial_port(r"billing_eor = 'abc\'"),
            r"ports[0].billing_eor: `\` is not a valid escape",
        ),
        (
            serial_port(&format!("billing_eor = \"{}\"", "x".repeat(17))),
            "ports[0].billing_eor: is 17 bytes long after decoding; at most 16",
        ),
        (
            serial_port("billing_records = -1"),
            "ports[0].billing_records: -1 is negative",
        ),
        (
            serial_port("billing_records = 4294967296"),
            "ports[0].billing_records: 4294967296 is too large",
        ),
        (
            serial_port("billing_eor = '\\r\\n'\nmax_record_bytes = 1"),
            "ports[0].max_record_bytes: 1 is smaller than billing_eor (2 bytes)",
        ),
        (
            serial_port("max_record_bytes = 0"),
            "ports[0].max_record_bytes: 0 is smaller than billing_eor (1 byte)",
        ),
        (
            serial_port("max_record_bytes = 16777217"),
            "ports[0].max_record_bytes: 16777217 is too large",
        ),
        (
            serial_port("billing_timeout = \"abc\""),
            "ports[0].billing_timeout: \"abc\" is not a duration",
        ),
        (
            serial_port("billing_timeout = -5"),
            "ports[0].billing_timeout: -5 is negative",
        ),
        (
            serial_port("billing_timeout = \"-5\""),
            "ports[0].billing_timeout: -5 is negative",
        ),
        (
            serial_port("billing_timeout = \"-5m\""),
            "ports[0].billing_timeout: \"-5m\" is negative",
        ),
        (
            serial_port("billing_timeout = 1.5"),
            "ports[0].billing_timeout: expected a duration",
        ),
        (
            serial_port("reconnect_max = 0"),
            "ports[0].reconnect_max: must be greater than 0",
        ),
        (
            serial_port("reconnect_max = \"0s\""),
            "ports[0].reconnect_max: must be greater than 0",
        ),
        (
            serial_port("reconnect_max = \"2h\""),
            "ports[0].reconnect_max: 2h is too long; at most 1h",
        ),
        (
            serial_port("reconnect_max = \"soon\""),
            "ports[0].reconnect_max: \"soon\" is not a duration",
        ),
        // unknown keys
        (
            serial_port("").replace("[gateway]", "colour = 1\n[gateway]"),
            "colour: unknown key",
        ),
        (
            serial_port("").replace("[gateway]", "[port]\n[gateway]"),
            "port: unknown key; did you mean `ports`?",
        ),
        (
            serial_port("").replace("name = \"gw\"", "nmae = \"gw\""),
            "gateway.nmae: unknown key; did you mean `name`?",
        ),
        (
            serial_port("[store]\ncache = 1"),
            "store.cache: unknown key; did you mean `cache_mb`?",
        ),
        (
            serial_port("sped = 9600"),
            "ports[0].sped: unknown key; did you mean `speed`?",
        ),
        (
            serial_port("Speed = 9600"),
            "ports[0].Speed: unknown key; did you mean `speed`?",
        ),
        // types
        (
            serial_port("speed = \"fast\""),
            "ports[0].speed: expected a whole number, found string \"fast\"",
        ),
        (
            serial_port("speed = true"),
            "ports[0].speed: expected a whole number, found boolean true",
        ),
        (
            serial_port("speed = 9600.5"),
            "ports[0].speed: expected a whole number, found number 9600.5",
        ),
        (
            serial_port("billing_records = [1]"),
            "ports[0].billing_records: expected a whole number, found an array",
        ),
        (
            serial_port("").replace("name = \"gw\"", "name = 1234"),
            "gateway.name: expected a string, found integer 1234",
        ),
        (
            serial_port("parity = 1"),
            "ports[0].parity: expected a string, found integer 1",
        ),
        (
            serial_port("alias = false"),
            "ports[0].alias: expected a string, found boolean false",
        ),
        (
            bare_port("device = { path = \"/dev/a\" }"),
            "ports[0].device: expected a string, found a table",
        ),
        (
            serial_port("").replace("[gateway]\nname = \"gw\"", "gateway = \"gw\""),
            "gateway: expected a [gateway] table, found string \"gw\"",
        ),
        (
            serial_port("").replace("[gateway]\nname = \"gw\"", "store = 5"),
            "store: expected a [store] table, found integer 5",
        ),
        (
            "ports = [1]\n".to_string(),
            "ports[0]: expected a [[ports]] table, found integer 1",
        ),
        (
            "ports = \"pbx1\"\n".to_string(),
            "ports: expected [[ports]] tables, found string \"pbx1\"",
        ),
        // ports list
        (
            "[gateway]\nname = \"gw\"\n".to_string(),
            "ports: configure at least one port",
        ),
        (
            "ports = []\n".to_string(),
            "ports: configure at least one port",
        ),
    ];
    for (text, expected) in cases {
        let found = problems(text);
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "expected a problem starting with\n  {expected}\nin\n{text}\ngot\n{found:#?}"
        );
        assert_eq!(
            found.len(),
            1,
            "one problem expected for\n{text}\ngot\n{found:#?}"
        );
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
    for addr in [
        "10.1.2.3:1752",
        "pbx.example:1",
        "[fd00::1]:65535",
        "pbx-1:80",
    ] {
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
            "ports[2].speed",
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
    assert_eq!(config.ports[0].name, "pbx1");

    // Without overrides the file's values stand.
    let config = load_with_env(&path, HashMap::new()).unwrap();
    assert_eq!(config.gateway.name, "gw");
    assert_eq!(config.store.cache_mb, 16);
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
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("BILLBOX__GATEWAY__NAMEX", "x")],
            "gateway.namex: unknown key; did you mean `name`? (set by environment variable BILLBOX__GATEWAY__NAMEX)",
        ),
        (
            &[("BILLBOX__GATEWAY__NAME", "a/b")],
            "gateway.name: \"a/b\" contains `/`; it starts file names, so it cannot contain `/` (set by environment variable BILLBOX__GATEWAY__NAME)",
        ),
        (
            &[("BILLBOX__GATEWAY__NAME", "")],
            "gateway.name: must not be empty (set by environment variable BILLBOX__GATEWAY__NAME)",
        ),
        (
            &[("BILLBOX__STORE__CACHE_MB", "lots")],
            "store.cache_mb: expected a whole number, found string \"lots\" (set by environment variable BILLBOX__STORE__CACHE_MB)",
        ),
        (
            &[("BILLBOX__STORE__CACHE_MB", "0")],
            "store.cache_mb: 0 is out of range; use 1 to 4096 (MiB) (set by environment variable BILLBOX__STORE__CACHE_MB)",
        ),
        (
            &[("BILLBOX__COLOUR__X", "x")],
            "colour: unknown key; the keys here are gateway, store, ports (set by environment variable BILLBOX__COLOUR__X)",
        ),
        (
            &[("BILLBOX__PORTS__0__NAME", "x")],
            "ports: ports cannot be set from the environment (BILLBOX__PORTS__0__NAME); configure [[ports]] in the file",
        ),
        (
            &[("BILLBOX__GATEWAY", "x")],
            "BILLBOX__GATEWAY: not a configuration key; override variables are named BILLBOX__SECTION__KEY",
        ),
        (
            &[("BILLBOX__GATEWAY__NAME__X", "x")],
            "BILLBOX__GATEWAY__NAME__X: not a configuration key",
        ),
        (
            &[("BILLBOX__GATEWAY__NAME", "a"), ("billbox__gateway__name", "b")],
            "gateway.name: set by both environment variables BILLBOX__GATEWAY__NAME and billbox__gateway__name",
        ),
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
    for key in raw::field_names::<raw::RawGateway>()
        .iter()
        .chain(raw::field_names::<raw::RawStore>())
        .chain(raw::field_names::<raw::RawPort>())
    {
        assert!(
            doc.contains(&format!("### `{key}`")),
            "docs lack a section for {key}"
        );
    }
}

#[test]
fn serial_keys_on_a_tcp_port_with_a_bad_address_are_still_flagged() {
    assert_eq!(
        problems(&bare_port("listen = \"nowhere\"\nspeed = 9600")),
        [
            "ports[0].listen: \"nowhere\" is not an ip:port address; write e.g. \"0.0.0.0:5101\" or \"[::]:5101\"",
            "ports[0].speed: only serial ports (device) take speed",
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
