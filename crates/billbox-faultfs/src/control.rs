//! The control API: freeze, cut, faults, reported space, statistics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::Errno;

use crate::fs::{Held, Shared};

/// Which requests a [`Fault`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// FUSE_OPEN of a file.
    Open,
    /// FUSE_READ.
    Read,
    /// FUSE_WRITE.
    Write,
    /// FUSE_FSYNC of a file: `fsync` and `fdatasync` alike.
    Fsync,
    /// FUSE_FSYNCDIR: an fsync of a directory.
    FsyncDir,
    /// FUSE_CREATE or FUSE_MKNOD of a regular file.
    Create,
    /// FUSE_MKDIR.
    Mkdir,
    /// FUSE_UNLINK.
    Unlink,
    /// FUSE_RMDIR.
    Rmdir,
    /// FUSE_RENAME / FUSE_RENAME2: matches on the old or the new path.
    Rename,
    /// FUSE_SETATTR (truncate, chmod, chown, utimes).
    SetAttr,
    /// FUSE_FALLOCATE.
    Fallocate,
    /// Every operation above.
    Any,
}

impl Op {
    /// Whether a fault on `self` matches a request of kind `op`.
    pub fn matches(self, op: Op) -> bool {
        self == Op::Any || self == op
    }

    /// The lower-case name used by the `faultfs` binary and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Fsync => "fsync",
            Op::FsyncDir => "fsyncdir",
            Op::Create => "create",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Rename => "rename",
            Op::SetAttr => "setattr",
            Op::Fallocate => "fallocate",
            Op::Any => "any",
        }
    }

    /// The inverse of [`Op::name`].
    pub fn from_name(name: &str) -> Option<Op> {
        [
            Op::Open,
            Op::Read,
            Op::Write,
            Op::Fsync,
            Op::FsyncDir,
            Op::Create,
            Op::Mkdir,
            Op::Unlink,
            Op::Rmdir,
            Op::Rename,
            Op::SetAttr,
            Op::Fallocate,
            Op::Any,
        ]
        .into_iter()
        .find(|op| op.name() == name)
    }
}

/// What a fault does to the requests it fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with this errno (e.g. `libc::EIO`, `libc::ENOSPC`) without
    /// applying the request: a failed write wrote nothing. Not `ENOSYS`
    /// (nor 0): the kernel takes ENOSYS from fsync, open or flush as "not
    /// supported", never asks again and reports success, which would break
    /// the mount for good; [`Control::add_fault`] refuses it.
    Error(i32),
    /// Like [`Action::Error`]; on an fsync of a file, also what Linux does
    /// after a writeback error: the file's unsynced writes are forgotten
    /// without becoming durable. Readers still see them, and a later fsync
    /// succeeds without making them durable, so a cut drops them even then
    /// (the "fsyncgate" behaviour: an fsync that failed once must never be
    /// retried as if the data were still waiting).
    ErrorLosingWrites(i32),
    /// Answer after this long, applying the request then (a slow disk). The
    /// request waits on a timer thread; every other request goes on being
    /// served meanwhile. A freeze or cut before it is due catches it unapplied.
    Delay(Duration),
    /// Freeze the file system with this request held, not applied.
    FreezeBefore,
    /// Apply the request (an fsync makes its data durable), then freeze with
    /// its answer held.
    FreezeAfter,
}

/// A fault: `action` on the `nth` (1-based) matching request counted from
/// when the fault was added, and on the `times - 1` matching requests after
/// it (`times: None`: on every one from the `nth` on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The kind of request it matches.
    pub op: Op,
    /// A substring of the request's path relative to the mount root (e.g.
    /// `"spool/"`, `".tmp"`, `"store/db"`; `""` matches every path). The
    /// path of a file request is the inode's current path; of a create,
    /// unlink, mkdir or rmdir, the entry's; of a rename, the old or the new
    /// one; of an fsyncdir, the directory's (`""` for the root). A
    /// directory's path is also matched with a trailing `/`: `"spool/"`
    /// matches the `spool` directory itself (its mkdir, fsync, rename) as
    /// well as everything in it.
    pub path: String,
    /// The first matching request that fires, 1-based (0 counts as 1).
    pub nth: u64,
    /// How many consecutive matching requests fire from the `nth` on;
    /// `None`: all of them.
    pub times: Option<u64>,
    /// What happens to them.
    pub action: Action,
}

