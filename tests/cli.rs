//! The command line: validate, version, help, and environment overrides.

use std::process::Command;
use std::time::Duration;

use billbox_testkit::pbx::{Link, TcpPbx};
use billbox_testkit::*;

fn validate(site: &Site, ports: &str) -> std::process::Output {
    let config = site.config(ports);
    Command::new(bin())
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn validate_accepts_a_good_file_and_names_every_bad_key() {
    let site = Site::new();
    let ok = validate(
        &site,
        "[[ports]]\nname = \"pbx1\"\ndevice = \"/dev/ttyUSB0\"\nbilling_timeout = 60\n",
    );
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));

    let bad = validate(
        &site,
        r#"
[[ports]]
name = "pbx1"
device = "/dev/ttyUSB0"
data_bits = 9
parity = "sometimes"
billing_timeout = "soon"

[[ports]]
name = "pbx1"
listen = "not an address"
sped = 9600
"#,
    );
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr);
    for key in [
        "ports[0].data_bits",
        "ports[0].parity",
        "ports[0].billing_timeout",
        "ports[1].listen",
        "ports[1].sped",
    ] {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }
    assert!(err.contains("pbx1"), "the duplicate name is named:\n{err}");

    let missing = Command::new(bin())
        .args(["validate", "--config", "/nonexistent/billbox.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/billbox.toml"));
}

#[test]
fn run_refuses_an_invalid_config() {
    let site = Site::new();
    let config = site.config("[[ports]]\nname = \"p\"\n");
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ports[0]"));
}

#[test]
fn version_and_help() {
    let v = Command::new(bin()).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    let h = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&h.stdout);
    for cmd in ["run", "validate", "inspect", "demo", "--log-format"] {
        assert!(help.contains(cmd), "{cmd} missing from --help");
    }
}

#[test]
fn environment_overrides_the_gateway_name_used_for_files() {
    let site = Site::new();
    let config = site.config(
        "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_records = 1\nbilling_eor = \"\\n\"\n",
    );
    let mut command = Command::new(bin());
    command
        .env("BILLBOX__GATEWAY__NAME", "gw-from-env")
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config);
    let bb = Billbox::spawn(command);
    let addr = bb.listen_addr("p");
    TcpPbx::connect(addr)
        .unwrap()
        .send(b"one record\n")
        .unwrap();
    let files = wait_until(Duration::from_secs(30), || {
        let f = files(&site.spool(), "gw-from-env", "txt");
        (!f.is_empty()).then_some(f)
    })
    .expect("a file named after the gateway from the environment");
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"one record\n");
    // Logs are JSON lines with structured fields.
    let closed = bb
        .wait_log("Billing file is closed", Some("p"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(closed["records"], 1);
    assert_eq!(closed["level"], "INFO");
    assert_eq!(bb.terminate(), Some(0));
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_checks_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["--log-level", "error", "demo", "--records", "40", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = assert_exit(&out, 0);
    assert_eq!(
        stdout.matches("every record in exactly one file").count(),
        3,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("40 of 40 records reached a billing server, sequences 1..n, no gap")
            .count(),
        3,
        "{stdout}"
    );
    // The hotel: the portal's transactions and the AG's relayed packets.
    assert_eq!(
        stdout
            .matches("every one filed once and delivered, REC_NUM 1..n, no gap")
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("billbox kept only \"411111******1111\""),
        "{stdout}"
    );
    assert!(dir.path().join("billbox.toml").exists());
}

/// Every line of `text` as JSON (a line that is not is a failure).
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The demo reads like a story: text lines for what matters, no JSON and
/// no library lines on the terminal; the full JSON log is in a file of the
/// demo directory. `--log-format json` still puts JSON on stderr.
#[test]
fn the_demo_tells_a_story_and_logs_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["demo", "--records", "30", "--dir"])
        .arg(dir.path())
        .env_remove("BILLBOX_LOG")
        .output()
        .unwrap();
    let stdout = assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "nothing on stderr: {stderr}");
    for line in stdout.lines() {
        assert!(!line.trim_start().starts_with('{'), "a JSON line: {line}");
        assert!(
            !line.contains("actix") && !line.contains("workers"),
            "a library line: {line}"
        );
    }
    for event in [
        "Port panasonic is up: a Panasonic on a serial line",
        "Port ipoffice listens on 127.0.0.1:",
        "File closed: cycPANA-trunk1-",
        "The primary billing server (http://",
        "Delivery failed: the primary (http://",
        "Fail-over: delivery goes to the secondary (http://",
        "The backlog is drained",
        "Fail-back: delivery is back on the primary (http://",
        "Every record is in a closed file and at a billing server",
    ] {
        assert!(stdout.contains(event), "{event:?} not told:\n{stdout}");
    }
    // Events in the order they happened.
    let at = |text: &str| stdout.find(text).unwrap();
    assert!(at("Fail-over:") < at("Fail-back:"), "{stdout}");
    // The summary.
    assert_eq!(
        stdout.matches("every record in exactly one file").count(),
        3,
        "{stdout}"
    );
    let log = dir.path().join("billbox.log");
    assert!(
        stdout.contains(&format!(
            "The full log (JSON lines) is in {}",
            log.display()
        )),
        "{stdout}"
    );
    let lines = json_lines(&std::fs::read_to_string(&log).unwrap());
    assert!(lines
        .iter()
        .any(|v| v["message"] == "Billing file is closed."));
    assert!(!lines.iter().any(|v| v["target"]
        .as_str()
        .is_some_and(|t| t.starts_with("actix_server"))));

    // --log-format json: the log is JSON on stderr, the story on stdout.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["--log-format", "json", "demo", "--records", "10", "--dir"])
        .arg(dir.path())
        .env_remove("BILLBOX_LOG")
        .output()
        .unwrap();
    let stdout = assert_exit(&out, 0);
    assert!(stdout.contains("every record in exactly one file"));
    let json = json_lines(&String::from_utf8_lossy(&out.stderr));
    assert!(json
        .iter()
        .any(|v| v["message"] == "Billing file is closed."));
    assert!(!dir.path().join("billbox.log").exists());
}

