//! The real `billbox` binary as a child process, with its JSON log lines.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use billbox_sim::tcp::{Link, TcpPbx};

use crate::wait_until;

/// The `billbox` binary cargo built for the test or bench that runs: next
/// to its `deps/` directory (`BILLBOX_BIN` names another one).
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("BILLBOX_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        let mut dir = exe.parent().expect("a test binary is in a directory");
        if dir.ends_with("deps") {
            dir = dir.parent().expect("deps is in the profile directory");
        }
        let bin = dir.join(format!("billbox{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "{} not found: run this as an integration test or bench of the billbox package",
            bin.display()
        );
        bin
    })
}

/// JSON log lines as they come; a line that is not JSON is `{"raw": line}`.
pub type Logs = Arc<Mutex<Vec<Value>>>;

/// Collects a child's JSON log lines from its piped stderr, as they come.
pub fn json_logs(child: &mut Child) -> Logs {
    let logs = Logs::default();
    let stderr = child.stderr.take().expect("stderr is piped");
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let v =
                serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "raw": line }));
            sink.lock().unwrap().push(v);
        }
    });
    logs
}

/// Starts `command` with stdout discarded and stderr collected as JSON
/// log lines.
pub fn spawn_logged(mut command: Command) -> (Child, Logs) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    let logs = json_logs(&mut child);
    (child, logs)
}

/// Asserts that a finished command exited with `code`, showing its output
/// otherwise; returns its stdout.
pub fn assert_exit(out: &std::process::Output, code: i32) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Whether a log line's message contains `text` (and, if given, its
/// `port` field is `port`).
pub fn log_matches(v: &Value, text: &str, port: Option<&str>) -> bool {
    v["message"].as_str().is_some_and(|m| m.contains(text))
        && port.is_none_or(|p| v["port"].as_str() == Some(p))
}

/// A running `billbox run` process with its JSON log lines collected.
/// Killed on drop.
pub struct Billbox {
    pub child: Child,
    pub logs: Logs,
}

impl Billbox {
    pub fn start(config: &Path) -> Billbox {
        Billbox::start_with_env(config, &[])
    }

    /// [`Billbox::start`] with extra environment variables (for example
    /// `BILLBOX_FAILPOINTS`).
    pub fn start_with_env(config: &Path, vars: &[(&str, &str)]) -> Billbox {
        let mut command = Command::new(bin());
        command
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info",
                "run",
                "--config",
            ])
            .arg(config)
            // Tests run side by side: each billbox's metrics listener takes
            // a free port (see `metrics_addr`), unless the test chose one.
            .env(
                "BILLBOX__METRICS__LISTEN",
                std::env::var("BILLBOX__METRICS__LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into()),
            )
            .envs(vars.iter().copied());
        Billbox::spawn(command)
    }

    /// Runs `command` (a `billbox` command line a test made itself) with
    /// its stderr collected as JSON log lines.
    pub fn spawn(command: Command) -> Billbox {
        let (child, logs) = spawn_logged(command);
        Billbox { child, logs }
    }

    /// Connects to the listening TCP port `port` as its PBX and sends
    /// `bytes`; the connection stays open as long as the caller keeps it.
    pub fn send(&self, port: &str, bytes: &[u8]) -> TcpPbx {
        let mut pbx = TcpPbx::connect(self.listen_addr(port))
            .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
        pbx.send(bytes)
            .unwrap_or_else(|e| panic!("cannot send to port {port}: {e}"));
        pbx
    }

    /// Waits for a log line whose message contains `text` (and, if given,
    /// whose `port` field is `port`); returns it.
    pub fn wait_log(&self, text: &str, port: Option<&str>, limit: Duration) -> Option<Value> {
        wait_until(limit, || {
            self.logs
                .lock()
                .unwrap()
                .iter()
                .find(|v| log_matches(v, text, port))
                .cloned()
        })
    }

    /// How many log lines contain `text` (for `port`, if given).
    pub fn count_logs(&self, text: &str, port: Option<&str>) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| log_matches(v, text, port))
            .count()
    }

    /// The address a listening port bound, from its log line.
    pub fn listen_addr(&self, port: &str) -> SocketAddr {
        let v = self
            .wait_log("listening for its PBX", Some(port), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("port {port} never listened; logs: {:?}", self.dump()));
        v["local_addr"].as_str().unwrap().parse().unwrap()
    }

    /// The address of the metrics and health listener, from its log line.
    pub fn metrics_addr(&self) -> SocketAddr {
        let v = self
            .wait_log(
                "The status page is served at",
                None,
                Duration::from_secs(20),
            )
            .unwrap_or_else(|| panic!("no metrics listener; logs: {:?}", self.dump()));
        v["listen"].as_str().unwrap().parse().unwrap()
    }

    /// The address of the submit API and AG relay, from its log line.
    pub fn transactions_addr(&self, limit: Duration) -> SocketAddr {
        let v = self
            .wait_log("submit API and AG relay are listening", None, limit)
            .unwrap_or_else(|| panic!("no submit API; logs: {:?}", self.dump()));
        v["listen"].as_str().unwrap().parse().unwrap()
    }

    /// GETs `path` from the metrics listener: (HTTP status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        crate::http::http_get(self.metrics_addr(), path)
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    pub fn dump(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to `limit` for billbox to exit by itself; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_until(limit, || self.child.try_wait().unwrap()).and_then(|s| s.code())
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits; returns the exit code. Waits first until
    /// billbox says it runs (before that, SIGTERM has no handler yet).
    pub fn terminate(mut self) -> Option<i32> {
        self.wait_log("billbox is running", None, Duration::from_secs(20));
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("billbox did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A number from `/proc/PID/status` (`VmRSS:`, `VmHWM:`: kB).
    pub fn proc_status(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time (user + system) so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

impl Drop for Billbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