impl Fault {
    /// Whether the errno of an [`Action::Error`] or
    /// [`Action::ErrorLosingWrites`] can be injected (not 0, not ENOSYS).
    pub fn errno_ok(&self) -> bool {
        match self.action {
            Action::Error(n) | Action::ErrorLosingWrites(n) => n > 0 && n != libc::ENOSYS,
            _ => true,
        }
    }
}

impl Fault {
    /// A fault on every matching request from the first on.
    pub fn always(op: Op, path: impl Into<String>, action: Action) -> Fault {
        Fault {
            op,
            path: path.into(),
            nth: 1,
            times: None,
            action,
        }
    }

    /// A fault on the `nth` matching request only.
    pub fn once(op: Op, path: impl Into<String>, nth: u64, action: Action) -> Fault {
        Fault {
            op,
            path: path.into(),
            nth,
            times: Some(1),
            action,
        }
    }

    /// Whether the `seen`-th matching request fires.
    pub(crate) fn fires(&self, seen: u64) -> bool {
        let nth = self.nth.max(1);
        seen >= nth && self.times.is_none_or(|t| seen - nth < t)
    }
}

/// Names an added fault, for [`Control::remove_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(pub u64);

/// How a [`Control::cut`] treats the unsynced data writes (and size changes:
/// truncates, fallocates). Pending namespace operations are dropped by every
/// variant: a journal loses its uncommitted transactions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    /// Drop every unsynced write: files are back to their durable contents.
    All,
    /// Each unsynced write or size change makes it with probability `keep`
    /// (0.0 to 1.0), decided in the order they were made with a generator
    /// seeded by `seed`: the same history and seed keep the same ones.
    RandomSubset {
        /// The generator's seed.
        seed: u64,
        /// The fraction of unsynced writes that make it.
        keep: f64,
    },
    /// Like [`Cut::All`], but one unsynced write that spans a 512-byte
    /// sector boundary (chosen by `seed`) is kept up to one such boundary
    /// strictly inside it (also chosen by `seed`): a torn write.
    Tear {
        /// The generator's seed.
        seed: u64,
    },
}

/// The write a [`Cut::Tear`] tore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// The file's path after the cut.
    pub path: String,
    /// The write's offset.
    pub offset: u64,
    /// The write's length.
    pub len: u64,
    /// How many of its first bytes were kept (`offset + kept` is a multiple
    /// of 512).
    pub kept: u64,
}

/// What a [`Control::cut`] dropped and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Unsynced writes dropped (a torn write counts here).
    pub writes_dropped: u64,
    /// Unsynced writes kept whole.
    pub writes_kept: u64,
    /// Bytes of unsynced writes dropped.
    pub bytes_dropped: u64,
    /// Bytes of unsynced writes kept (a torn write's kept prefix included).
    pub bytes_kept: u64,
    /// Unsynced truncates / fallocates dropped.
    pub size_changes_dropped: u64,
    /// Unsynced truncates / fallocates kept ([`Cut::RandomSubset`] only).
    pub size_changes_kept: u64,
    /// Pending namespace operations dropped (all of them).
    pub namespace_ops_dropped: u64,
    /// Inodes freed because they had no durable name (their data counted as
    /// dropped above).
    pub orphans_freed: u64,
    /// Held or delayed requests answered with EIO.
    pub requests_failed: u64,
    /// The torn write of a [`Cut::Tear`], if one had a sector boundary
    /// inside it.
    pub torn: Option<Torn>,
    /// Backing file errors while restoring (logged; should stay 0).
    pub backing_errors: u64,
}

