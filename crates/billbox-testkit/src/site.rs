//! A test's own directory: `data/`, `spool/`, a config, and what billbox
//! left in them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::records::split_records;

/// A temporary directory with `data/` and `spool/` and a config file.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Default for Site {
    fn default() -> Site {
        Site::new()
    }
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
        self.config_named("gw-test", ports)
    }

    /// [`Site::config`] for a gateway called `name`.
    pub fn config_named(&self, name: &str, rest: &str) -> PathBuf {
        let path = self.dir.path().join("billbox.toml");
        std::fs::write(&path, gateway_toml(name, self.dir.path()) + "\n" + rest).unwrap();
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
        let out = Command::new(crate::bin())
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

/// The `[gateway]` section of a gateway `name` keeping its store in
/// `dir/data` and its files in `dir/spool`.
pub fn gateway_toml(name: &str, dir: &Path) -> String {
    format!(
        "[gateway]\nname = \"{name}\"\ndata_dir = \"{}\"\nspool_dir = \"{}\"\n",
        dir.join("data").display(),
        dir.join("spool").display()
    )
}

/// Files in `dir` with extension `ext` whose name starts with
/// `cyc{alias}-`, sorted by name.
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
