//! A mounted faultfs in a temporary directory, for the tests.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use billbox_faultfs::{available, Control, FaultFs};

/// A bound for every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(5);

/// A mount. Fields drop in order: the mount goes before its directories.
pub struct Rig {
    pub fs: FaultFs,
    pub ctl: Control,
    _dir: tempfile::TempDir,
}

/// Whether faultfs works here, probed once per test binary.
fn usable() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| available().map_err(|e| e.to_string()))
        .clone()
}

/// A fresh mount, or `None` (after printing why) where FUSE is unusable.
pub fn rig() -> Option<Rig> {
    if let Err(why) = usable() {
        println!("SKIPPED: {why}");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mount point");
    let fs = FaultFs::mount(&dir.path().join("backing"), &mnt).expect("mount");
    let ctl = fs.control();
    Some(Rig { fs, ctl, _dir: dir })
}

/// `let r = rig!();` returns from the test when FUSE is unusable.
#[macro_export]
macro_rules! rig {
    () => {
        match common::rig() {
            Some(r) => r,
            None => return,
        }
    };
}

impl Rig {
    /// A path on the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.fs.path().to_path_buf()
        } else {
            self.fs.path().join(rel)
        }
    }

    /// fsync of a directory on the mount, the way userland does it.
    pub fn sync_dir(&self, rel: &str) {
        File::open(self.p(rel))
            .and_then(|d| d.sync_all())
            .expect("fsync of a directory");
    }

    /// A file with `data`, its data and its name durable.
    pub fn durable_file(&self, rel: &str, data: &[u8]) {
        let path = self.p(rel);
        let f = File::create(&path).expect("create");
        std::os::unix::fs::FileExt::write_all_at(&f, data, 0).expect("write");
        f.sync_all().expect("fsync");
        self.sync_dir(parent(rel));
    }

    /// The contents of a file on the mount (`None`: it does not exist).
    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        match std::fs::read(self.p(rel)) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {rel}: {e}"),
        }
    }

    /// Whether a path on the mount exists.
    pub fn exists(&self, rel: &str) -> bool {
        match std::fs::symlink_metadata(self.p(rel)) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => panic!("stat {rel}: {e}"),
        }
    }
}

/// The parent of a relative path ("" for the root).
pub fn parent(rel: &str) -> &str {
    Path::new(rel)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("")
}
