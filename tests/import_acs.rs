//! `billbox import-acs`: realistic `pslave.conf` files from ACS console
//! servers into billbox configs that `billbox validate` accepts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use billbox_config::{Flow, Parity};
use billbox_testkit::bin;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/acs")
        .join(name)
}

fn import_acs(file: &Path, gateway: Option<&str>) -> Output {
    let mut command = Command::new(bin());
    command.arg("import-acs").arg(file);
    if let Some(g) = gateway {
        command.args(["--gateway", g]);
    }
    command.output().unwrap()
}

/// Imports `name`, writes the TOML into `dir`, checks it with `billbox
/// validate`, and reads it back: (config, stderr's summary, the TOML).
fn imported(name: &str, dir: &Path) -> (billbox_config::Config, String, String) {
    let out = import_acs(&fixture(name), Some("gw-acs"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, &out.stdout).unwrap();
    let valid = Command::new(bin())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(valid.status.code(), Some(0), "{name}: {valid:?}");
    let warnings = String::from_utf8_lossy(&valid.stdout);
    assert!(!warnings.contains("warning:"), "{name}: {warnings}");
    let toml = String::from_utf8(out.stdout).unwrap();
    (billbox_config::load(&path).unwrap(), stderr, toml)
}

#[test]
fn the_config_billing_wizards_ports_are_imported_and_the_rest_kept_as_comments() {
    let dir = tempfile::tempdir().unwrap();
    let (config, summary, toml) = imported("acs5000-wizard.conf", dir.path());
    assert_eq!(config.gateway.name, "gw-acs");
    assert_eq!(config.gateway.spool_dir, Path::new("/var/run/DB"));
    let names: Vec<&str> = config.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["s1", "s2"], "s3 is a socket_server port");
    let s1 = &config.ports[0];
    assert_eq!(
        s1.source,
        billbox_config::PortSource::Serial {
            device: "/dev/ttyS1".into()
        }
    );
    assert_eq!(
        (s1.serial.speed, s1.serial.data_bits, s1.serial.stop_bits),
        (9600, 7, 1)
    );
    assert_eq!(
        (s1.serial.parity, s1.serial.flow),
        (Parity::Even, Flow::None)
    );
    assert_eq!(s1.alias.as_deref(), Some("PABX-trunk9"));
    assert_eq!(s1.billing_records, 50);
    assert_eq!(s1.billing_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(s1.billing_eor, b"\r\n");
    let s2 = &config.ports[1];
    assert_eq!((s2.serial.speed, s2.billing_records), (19200, 1000));
    assert_eq!(s2.billing_timeout, Some(Duration::from_secs(15 * 60)));
    assert_eq!(s2.billing_eor, b"\n");
    assert!(
        summary.contains("imported 2 billing ports (s1, s2)"),
        "{summary}"
    );
    // Nothing dropped silently: every key of the file is in the output.
    for kept in [
        "conf.eth_ip 192.168.160.10",
        "all.socket_port 7001+",
        "s1.sniff_mode no",
        "s3.tty ttyS3",
        "s3.alias console-router",
    ] {
        assert!(toml.contains(kept), "{kept} missing from:\n{toml}");
    }
}

#[test]
fn all_ports_take_the_all_defaults_and_a_second_billing_dir_is_a_comment() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, toml) = imported("all-ports-billing.conf", dir.path());
    assert_eq!(config.gateway.spool_dir, Path::new("/var/billing"));
    let aliases: Vec<_> = config
        .ports
        .iter()
        .map(|p| p.alias.clone().unwrap())
        .collect();
    assert_eq!(
        aliases,
        ["PBX-front", "PBX-spa", "PBX-conference"],
        "s4 is a console port"
    );
    for port in &config.ports {
        assert_eq!((port.serial.speed, port.serial.stop_bits), (4800, 2));
        assert_eq!(
            (port.serial.parity, port.serial.flow),
            (Parity::Odd, Flow::Hardware)
        );
        assert_eq!(port.billing_eor, b"\r\n", "octal \\015\\012");
        assert_eq!(port.billing_timeout, Some(Duration::from_secs(30 * 60)));
    }
    assert!(
        toml.contains("# Not mapped: s3.billing_dir /var/billing-conference"),
        "{toml}"
    );
}

#[test]
fn escapes_continuations_and_a_port_turned_off_are_imported() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, toml) = imported("escapes-and-continuations.conf", dir.path());
    let s7 = &config.ports[0];
    assert_eq!(s7.name, "s7");
    assert_eq!(
        s7.source,
        billbox_config::PortSource::Serial {
            device: "/dev/ttyS7".into()
        }
    );
    assert_eq!(s7.billing_eor, [0x03, 0x00]);
    assert_eq!(s7.serial.flow, Flow::Software);
    assert_eq!(s7.billing_records, 0, "0 turns the port off, as in ACS");
    assert_eq!(s7.billing_timeout, None, "0: no time limit");
    let s12 = &config.ports[1];
    assert_eq!(s12.billing_eor, b"#\t\\");
    assert_eq!(s12.serial.speed, 9600, "billbox's default, as ACS's");
    assert!(
        toml.contains("s7.users admin,billing"),
        "the continued line: {toml}"
    );
}

#[test]
fn bad_pslave_files_are_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "s1.protocol billing\ns1.speed fast\n",
            "line 2: s1.speed \"fast\": is not a whole number",
        ),
        (
            "s1.protocol billing\ns1.billing_eor \"\\q\"\n",
            "line 2: s1.billing_eor: `\\q` is not an escape",
        ),
        (
            "s1.protocol billing\nspeed 9600\n",
            "line 2: \"speed 9600\" is not a pslave.conf setting",
        ),
        (
            "s1.protocol socket_server\n",
            "no port has protocol billing",
        ),
        (
            "s1.protocol billing\ns1.flow rts\n",
            "line 2: s1.flow \"rts\": is not a flow control",
        ),
        // ACS's value, billbox's bounds: checked as validate would.
        (
            "s1.protocol billing\ns1.speed 10\n",
            "ports[0].speed: 10 is not a supported speed",
        ),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("pslave.conf");
        std::fs::write(&file, text).unwrap();
        let out = import_acs(&file, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing printed for {text}");
    }
    let out = import_acs(&dir.path().join("missing.conf"), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.conf: cannot read it"));
}