/// A known setting where it has no effect (a serial setting on a TCP port,
/// `attempts` without a secondary or suspend) used to stop billbox from
/// starting; it is a warning: `validate` prints it and exits 0, `run`
/// logs it once at WARN and runs.
#[test]
fn settings_without_effect_are_warned_about_and_billbox_runs() {
    let site = Site::new();
    let ports = "[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nspeed = 9600\n\
                 billing_records = 1\nbilling_eor = \"\\n\"\n\n\
                 [delivery]\nprimary = \"http://127.0.0.1:9/\"\nattempts = 5\n";
    let out = validate(&site, ports);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    assert!(
        warnings[0].starts_with("warning: ports[0].speed: has no effect"),
        "{stdout}"
    );
    assert!(
        warnings[1].starts_with("warning: delivery.attempts: has no effect"),
        "{stdout}"
    );

    let bb = Billbox::start(&site.config(ports));
    let warned = bb
        .wait_log("A setting has no effect", None, Duration::from_secs(10))
        .expect("the warning is logged");
    assert_eq!(warned["level"], "WARN");
    assert_eq!(warned["key"], "ports[0].speed");
    TcpPbx::connect(bb.listen_addr("p"))
        .unwrap()
        .send(b"one record\n")
        .unwrap();
    wait_until(Duration::from_secs(30), || {
        (!site.txt_files("gw-test").is_empty()).then_some(())
    })
    .expect("billbox runs: the record is filed");
    assert_eq!(
        bb.count_logs("A setting has no effect", None),
        2,
        "once each"
    );
    assert_eq!(bb.terminate(), Some(0));
}

/// Library noise (actix-server's `starting 1 workers` and the like) does
/// not reach the default log at INFO; billbox's own lines do.
#[test]
fn the_default_log_has_no_library_noise() {
    let site = Site::new();
    let bb = Billbox::start(
        &site.config("[[ports]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbilling_eor = \"\\n\"\n"),
    );
    bb.wait_log("billbox is running", None, Duration::from_secs(20))
        .expect("billbox starts");
    let logs = bb.logs.clone();
    assert_eq!(bb.terminate(), Some(0));
    let logs = logs.lock().unwrap();
    let noise: Vec<String> = logs
        .iter()
        .filter(|v| {
            v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("actix_server") || t.starts_with("actix_http"))
        })
        .map(|v| v.to_string())
        .collect();
    assert!(noise.is_empty(), "{noise:#?}");
    assert!(logs.iter().any(
        |v| v["message"] == "The status page is served at /, metrics and health at /metrics, /healthz and /readyz."
    ));
}