/// The space statfs reports instead of the backing file system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Total bytes (reported in 4096-byte blocks, rounded down: 0 gives a
    /// file system with no blocks at all).
    pub total: u64,
    /// Free bytes, available to everyone.
    pub free: u64,
}

/// Why the file system is frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenAt {
    /// The fault that froze it; `None` for [`Control::freeze`].
    pub fault: Option<FaultId>,
    /// The request it froze on; `None` for [`Control::freeze`].
    pub op: Option<Op>,
    /// That request's path (see [`Fault::path`]); `""` for a manual freeze.
    pub path: String,
    /// Whether that request was applied before freezing
    /// ([`Action::FreezeAfter`]).
    pub applied: bool,
}

/// Counters since the mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request that arrived, by FUSE operation (`"write"`, `"fsync"`,
    /// `"fdatasync"`, `"fsyncdir"`, `"lookup"`, `"statfs"`, ...), whether it
    /// was applied, failed by a fault or held.
    pub requests: BTreeMap<&'static str, u64>,
    /// Write requests that arrived.
    pub writes: u64,
    /// fsync requests (not fdatasync) on files.
    pub fsyncs: u64,
    /// fdatasync requests on files.
    pub fdatasyncs: u64,
    /// fsync requests on directories.
    pub fsyncdirs: u64,
    /// Rename requests.
    pub renames: u64,
    /// Writes applied but not yet durable.
    pub unsynced_writes: u64,
    /// Their bytes.
    pub unsynced_bytes: u64,
    /// Truncates / fallocates applied but not yet durable.
    pub unsynced_size_changes: u64,
    /// Namespace operations applied but not yet durable.
    pub pending_namespace_ops: u64,
    /// Requests held by a freeze now.
    pub held_requests: u64,
    /// Requests waiting on a [`Action::Delay`] now.
    pub delayed_requests: u64,
    /// Requests a fault fired on.
    pub faults_fired: u64,
    /// Cuts so far.
    pub cuts: u64,
}

impl Stats {
    fn get(&self, op: &str) -> u64 {
        self.requests.get(op).copied().unwrap_or(0)
    }
}

/// The handle tests drive the file system with: cheap to clone, usable from
/// any thread, valid as long as the [`crate::FaultFs`] is mounted (calls
/// after the unmount do nothing harmful).
#[derive(Clone)]
pub struct Control {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    /// "Power lost now": from this instant every request that reads or
    /// changes files or directories is held unanswered and unapplied, until
    /// [`Control::cut`] (or [`Control::thaw`]). Requests that only look at
    /// the namespace keep being answered from the state at the freeze:
    /// statfs (a daemon's free-space metric), lookup, getattr, access,
    /// opendir, readdir, releasedir (and forget); so is flush, which close(2)
    /// waits for and which makes nothing durable. A process blocked on a held
    /// request cannot die, even of SIGKILL, until it is answered: cut before
    /// waiting for such a process to exit.
    pub fn freeze(&self) {
        let mut st = self.shared.lock();
        if st.frozen.is_none() && !st.shutdown {
            st.frozen = Some(FrozenAt {
                fault: None,
                op: None,
                path: String::new(),
                applied: false,
            });
        }
        drop(st);
        self.shared.changed.notify_all();
    }

    /// The power cut: drops the volatile state per `how` (the durable
    /// namespace and data become current; unsynced data per [`Cut`]),
    /// answers every held and delayed request with EIO, makes every file
    /// and directory handle stale (EIO from then on: reopen by path), and
    /// unfreezes. Works frozen or not.
    pub fn cut(&self, how: Cut) -> CutReport {
        let mut st = self.shared.lock();
        let waiting = st.take_waiting();
        let mut report = st.model.cut(how);
        report.requests_failed = waiting.len() as u64;
        st.frozen = None;
        st.cuts += 1;
        drop(st);
        self.shared.changed.notify_all();
        for h in waiting {
            h.fail(Errno::EIO);
        }
        report
    }

