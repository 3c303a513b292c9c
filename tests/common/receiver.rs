//! The reference receiver (`billbox receive`) as a child process for tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{json_logs, split_records, wait_until, BIN};

/// A `billbox receive` child process and its JSON log lines.
pub struct Receiver {
    pub child: Child,
    pub out: tempfile::TempDir,
    pub logs: Arc<Mutex<Vec<Value>>>,
    pub addr: SocketAddr,
}

impl Receiver {
    pub fn start(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Receiver {
        let out = tempfile::tempdir().unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "json", "--log-level", "info", "receive"])
            .args(["--listen", "127.0.0.1:0", "--durable", "false", "--out"])
            .arg(out.path());
        for a in args {
            command.arg(a);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("billbox receive starts");
        let logs = json_logs(&mut child);
        let listening = wait_until(Duration::from_secs(20), || {
            logs.lock()
                .unwrap()
                .iter()
                .find(|v| {
                    v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("listening for billing packets"))
                })
                .cloned()
        })
        .unwrap_or_else(|| panic!("the receiver did not start: {:?}", logs.lock().unwrap()));
        let addr = listening["listen"].as_str().unwrap().parse().unwrap();
        Receiver {
            child,
            out,
            logs,
            addr,
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/billing", self.addr)
    }

    /// The records it filed for gateway `gw-test`, port `p`, in order.
    pub fn records(&self) -> Vec<Vec<u8>> {
        let file = self.out.path().join("gw-test").join("p.txt");
        std::fs::read(file)
            .map(|body| split_records(&body, b"\n"))
            .unwrap_or_default()
    }

    pub fn count_logs(&self, text: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
            .count()
    }

    pub fn wait_log(&self, text: &str, at_least: usize) -> bool {
        wait_until(Duration::from_secs(60), || {
            (self.count_logs(text) >= at_least).then_some(())
        })
        .is_some()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
