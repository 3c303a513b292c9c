//! The sequence guard: a small file beside the store that remembers, per
//! port, a sequence the store is known to have flushed (`confirmed`) and the
//! highest sequence it may have handed out (`reserved`).
//!
//! Why: sled 0.34 opens a damaged database without an error when its log is
//! truncated or has a corrupt segment; it recovers the records before the
//! damage and silently drops the rest (tested in `tests/damage.rs`). Without
//! a record outside sled, billbox would then hand out sequence numbers again
//! that servers already hold. With the guard, a store that comes back with
//! fewer records than `confirmed` is detected (and quarantined by the
//! runtime), and a fresh store starts above `reserved`, so no sequence is
//! ever reused.
//!
//! `reserved` is raised in blocks before sequences are handed out, so the
//! file is written once per [`BLOCK`] records per port, and `confirmed` about
//! once a second after a flush.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How far `reserved` runs ahead of the handed-out sequences.
pub const BLOCK: u64 = 100_000;

const HEADER: &str = "billbox-sequences 1";

/// A port's marks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    pub confirmed: u64,
    pub reserved: u64,
}

/// The guard file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqGuard {
    path: PathBuf,
    pub marks: BTreeMap<String, Mark>,
}

impl SeqGuard {
    /// Reads the guard at `path`; a missing file is an empty guard.
    pub fn load(path: &Path) -> std::io::Result<SeqGuard> {
        let mut guard = SeqGuard {
            path: path.to_path_buf(),
            marks: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(guard),
            Err(e) => return Err(e),
        };
        let bad = |line: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: malformed line {line:?}", path.display()),
            )
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(bad("header"));
        }
        for line in lines.filter(|l| !l.is_empty()) {
            let mut parts = line.split(' ');
            let (Some(port), Some(c), Some(r), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(line));
            };
            let (Ok(confirmed), Ok(reserved)) = (c.parse(), r.parse()) else {
                return Err(bad(line));
            };
            guard.marks.insert(
                port.to_string(),
                Mark {
                    confirmed,
                    reserved,
                },
            );
        }
        Ok(guard)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the guard durably: a temporary file, fsync, rename, fsync of
    /// the directory.
    pub fn save(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::from(HEADER);
        text.push('\n');
        for (port, m) in &self.marks {
            text.push_str(&format!("{port} {} {}\n", m.confirmed, m.reserved));
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sequences");
        assert_eq!(SeqGuard::load(&path).unwrap().marks.len(), 0);
        let mut g = SeqGuard::load(&path).unwrap();
        g.marks.insert(
            "pbx1".into(),
            Mark {
                confirmed: 5,
                reserved: 100_005,
            },
        );
        g.save().unwrap();
        assert_eq!(SeqGuard::load(&path).unwrap(), g);
        std::fs::write(&path, "nonsense\n").unwrap();
        assert!(SeqGuard::load(&path).is_err());
        std::fs::write(&path, format!("{HEADER}\npbx1 x 3\n")).unwrap();
        assert!(SeqGuard::load(&path).is_err());
    }
}