    /// Unfreezes without a cut (a pause, not a power loss): the held
    /// requests are applied in the order they arrived and answered.
    pub fn thaw(&self) {
        let mut st = self.shared.lock();
        st.frozen = None;
        let held = std::mem::take(&mut st.held);
        let mut answers = Vec::with_capacity(held.len());
        for h in held {
            match h {
                Held::Unapplied(job) => answers.push(job.apply(&mut st.model)),
                Held::Applied(answer) => answers.push(answer),
            }
        }
        drop(st);
        self.shared.changed.notify_all();
        for a in answers {
            a.send();
        }
    }

    /// Makes everything durable now, as a sync(2) on a disk that honours it
    /// (for setting up a known durable state).
    pub fn sync(&self) {
        let mut st = self.shared.lock();
        if let Err(e) = st.model.sync_all() {
            tracing::error!("faultfs: sync: {e:?}");
        }
    }

    /// Adds a fault; its match count starts at 0. Matched when a request
    /// arrives: a request held by a freeze is applied as it is at
    /// [`Control::thaw`], whatever faults were added meanwhile.
    ///
    /// # Panics
    /// On an errno that is not an error FUSE can pass on ([`Fault::errno_ok`]).
    pub fn add_fault(&self, fault: Fault) -> FaultId {
        assert!(
            fault.errno_ok(),
            "faultfs: {:?} cannot be injected: ENOSYS and 0 are not errors to the kernel (ENOSYS disables the operation for good)",
            fault.action
        );
        let mut st = self.shared.lock();
        let id = FaultId(st.next_fault);
        st.next_fault += 1;
        st.faults.push(crate::fs::FaultSlot { id, fault, seen: 0 });
        id
    }

    /// Removes a fault; false if there was none with this id.
    pub fn remove_fault(&self, id: FaultId) -> bool {
        let mut st = self.shared.lock();
        let before = st.faults.len();
        st.faults.retain(|f| f.id != id);
        st.faults.len() != before
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// What statfs reports: `Some` given numbers, `None` the backing file
    /// system's (the default). Reporting only: writes never fail for space
    /// (use an [`Action::Error`] with `ENOSPC` for that).
    pub fn set_space(&self, space: Option<Space>) {
        self.shared.lock().space = space;
    }

    /// Why the file system is frozen, if it is.
    pub fn frozen(&self) -> Option<FrozenAt> {
        self.shared.lock().frozen.clone()
    }

    /// Waits up to `timeout` for a freeze (a fault's or a manual one).
    pub fn wait_frozen(&self, timeout: Duration) -> Option<FrozenAt> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(f) = &st.frozen {
                return Some(f.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits up to `timeout` until `cond` holds for the statistics (checked
    /// each millisecond); the last statistics and whether it held.
    pub fn wait_stats(&self, timeout: Duration, cond: impl Fn(&Stats) -> bool) -> (Stats, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if cond(&s) {
                return (s, true);
            }
            if Instant::now() >= deadline {
                return (s, false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Counters since the mount, and the volatile state's size now.
    pub fn stats(&self) -> Stats {
        let st = self.shared.lock();
        let (unsynced_writes, unsynced_bytes, unsynced_size_changes) = st.model.unsynced();
        let mut s = Stats {
            requests: st.requests.clone(),
            unsynced_writes,
            unsynced_bytes,
            unsynced_size_changes,
            pending_namespace_ops: st.model.pending_namespace_ops(),
            held_requests: st.held.len() as u64,
            delayed_requests: st.delayed.len() as u64,
            faults_fired: st.faults_fired,
            cuts: st.cuts,
            ..Stats::default()
        };
        s.writes = s.get("write");
        s.fsyncs = s.get("fsync");
        s.fdatasyncs = s.get("fdatasync");
        s.fsyncdirs = s.get("fsyncdir");
        s.renames = s.get("rename");
        s
    }
}
