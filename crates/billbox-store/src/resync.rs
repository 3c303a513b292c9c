//! Writing the store's files again after a failed sync.
//!
//! When an `fdatasync` fails, Linux reports the error once and marks the
//! pages clean: the data stays readable from the page cache but is never
//! written, and the next `fdatasync` succeeds (the "fsyncgate" behaviour).
//! Retrying the sync therefore proves nothing, and sled cannot write its
//! log again. So after a failed sync billbox leaves a mark beside the store
//! (`store.resync`) and stops; the next open reads every file of the store
//! (from the page cache when it still holds what the disk lacks) and writes
//! it back in place, syncs it, and only then lets sled open the store. If
//! the mark itself cannot be written, the disk is failing beyond this: the
//! stop is then logged at ERROR with the reason.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How much is read and written back at a time.
const CHUNK: usize = 1 << 20;

/// The mark beside the store directory `dir`: `<dir>.resync`.
pub fn marker(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".resync");
    dir.with_file_name(name)
}

/// Makes `path`'s name durable: an fsync of the directory holding it (`.`
/// for a bare name).
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => File::open(".")?.sync_all(),
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Leaves the mark, durably.
pub fn mark(dir: &Path) -> io::Result<()> {
    let path = marker(dir);
    File::create(&path)?.sync_all()?;
    sync_parent(&path)
}

/// When the mark is there: writes every file of the store again (sled's
/// `conf` and `db`, and the blob files), syncs them and removes the mark.
/// Returns the bytes written, or `None` without a mark.
pub fn if_marked(dir: &Path) -> io::Result<Option<u64>> {
    let mark = marker(dir);
    if !mark.exists() {
        return Ok(None);
    }
    let mut files: Vec<PathBuf> = ["conf", "db"]
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect();
    match std::fs::read_dir(dir.join("blobs")) {
        Ok(entries) => {
            for e in entries {
                files.push(e?.path());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = 0;
    for path in &files {
        bytes += rewrite(path)?;
    }
    for d in [dir.join("blobs"), dir.to_path_buf()] {
        if d.exists() {
            File::open(&d)?.sync_all()?;
        }
    }
    std::fs::remove_file(&mark)?;
    sync_parent(&mark)?;
    Ok(Some(bytes))
}

/// Reads `path` and writes the same bytes back at the same offsets, then
/// syncs it: pages the disk lost become dirty again and are written.
fn rewrite(path: &Path) -> io::Result<u64> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let want = CHUNK.min((len - off) as usize);
        f.read_exact_at(&mut buf[..want], off)?;
        f.write_all_at(&buf[..want], off)?;
        off += want as u64;
    }
    f.sync_all()?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_beside_the_store_and_a_marked_store_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("blobs")).unwrap();
        std::fs::write(store.join("db"), vec![7u8; CHUNK + 10]).unwrap();
        std::fs::write(store.join("blobs").join("1"), b"blob").unwrap();
        assert_eq!(marker(&store), dir.path().join("store.resync"));
        assert_eq!(if_marked(&store).unwrap(), None, "no mark, nothing done");
        mark(&store).unwrap();
        assert_eq!(if_marked(&store).unwrap(), Some(CHUNK as u64 + 14));
        assert!(!marker(&store).exists());
        assert_eq!(
            std::fs::read(store.join("db")).unwrap(),
            vec![7u8; CHUNK + 10]
        );
    }
}
