//! A fault-injecting FUSE file system for billbox's tests and benches: a
//! passthrough-like file system that models a disk with a volatile write
//! cache, so a test can simulate a power cut (not only a `kill -9`) and see
//! what a program's fsyncs really made durable. Never linked into the
//! daemon.
//!
//! # Layout
//!
//! [`FaultFs::mount`] takes an empty (or new) backing directory and a mount
//! point. The backing directory holds `cur/<ino>`, each file's current
//! contents (what readers see), and `dur/<ino>`, its durable contents (what
//! the disk would hold after a power cut now; absent means empty). Each file
//! keeps in memory the data operations since its last fsync (writes with
//! their bytes, truncates, fallocates), in order: replaying them over
//! `dur/<ino>` gives `cur/<ino>` (except after an
//! [`Action::ErrorLosingWrites`]: the ops it forgot are in `cur` only, until
//! [`Control::sync`] or a cut). Memory use is bounded by the unsynced
//! volume. Directories, names and attributes live in memory only; the state
//! lasts as long as the mount (the backing directory is not a format that
//! can be mounted again).
//!
//! Modules: `model` (the state and every operation on it), `fs` (fuser's
//! `Filesystem` over the model, and the holding, delaying and failing of
//! requests), `control` (the [`Control`] API and its types).
//!
//! # The model
//!
//! *Durable* state is what a disk would hold after a power cut right now;
//! *volatile* state is what the running system sees on top of it.
//!
//! - **File data**: a write, truncate or fallocate is visible at once and
//!   volatile until an `fsync` or `fdatasync` of that file (FUSE_FSYNC,
//!   either flag), which makes all of the inode's data and size durable.
//!   Durability belongs to the inode, whatever its name.
//! - **Names**: create, mknod, mkdir, unlink, rmdir and rename are visible at
//!   once and volatile until an fsync *of their directory* (FUSE_FSYNCDIR,
//!   which is what `File::open(dir)?.sync_all()` sends). The file system is
//!   journaled: one global ordered list holds the pending namespace
//!   operations, and an fsync of directory D commits every pending operation
//!   up to and including the last one that touches D (journal commits are
//!   ordered, so earlier operations in other directories become durable too;
//!   later ones do not). An operation touches the directories whose entries
//!   it changes: create/mkdir/unlink/rmdir their parent, a rename both of its
//!   parents. The durable tree is therefore always the current tree as it
//!   was at some earlier moment.
//! - **Strict POSIX on fsync of a file**: it does not make the file's name
//!   durable. A file created, written and fsynced whose directory was never
//!   fsynced is gone after a cut; its data is an orphan and is freed. A file
//!   `a.tmp` created (directory fsynced), written and fsynced, then renamed
//!   to `a.txt` without a directory fsync is `a.tmp`, with its data, after a
//!   cut.
//! - **Open files** keep working after an unlink until closed. Directories
//!   rename like files.
//! - **Not modeled**: durability of attributes other than the size (mode,
//!   owner and times survive a cut as they are); hard links and symlinks
//!   (ENOSYS); extended attributes (ENOSYS); permission checks (none: every
//!   caller may do everything, as root would); space accounting (statfs
//!   reports the backing file system's numbers or [`Control::set_space`]'s,
//!   and writes never fail for space unless a [`Fault`] says so); shared
//!   writable mmap (refused: files are opened with `FOPEN_DIRECT_IO`).
//!
//! # The kernel side
//!
//! Entries and attributes are answered with a TTL of 0, so after a cut the
//! kernel asks again instead of serving names or sizes the cut dropped; files
//! are opened with `FOPEN_DIRECT_IO`, so the page cache never holds data the
//! model dropped and every write reaches the model with the caller's offset
//! and size (up to the kernel's 1 MiB per request; larger writes arrive
//! split). fuser's session loop runs on one thread (fuser 0.18 can run more,
//! `Config::n_threads`; one is enough because no handler blocks): held and
//! delayed requests are stashed with their reply objects while the loop
//! goes on serving others; everything else is applied at once under one
//! lock. fuser mounts with mount(2) directly (root; no libfuse, no
//! fusermount). There is no unsafe code in this crate.
//!
//! What reaches the model is what reaches FUSE: `sync_file_range(2)`, which
//! sled 0.34 calls after each log write, never does (it works on the page
//! cache only), so sled's own `flush()` makes nothing durable here, as on a
//! disk with a volatile cache; billbox's `fdatasync` of sled's `db` does.
//!
//! # Power cuts
//!
//! [`Control::freeze`] (or a [`Fault`] with [`Action::FreezeBefore`] /
//! [`Action::FreezeAfter`]) stops the disk: every request that reads or
//! changes files or directories is held, unanswered and unapplied. Requests
//! that only look at the namespace (statfs, lookup, getattr, access,
//! opendir, readdir, releasedir, forget) go on being answered, so that a
//! daemon's free-space metric and path lookups keep working; so does flush
//! (close(2) waits for it; it makes nothing durable), and so do the
//! operations faultfs does not implement (ENOSYS at once; a shared `mmap`
//! fails with ENODEV in the kernel, since files are opened with
//! FOPEN_DIRECT_IO). [`Control::cut`] then drops the
//! volatile state as a [`Cut`] says, answers every held request with EIO,
//! makes every open handle stale (EIO) and unfreezes: the program (or its
//! next run) sees what survived. A process blocked on a held request cannot
//! die, even of SIGKILL, until the cut answers it; so for a daemon run as a
//! child process the recipe is: freeze (or let a fault freeze), kill it,
//! cut, then wait for it to exit, and start it again on the same mount.
//! [`Control::thaw`] instead resumes without a cut (a pause: held requests
//! are applied as they arrived; faults are matched on arrival, not at the
//! thaw), and
//! [`Control::sync`] makes everything durable (a known starting point).
//!
//! # Example
//!
//! ```
//! use billbox_faultfs::{available, Cut, FaultFs};
//!
//! if let Err(why) = available() {
//!     println!("SKIPPED: {why}");
//!     return;
//! }
//! let dir = tempfile::tempdir().unwrap();
//! let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
//! std::fs::create_dir(&mnt).unwrap();
//! let fs = FaultFs::mount(&backing, &mnt).unwrap();
//! std::fs::write(fs.path().join("a"), b"lost").unwrap();
//! let report = fs.control().cut(Cut::All);
//! assert!(!fs.path().join("a").exists());
//! assert_eq!(report.writes_dropped, 1);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod control;
mod fs;
mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use control::{
    Action, Control, Cut, CutReport, Fault, FaultId, FrozenAt, Op, Space, Stats, Torn,
};

