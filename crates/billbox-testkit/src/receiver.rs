//! The reference receiver (`billbox receive`) as a child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::billbox::spawn_logged;
use crate::{log_matches, split_records, wait_until, Logs};

/// A `billbox receive` child process and its JSON log lines. Killed on drop.
pub struct Receiver {
    pub child: Child,
    /// Where it files what it receives.
    pub out: PathBuf,
    /// The temporary directory behind `out`, unless the test chose `out`.
    _dir: Option<tempfile::TempDir>,
    pub logs: Logs,
    pub addr: SocketAddr,
}

impl Receiver {
    /// A receiver on a free port, not syncing, filing into a temporary
    /// directory, with these extra arguments.
    pub fn start(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_path_buf();
        let mut r = Receiver::start_in(&out, false, args);
        r._dir = Some(dir);
        r
    }

    /// A receiver on a free port filing into `out`, syncing before it acks
    /// when `durable`.
    pub fn start_in(out: &Path, durable: bool, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Receiver {
        let mut command = Command::new(crate::bin());
        command
            .args(["--log-format", "json", "--log-level", "info", "receive"])
            .args(["--listen", "127.0.0.1:0", "--durable"])
            .arg(if durable { "true" } else { "false" })
            .arg("--out")
            .arg(out);
        for a in args {
            command.arg(a);
        }
        let (child, logs) = spawn_logged(command);
        let listening = wait_until(Duration::from_secs(20), || {
            logs.lock()
                .unwrap()
                .iter()
                .find(|v| log_matches(v, "listening for billing packets", None))
                .cloned()
        })
        .unwrap_or_else(|| panic!("the receiver did not start: {:?}", logs.lock().unwrap()));
        let addr = listening["listen"].as_str().unwrap().parse().unwrap();
        Receiver {
            child,
            out: out.to_path_buf(),
            _dir: None,
            logs,
            addr,
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/billing", self.addr)
    }

    /// The records it filed for gateway `gw-test`, port `p`, in order.
    pub fn records(&self) -> Vec<Vec<u8>> {
        let file = self.out.join("gw-test").join("p.txt");
        std::fs::read(file)
            .map(|body| split_records(&body, b"\n"))
            .unwrap_or_default()
    }

    pub fn count_logs(&self, text: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| log_matches(v, text, None))
            .count()
    }

    pub fn wait_log(&self, text: &str, at_least: usize) -> bool {
        wait_until(Duration::from_secs(60), || {
            (self.count_logs(text) >= at_least).then_some(())
        })
        .is_some()
    }

    /// SIGTERM, then waits for it to exit (at most 30 s, then SIGKILL).
    pub fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        if wait_until(Duration::from_secs(30), || self.child.try_wait().unwrap()).is_none() {
            let _ = self.child.kill();
            panic!("the receiver did not stop on SIGTERM");
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
