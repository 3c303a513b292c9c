//! Test support: runs the real `billbox` binary and reads what it left.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_billbox");

/// A running `billbox run` process with its JSON log lines collected.
pub struct Billbox {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<Value>>>,
}

/// Collects a child's JSON log lines from its piped stderr, as they come
/// (a line that is not JSON is kept as `{"raw": line}`).
pub fn json_logs(child: &mut Child) -> Arc<Mutex<Vec<Value>>> {
    let logs = Arc::new(Mutex::new(Vec::new()));
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

impl Billbox {
    pub fn start(config: &Path) -> Billbox {
        Billbox::start_with_env(config, &[])
    }

    /// [`Billbox::start`] with extra environment variables (for example
    /// `BILLBOX_FAILPOINTS`).
    pub fn start_with_env(config: &Path, vars: &[(&str, &str)]) -> Billbox {
        let mut child = Command::new(BIN)
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
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("billbox starts");
        let logs = json_logs(&mut child);
        Billbox { child, logs }
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
    pub fn listen_addr(&self, port: &str) -> std::net::SocketAddr {
        let v = self
            .wait_log("listening for its PBX", Some(port), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("port {port} never listened; logs: {:?}", self.dump()));
        v["local_addr"].as_str().unwrap().parse().unwrap()
    }

    /// The address of the metrics and health listener, from its log line.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let v = self
            .wait_log(
                "Metrics and health are served",
                None,
                Duration::from_secs(20),
            )
            .unwrap_or_else(|| panic!("no metrics listener; logs: {:?}", self.dump()));
        v["listen"].as_str().unwrap().parse().unwrap()
    }

    /// GETs `path` from the metrics listener: (HTTP status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr(), path)
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
}

impl Drop for Billbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_matches(v: &Value, text: &str, port: Option<&str>) -> bool {
    v["message"].as_str().is_some_and(|m| m.contains(text))
        && port.is_none_or(|p| v["port"].as_str() == Some(p))
}

/// Polls `f` every 20 ms until it returns something or `limit` passes.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory with `data/` and `spool/` and a config file.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Writes a config: the `[gateway]` section pointing at this site, then `ports`.
    pub fn config(&self, ports: &str) -> PathBuf {
        let path = self.dir.path().join("billbox.toml");
        let toml = format!(
            "[gateway]\nname = \"gw-test\"\ndata_dir = \"{}\"\nspool_dir = \"{}\"\n\n{ports}",
            self.data().display(),
            self.spool().display()
        );
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// `.txt` files whose name starts with `cyc{alias}-`, sorted by name.
    pub fn txt_files(&self, alias: &str) -> Vec<PathBuf> {
        files(&self.spool(), alias, "txt")
    }

    pub fn tmp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.spool())
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every record in the port's closed files, in file order, split on `eor`.
    pub fn records_in_files(&self, alias: &str, eor: &[u8]) -> Vec<Vec<u8>> {
        self.txt_files(alias)
            .iter()
            .flat_map(|f| split_records(&std::fs::read(f).unwrap(), eor))
            .collect()
    }

    /// Runs `billbox inspect` (billbox must be stopped): port name -> stats.
    pub fn inspect(&self) -> HashMap<String, Value> {
        let out = Command::new(BIN)
            .args(["inspect", "--config"])
            .arg(self.dir.path().join("billbox.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "inspect failed: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["port"].as_str().unwrap().to_string(), v)
            })
            .collect()
    }
}

pub fn files(dir: &Path, alias: &str, ext: &str) -> Vec<PathBuf> {
    let prefix = format!("cyc{alias}-");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&prefix)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Splits file contents back into records: each ends after `eor`; a tail
/// without one is a record of its own.
pub fn split_records(body: &[u8], eor: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + eor.len() <= body.len() {
        if &body[i..i + eor.len()] == eor {
            out.push(body[start..i + eor.len()].to_vec());
            i += eor.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if start < body.len() {
        out.push(body[start..].to_vec());
    }
    out
}

/// Asserts `found` holds every record of `sent` exactly once and nothing else.
pub fn assert_exactly_once(sent: &[Vec<u8>], found: &[Vec<u8>], what: &str) {
    let mut counts: HashMap<&[u8], i64> = HashMap::new();
    for r in found {
        *counts.entry(r.as_slice()).or_default() += 1;
    }
    let missing: Vec<String> = sent
        .iter()
        .filter(|r| !counts.contains_key(r.as_slice()))
        .take(3)
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    let dupes = counts.values().filter(|c| **c > 1).count();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} records missing, e.g. {missing:?}",
        sent.iter()
            .filter(|r| !counts.contains_key(r.as_slice()))
            .count(),
        sent.len()
    );
    assert_eq!(dupes, 0, "{what}: {dupes} records duplicated");
    assert_eq!(
        found.len(),
        sent.len(),
        "{what}: records that were never sent"
    );
}

pub mod billing;
pub mod receiver;

/// One HTTP/1.0 GET on 127.0.0.1: (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    parse_http_answer(&answer)
}

/// An HTTP answer as read from the socket: (status, body).
pub fn parse_http_answer(answer: &str) -> (u16, String) {
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The value of a Prometheus sample whose name and labels match `series`
/// (e.g. `billbox_records_received_total{port="p"}`), if present.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    let (name, labels) = series
        .split_once('{')
        .map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
    let want: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (head, value) = l.rsplit_once(' ')?;
        let (n, ls) = head
            .split_once('{')
            .map_or((head, ""), |(n, l)| (n, l.trim_end_matches('}')));
        (n == name && want.iter().all(|w| ls.split(',').any(|x| x == *w)))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// One HTTP/1.1 request on 127.0.0.1 (`Connection: close`) with extra
/// header lines (`"Name: value"`): (status, header block, body).
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.set_nodelay(true).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    conn.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}