/// Why [`FaultFs::mount`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The backing directory could not be created or read.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// The backing directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The backing directory is inside the mount point: the file system
    /// would store its data in itself.
    #[error("backing directory {backing} is inside the mount point {mountpoint}")]
    BackingInsideMount {
        /// The backing directory.
        backing: PathBuf,
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// The backing directory already holds files.
    #[error("backing directory {path} is not empty")]
    BackingNotEmpty {
        /// The backing directory.
        path: PathBuf,
    },
    /// The mount point is missing or not a directory.
    #[error("mount point {path}: {source}")]
    Mountpoint {
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The timer thread could not be started.
    #[error("cannot start the timer thread: {0}")]
    Thread(#[source] io::Error),
    /// fuser could not mount (no /dev/fuse, no permission to mount, ...).
    #[error("cannot mount a FUSE file system at {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// fuser's error.
        #[source]
        source: io::Error,
    },
}

/// Why [`available`] says FUSE cannot be used here; its message reads well
/// after `"SKIPPED: "`.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Mounting with mount(2) (fuser's pure-Rust mount) needs root.
    #[error("faultfs needs root to mount FUSE file systems (euid {euid})")]
    NotRoot {
        /// The effective user id.
        euid: u32,
    },
    /// /dev/fuse is missing or cannot be opened.
    #[error("cannot open /dev/fuse: {0}")]
    DevFuse(#[source] io::Error),
    /// The probe's temporary directories could not be made.
    #[error("cannot make a temporary directory for the probe mount: {0}")]
    TempDir(#[source] io::Error),
    /// The probe mount failed.
    #[error("a probe mount failed: {0}")]
    Probe(#[source] Box<MountError>),
    /// The probe mount was made but did not work.
    #[error("a probe mount does not answer as it should: {0}")]
    ProbeIo(#[source] io::Error),
}

/// Whether faultfs can be used here: root, /dev/fuse openable, and a probe
/// mount that works (a file written and read back). Tests print
/// `SKIPPED: <reason>` and return when it fails.
pub fn available() -> Result<(), Unavailable> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Err(Unavailable::NotRoot {
            euid: euid.as_raw(),
        });
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(Unavailable::DevFuse)?;
    let dir = tempfile::tempdir().map_err(Unavailable::TempDir)?;
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).map_err(Unavailable::TempDir)?;
    let fs = FaultFs::mount(&dir.path().join("backing"), &mnt)
        .map_err(|e| Unavailable::Probe(Box::new(e)))?;
    let probe = fs.path().join("probe");
    std::fs::write(&probe, b"probe").map_err(Unavailable::ProbeIo)?;
    let back = std::fs::read(&probe).map_err(Unavailable::ProbeIo)?;
    if back != b"probe" {
        return Err(Unavailable::ProbeIo(io::Error::other(
            "a file read back differs from what was written",
        )));
    }
    drop(fs);
    Ok(())
}

/// A mounted faultfs. Dropping it answers whatever is held with EIO and
/// unmounts (lazily, if a process still uses the mount).
pub struct FaultFs {
    path: PathBuf,
    shared: Arc<fs::Shared>,
    session: Option<fuser::BackgroundSession>,
    timer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFs")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FaultFs {
    /// Mounts an empty file system at `mountpoint` (an existing directory),
    /// keeping its contents in `backing` (created if missing; must be
    /// empty). Returns once the kernel has initialised the connection; the
    /// session runs on a background thread.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<FaultFs, MountError> {
        let path = mountpoint
            .canonicalize()
            .and_then(|p| {
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(io::Error::from_raw_os_error(libc::ENOTDIR))
                }
            })
            .map_err(|source| MountError::Mountpoint {
                path: mountpoint.to_path_buf(),
                source,
            })?;
        let backing_err = |source| MountError::Backing {
            path: backing.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(backing).map_err(backing_err)?;
        let backing = backing.canonicalize().map_err(backing_err)?;
        if backing.starts_with(&path) {
            return Err(MountError::BackingInsideMount {
                backing,
                mountpoint: path,
            });
        }
        let backing_err = |source| MountError::Backing {
            path: backing.clone(),
            source,
        };
        if std::fs::read_dir(&backing)
            .map_err(backing_err)?
            .next()
            .is_some()
        {
            return Err(MountError::BackingNotEmpty { path: backing });
        }
        std::fs::create_dir(backing.join("cur")).map_err(backing_err)?;
        std::fs::create_dir(backing.join("dur")).map_err(backing_err)?;

        let shared = Arc::new(fs::Shared::new(model::Model::new(&backing)));
        let timer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("faultfs-timer".into())
                .spawn(move || fs::timer_loop(shared))
                .map_err(MountError::Thread)?
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("faultfs".into()),
            fuser::MountOption::Subtype("faultfs".into()),
            fuser::MountOption::NoAtime,
        ];
        config.acl = fuser::SessionACL::All;
        let imp = fs::FaultFsImpl {
            shared: shared.clone(),
        };
        let session = match fuser::spawn_mount(imp, &path, &config) {
            Ok(s) => s,
            Err(source) => {
                shared.shut_down();
                let _ = timer.join();
                return Err(MountError::Mount { path, source });
            }
        };
        Ok(FaultFs {
            path,
            shared,
            session: Some(session),
            timer: Some(timer),
        })
    }

    /// The mount point (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle to freeze, cut, inject faults and read statistics.
    pub fn control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        self.shared.shut_down();
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
        let Some(session) = self.session.take() else {
            return;
        };
        match nix::mount::umount(&self.path) {
            Ok(()) => {
                // The kernel ended the connection: the session thread ends.
                let deadline = Instant::now() + Duration::from_secs(5);
                while !session.guard.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if session.guard.is_finished() {
                    let _ = session.join();
                }
            }
            Err(nix::errno::Errno::EBUSY) => {
                // Still in use (a child's working directory, an open file):
                // detach; the session thread serves (with EIO) until the
                // last user lets go.
                let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
            }
            Err(e) => tracing::warn!("faultfs: unmount of {}: {e}", self.path.display()),
        }
    }
}
