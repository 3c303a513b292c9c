//! The durable journal of billing records, over sled.
//!
//! Layout:
//! - [`Store`]: the one handle to the sled database of a process (cheap to
//!   clone). It appends records with per-port sequence numbers, flushes them
//!   durably, reads them back in order, and keeps small per-port metadata (the
//!   file rotator's state, and later the delivery cursors).
//! - [`guard`]: [`guard::SeqGuard`], the sequence guard file beside the
//!   store, which detects a store that sled reopened with records missing and
//!   keeps sequences from ever being reused.
//! - [`keys`]: how records and metadata are laid out in the single `journal`
//!   tree, so one sled batch updates records and sequence counters atomically.
//! - [`resync`]: after a failed sync, the next open writes the store's files
//!   again before sled reads them, so data a failed writeback dropped
//!   reaches the disk.
//! - [`chunk`]: how a run of one port's records is packed into one sled value
//!   (one insert per chunk, not per record), LZ4-compressed when that pays.
//!
//! The rules the rest of billbox relies on:
//! - a record is *received* only once [`Store::flush`] has returned after its
//!   [`Store::append`]; nothing may act on it before (the store actor replies
//!   to port readers and notifies rotators only after the flush);
//! - sequences start at 1 per port and grow by one per record. The counter is
//!   written in the same atomic batch as the records, so a recovered store
//!   holds every port's records up to its counter with no gap. A sequence that
//!   was handed out but not flushed before a crash may be handed out again:
//!   nobody saw it, since nothing acts on unflushed records;
//! - [`Store::durable_seq`] is the highest flushed sequence of a port; readers
//!   of the journal (the file rotator) never go past it.
#![forbid(unsafe_code)]

pub mod chunk;
pub mod guard;
pub mod keys;
pub mod resync;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use billbox_record::{DecodeError, Epoch, Record, RecordFlags};

/// What billbox syncs after sled's flush.
#[derive(Debug)]
struct DurableFiles {
    db: std::fs::File,
    blobs: std::path::PathBuf,
    /// Blob files already synced (sled writes each once, never fsyncs it).
    synced_blobs: Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

impl DurableFiles {
    /// fdatasync of sled's log, then fsync of any blob file sled wrote since
    /// the last time (records too large for its log pages) and of their
    /// directory.
    fn sync(&self) -> std::io::Result<()> {
        self.db.sync_data()?;
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self.synced_blobs.lock().expect("blob set poisoned");
        let mut present = std::collections::HashSet::new();
        let mut new_files = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match std::fs::File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    // sled removed it meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new_files = true;
            }
            present.insert(name);
        }
        if new_files {
            std::fs::File::open(&self.blobs)?.sync_all()?;
        }
        *synced = present;
        Ok(())
    }
}

thread_local! {
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while this thread opens a store and a panic in sled is caught and
/// turned into an error: a process-wide panic hook that exits on panics must
/// let this one unwind.
pub fn panic_is_caught() -> bool {
    CATCHING.with(|c| c.get())
}

/// A record handed to the store, before it has a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub received_us: i64,
    pub flags: RecordFlags,
    pub bytes: Vec<u8>,
}

/// The sequence numbers one append gave to one port's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    /// The first sequence given out (the records got `first..first + count`).
    pub first: u64,
    pub count: u64,
}

impl Assigned {
    /// The last sequence given out, or `first - 1` when there were no records.
    pub fn last(&self) -> u64 {
        self.first + self.count - 1
    }
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} could not be opened: {source}")]
    Open { path: String, source: sled::Error },
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("record {port}/{seq} in the store is unreadable: {source}")]
    Corrupt {
        port: String,
        seq: u64,
        source: DecodeError,
    },
    #[error("the store holds a malformed key or counter for port {0}")]
    BadMeta(String),
    #[error("the sequence guard {path} cannot be used: {source}")]
    Guard {
        path: String,
        source: std::io::Error,
    },
    /// Another process (or a store of this one not yet closed) holds the
    /// store's lock.
    #[error("the store at {path} is in use by another process (its lock is held)")]
    Locked { path: String },
    /// A sync of the store's files failed. What was written since the last
    /// good sync may never reach the disk, whatever a later sync says
    /// (Linux forgets the data of a failed writeback): the store must not be
    /// used again in this process.
    #[error("the store's files could not be synced ({path}): {source}")]
    SyncFailed {
        path: String,
        source: std::io::Error,
    },
    /// A flush did not return in time (sled waits forever for a write of
    /// its own that failed).
    #[error("the store's flush did not return within {after:?}")]
    FlushStuck { after: std::time::Duration },
    /// Writing the store's files again after a failed sync (at open) failed.
    #[error("the store at {path} could not be written again after the failed sync of its last run: {source}")]
    Resync {
        path: String,
        source: std::io::Error,
    },
    #[error("the operating system's random source failed, so no epoch could be drawn: {0}")]
    Random(std::io::Error),
    #[error("the store lost records: port {port} has sequences up to {found}, but {confirmed} were flushed")]
    Lost {
        port: String,
        confirmed: u64,
        found: u64,
    },
}

impl StoreError {
    /// Whether the store directory is damaged (rather than busy or not
    /// allowed): then it should be moved aside and a fresh store started.
    pub fn calls_for_quarantine(&self) -> bool {
        match self {
            StoreError::Lost { .. } | StoreError::Corrupt { .. } | StoreError::BadMeta(_) => true,
            StoreError::Open { source, .. } | StoreError::Sled(source) => match source {
                sled::Error::Io(e) => {
                    e.kind() != std::io::ErrorKind::PermissionDenied
                        && e.kind() != std::io::ErrorKind::WouldBlock
                }
                sled::Error::CollectionNotFound(_) => false,
                _ => true,
            },
            _ => false,
        }
    }
}

#[derive(Debug, Default)]
struct PortSeqs {
    /// The last sequence handed out (flushed or not).
    assigned: u64,
    /// The last sequence known to be flushed.
    durable: Arc<AtomicU64>,
    /// Every sequence up to this one has been removed from the journal.
    removed_through: u64,
    /// The epochs of the port's records: `(first sequence, epoch)` in
    /// order; a record has the epoch of the last entry at or below its
    /// sequence ([`Epoch::NONE`] below the first).
    epochs: Vec<(u64, Epoch)>,
}

impl PortSeqs {
    fn epoch_of(&self, seq: u64) -> Epoch {
        epoch_at(&self.epochs, seq)
    }
}

/// The epoch of `seq` in a port's `(first sequence, epoch)` list.
fn epoch_at(epochs: &[(u64, Epoch)], seq: u64) -> Epoch {
    match epochs.partition_point(|&(first, _)| first <= seq) {
        0 => Epoch::NONE,
        i => epochs[i - 1].1,
    }
}

#[derive(Debug)]
struct Inner {
    /// Bytes written again at open, after a failed sync of the last run.
    resynced: Option<u64>,
    /// This run's epoch: the records appended through this handle get it.
    epoch: Epoch,
    ports: Mutex<HashMap<Arc<str>, PortSeqs>>,
    /// The sequence guard, when the store was opened with one.
    guard: Mutex<Option<guard::SeqGuard>>,
    /// Cursors by (port, name), as last written (cache of the `cursor/` metadata).
    cursors: Mutex<HashMap<(Arc<str>, String), u64>>,
}

/// How long [`Store::open`] waits for a file lock held a moment longer by
/// sled's I/O threads of a store just dropped in this process.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The most records [`Store::remove_through`] removes in one call.
pub const REMOVE_CHUNK: u64 = 50_000;

/// The cursor of the ACS file rotator: the last sequence in a closed file.
pub const FILES_CURSOR: &str = "files";
/// The cursor of the primary/secondary exchange: the last acknowledged sequence.
pub const DELIVERY_CURSOR: &str = "delivery";

/// The cursor name of a reliable carbon-copy server.
pub fn carbon_copy_cursor(name: &str) -> String {
    format!("cc:{name}")
}

/// Metadata entry: every sequence up to this one is removed (chunks that hold
/// removed and kept records stay until all their records are removed).
const REMOVED_META: &str = "removed_through";

/// A submitter's id entry of [`Store::append_indexed`]: the first record of
/// batch element `element` was submitted as `id`, with content `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdEntry {
    pub element: usize,
    pub id: String,
    pub digest: [u8; 32],
    /// When it was submitted (microseconds since the Unix epoch), for
    /// [`Store::forget_ids`].
    pub at_us: i64,
}

fn id_meta(id: &str) -> String {
    format!("id/{id}")
}

fn ack_meta(seq: u64, destination: &str) -> String {
    format!("ack/{seq:016x}/{destination}")
}

fn cursor_meta(name: &str) -> String {
    format!("cursor/{name}")
}

/// Metadata entry prefix: `epoch/<first sequence, 16 hex digits>` holds the
/// epoch (u64 big endian) of the port's records from that sequence on.
const EPOCH_META: &str = "epoch/";

fn epoch_meta(first: u64) -> String {
    format!("{EPOCH_META}{first:016x}")
}

/// A new run's epoch, from the operating system's random source.
fn draw_epoch() -> Result<Epoch, StoreError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(std::io::Error::from(e)))?;
    Ok(Epoch::from_random(u64::from_le_bytes(bytes)))
}

/// A port's `(first sequence, epoch)` list, as stored.
fn load_epochs(journal: &sled::Tree, port: &str) -> Result<Vec<(u64, Epoch)>, StoreError> {
    let mut out = Vec::new();
    for item in journal.scan_prefix(keys::meta_key(port, EPOCH_META)) {
        let (k, v) = item?;
        let bad = || StoreError::BadMeta(port.to_string());
        let hex = k
            .get(k.len().saturating_sub(16)..)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(bad)?;
        let first = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
        let epoch = keys::decode_u64(&v).ok_or_else(bad)?;
        out.push((first, Epoch::from_u64(epoch)));
    }
    // Keys sort by their hex, which sorts as the numbers do.
    Ok(out)
}

/// Whether sled's lock on the store in `dir` is held right now: sled
/// takes an exclusive `flock` on `dir/db`, so a non-blocking one fails.
fn db_is_locked(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join("db")) else {
        return false;
    };
    // Taken, it is released at once when dropped.
    matches!(
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

/// The handle to a process's store. Open it once; clone the handle.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    /// sled's data file and blob directory, for the syncs that complete
    /// sled's flush.
    db_file: Arc<DurableFiles>,
    journal: sled::Tree,
    inner: Arc<Inner>,
}

/// Counts of one port's records in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    /// Records held.
    pub records: u64,
    /// The oldest held sequence, if any.
    pub first_seq: Option<u64>,
    /// The last sequence ever handed out (held or removed).
    pub last_seq: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir` with a page cache of `cache_bytes`.
    ///
    /// sled can panic while recovering a damaged log; that panic is caught
    /// here and reported as [`StoreError::Open`] (see [`panic_is_caught`]).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        // A store dropped a moment ago in this process keeps its file lock
        // until sled's I/O threads finish their last write; a lock held by
        // another process is still reported, after this bounded wait.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut tried_again = false;
        loop {
            match Store::open_once(dir, cache_bytes) {
                // sled reports its lock only as text; billbox asks the
                // file system itself whether the lock is held.
                Err(StoreError::Open {
                    source: sled::Error::Io(e),
                    ..
                }) if e.kind() == std::io::ErrorKind::Other => {
                    if !db_is_locked(dir) {
                        // The lock may have been let go between sled's try
                        // and the probe: one more try tells.
                        if tried_again {
                            return Store::open_once(dir, cache_bytes);
                        }
                        tried_again = true;
                        continue;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked {
                            path: dir.display().to_string(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let resynced = resync::if_marked(dir).map_err(|source| StoreError::Resync {
            path: dir.display().to_string(),
            source,
        })?;
        let open = || {
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .flush_every_ms(Some(1000))
                .mode(sled::Mode::HighThroughput)
                .open()
        };
        CATCHING.with(|c| c.set(true));
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(open));
        CATCHING.with(|c| c.set(false));
        let db = match opened {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(sled::Error::ReportableBug(format!(
                    "sled panicked while recovering the store: {msg}"
                )))
            }
        }
        .map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let journal = db.open_tree("journal")?;
        let db_file = std::fs::File::open(dir.join("db"))
            .and_then(|f| {
                // sled writes its `conf` file (settings and their checksum,
                // in two writes) when it creates a store and never syncs it:
                // a power cut could keep one write and not the other, and
                // sled refuses such a store. A new store's directory entries
                // must survive a power cut too.
                std::fs::File::open(dir.join("conf"))?.sync_all()?;
                std::fs::File::open(dir)?.sync_all()?;
                // And the store directory's own name (sled may just have
                // made it, or a quarantine renamed the old one).
                resync::sync_parent(dir)?;
                Ok(f)
            })
            .map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                source: sled::Error::Io(e),
            })?;
        let mut ports = HashMap::new();
        for item in journal.scan_prefix([keys::SEQ]) {
            let (k, v) = item?;
            let port = keys::port_of_seq_key(&k)
                .ok_or_else(|| StoreError::BadMeta(String::from_utf8_lossy(&k).into_owned()))?;
            let last = keys::decode_u64(&v).ok_or_else(|| StoreError::BadMeta(port.clone()))?;
            let held_from = match journal.scan_prefix(keys::record_prefix(&port)).next() {
                Some(item) => {
                    let (k, _) = item?;
                    keys::seq_of_record_key(&k).map_or(0, |first| first - 1)
                }
                None => last,
            };
            let marked = match journal.get(keys::meta_key(&port, REMOVED_META))? {
                Some(v) => keys::decode_u64(&v).ok_or_else(|| StoreError::BadMeta(port.clone()))?,
                None => 0,
            };
            let removed_through = held_from.max(marked).min(last);
            let epochs = load_epochs(&journal, &port)?;
            ports.insert(
                Arc::<str>::from(port),
                PortSeqs {
                    assigned: last,
                    durable: Arc::new(AtomicU64::new(last)),
                    removed_through,
                    epochs,
                },
            );
        }
        Ok(Store {
            db,
            db_file: Arc::new(DurableFiles {
                db: db_file,
                blobs: dir.join("blobs"),
                synced_blobs: Mutex::new(std::collections::HashSet::new()),
            }),
            journal,
            inner: Arc::new(Inner {
                resynced,
                epoch: draw_epoch()?,
                guard: Mutex::new(None),
                ports: Mutex::new(ports),
                cursors: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Opens the store in `dir` with the sequence guard at `guard_path`.
    /// Fails with [`StoreError::Lost`] when the store has fewer records than
    /// the guard knows were flushed (sled dropped part of a damaged log).
    pub fn open_guarded(
        dir: &Path,
        cache_bytes: u64,
        guard_path: &Path,
    ) -> Result<Store, StoreError> {
        let guard = guard::SeqGuard::load(guard_path).map_err(|source| StoreError::Guard {
            path: guard_path.display().to_string(),
            source,
        })?;
        let store = Store::open(dir, cache_bytes)?;
        for (port, mark) in &guard.marks {
            let found = store.last_seq(port)?;
            if found < mark.confirmed {
                return Err(StoreError::Lost {
                    port: port.clone(),
                    confirmed: mark.confirmed,
                    found,
                });
            }
        }
        *store.inner.guard.lock().expect("guard poisoned") = Some(guard);
        Ok(store)
    }

    /// Opens a new, empty store in `dir` (after the old one was moved aside)
    /// whose sequences start above everything the guard says may have been
    /// handed out, so none is ever reused.
    pub fn open_fresh_above_guard(
        dir: &Path,
        cache_bytes: u64,
        guard_path: &Path,
    ) -> Result<Store, StoreError> {
        let guard_err = |source| StoreError::Guard {
            path: guard_path.display().to_string(),
            source,
        };
        let mut guard = guard::SeqGuard::load(guard_path).map_err(guard_err)?;
        let store = Store::open(dir, cache_bytes)?;
        let mut batch = sled::Batch::default();
        {
            let mut ports = store.inner.ports.lock().expect("store port table poisoned");
            for (port, mark) in guard.marks.iter_mut() {
                let floor = mark.reserved.max(mark.confirmed);
                batch.insert(keys::seq_key(port), &floor.to_be_bytes());
                ports.insert(
                    Arc::from(port.as_str()),
                    PortSeqs {
                        assigned: floor,
                        durable: Arc::new(AtomicU64::new(floor)),
                        removed_through: floor,
                        epochs: Vec::new(),
                    },
                );
                // Cursors start at the floor too: nothing below it exists here.
                for name in [FILES_CURSOR, DELIVERY_CURSOR] {
                    batch.insert(
                        keys::meta_key(port, &cursor_meta(name)),
                        &floor.to_be_bytes(),
                    );
                }
                *mark = guard::Mark {
                    confirmed: floor,
                    reserved: floor + guard::BLOCK,
                };
            }
        }
        store.journal.apply_batch(batch)?;
        store.flush_blocking()?;
        guard.save().map_err(guard_err)?;
        *store.inner.guard.lock().expect("guard poisoned") = Some(guard);
        Ok(store)
    }

    /// Notes in the guard that every port's flushed records are on disk.
    /// Call after a flush (the store actor does, about once a second).
    pub fn confirm(&self) -> Result<(), StoreError> {
        let durable: Vec<(String, u64)> = {
            let ports = self.inner.ports.lock().expect("store port table poisoned");
            ports
                .iter()
                .map(|(p, s)| (p.to_string(), s.durable.load(Ordering::Acquire)))
                .collect()
        };
        self.update_guard(durable, |m, d| {
            if d <= m.confirmed {
                return false;
            }
            m.confirmed = d;
            m.reserved = m.reserved.max(d);
            true
        })
    }

    /// Raises the guard's reservation before sequences past it are handed out.
    fn reserve(&self, lasts: &HashMap<&str, u64>) -> Result<(), StoreError> {
        let lasts = lasts.iter().map(|(p, l)| (p.to_string(), *l));
        self.update_guard(lasts, |m, last| {
            if last <= m.reserved {
                return false;
            }
            m.reserved = last + guard::BLOCK;
            true
        })
    }

    /// Applies `raise` to each port's mark in the guard (it says whether it
    /// changed the mark) and saves the guard when one changed.
    fn update_guard(
        &self,
        ports: impl IntoIterator<Item = (String, u64)>,
        raise: impl Fn(&mut guard::Mark, u64) -> bool,
    ) -> Result<(), StoreError> {
        let mut guard = self.inner.guard.lock().expect("guard poisoned");
        let Some(g) = guard.as_mut() else {
            return Ok(());
        };
        let mut changed = false;
        for (port, value) in ports {
            changed |= raise(g.marks.entry(port).or_default(), value);
        }
        if changed {
            g.save().map_err(|source| StoreError::Guard {
                path: g.path().display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Appends records for several ports in one atomic batch and returns the
    /// sequences given to each port's records, in the order of `batch`.
    ///
    /// The records are not durable until [`Store::flush`] returns.
    pub fn append(&self, batch: &[(Arc<str>, &[NewRecord])]) -> Result<Vec<Assigned>, StoreError> {
        self.append_indexed(batch, &[])
    }

    /// [`Store::append`], and in the same atomic batch an entry per
    /// [`IdEntry`]: the submitter's id of the first record of one batch
    /// element, with its sequence and the content digest, so that
    /// [`Store::lookup_id`] finds it after a crash exactly when the record
    /// survived.
    pub fn append_indexed(
        &self,
        batch: &[(Arc<str>, &[NewRecord])],
        ids: &[IdEntry],
    ) -> Result<Vec<Assigned>, StoreError> {
        let mut ports = self.inner.ports.lock().expect("store port table poisoned");
        let mut sled_batch = sled::Batch::default();
        let mut out = Vec::with_capacity(batch.len());
        let mut next: HashMap<&str, u64> = HashMap::new();
        // Ports whose records get this run's epoch from the given sequence.
        let mut new_epochs: Vec<(&str, u64)> = Vec::new();
        let epoch = self.inner.epoch;
        for (port, records) in batch {
            let start = *next.entry(port.as_ref()).or_insert_with(|| {
                let held = ports.get(port.as_ref());
                if held.and_then(|p| p.epochs.last()).map(|&(_, e)| e) != Some(epoch)
                    && !records.is_empty()
                {
                    new_epochs.push((port.as_ref(), held.map_or(0, |p| p.assigned) + 1));
                }
                held.map_or(0, |p| p.assigned)
            });
            let mut seq = start + 1;
            for run in chunk::runs(records) {
                sled_batch.insert(keys::record_key(port, seq), chunk::encode(run));
                seq += run.len() as u64;
            }
            let last = start + records.len() as u64;
            next.insert(port.as_ref(), last);
            sled_batch.insert(keys::seq_key(port), &last.to_be_bytes());
            out.push(Assigned {
                first: start + 1,
                count: records.len() as u64,
            });
        }
        for entry in ids {
            let (port, _) = &batch[entry.element];
            let first = out[entry.element].first;
            let mut value = Vec::with_capacity(48);
            value.extend_from_slice(&first.to_be_bytes());
            value.extend_from_slice(&entry.digest);
            value.extend_from_slice(&entry.at_us.to_be_bytes());
            sled_batch.insert(keys::meta_key(port, &id_meta(&entry.id)), value);
        }
        for &(port, first) in &new_epochs {
            sled_batch.insert(
                keys::meta_key(port, &epoch_meta(first)),
                &epoch.get().to_be_bytes(),
            );
        }
        self.reserve(&next)?;
        self.journal.apply_batch(sled_batch)?;
        for (port, first) in new_epochs {
            let p = ports.entry(Arc::from(port)).or_default();
            // A sequence handed out again after a crash (never flushed)
            // replaces the entries at and above it.
            p.epochs.retain(|&(f, _)| f < first);
            p.epochs.push((first, epoch));
        }
        for (port, last) in next {
            ports.entry(Arc::from(port)).or_default().assigned = last;
        }
        Ok(out)
    }

    /// Makes everything appended so far durable. Returns once it is on disk.
    ///
    /// sled's own flush is not enough on Linux: sled 0.34.7 writes its log
    /// with `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`
    /// (`pagecache/iobuf.rs`), which neither writes file metadata nor flushes
    /// the disk's write cache; only its background flusher calls `sync_all`.
    /// So after sled's flush billbox calls `fdatasync` on sled's data file.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if billbox_failpoints::check("store.flush") {
            return Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(
                "an injected fault (test builds only)",
            ))));
        }
        self.db.flush_async().await?;
        let files = self.db_file.clone();
        tokio::task::spawn_blocking(move || files.sync())
            .await
            .map_err(|e| StoreError::Sled(sled::Error::ReportableBug(e.to_string())))?
            .map_err(|source| self.sync_failed(source))?;
        Ok(())
    }

    fn sync_failed(&self, source: std::io::Error) -> StoreError {
        StoreError::SyncFailed {
            path: self
                .db_file
                .blobs
                .with_file_name("db")
                .display()
                .to_string(),
            source,
        }
    }

    /// The blocking form of [`Store::flush`], for threads that may block.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.db_file
            .sync()
            .map_err(|source| self.sync_failed(source))?;
        Ok(())
    }

    /// Records that the port's records up to `seq` have been flushed.
    pub fn mark_durable(&self, port: &str, seq: u64) {
        let ports = self.inner.ports.lock().expect("store port table poisoned");
        if let Some(p) = ports.get(port) {
            p.durable.fetch_max(seq, Ordering::AcqRel);
        }
    }

    /// The highest flushed sequence of a port (0 when it has none).
    pub fn durable_seq(&self, port: &str) -> u64 {
        let ports = self.inner.ports.lock().expect("store port table poisoned");
        ports
            .get(port)
            .map_or(0, |p| p.durable.load(Ordering::Acquire))
    }

    /// Reads the port's records with sequences in `from..=to`, in order
    /// (never the removed ones).
    pub fn records(
        &self,
        port: &str,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + '_ {
        let port_arc: Arc<str> = Arc::from(port);
        let from = from.max(self.removed_through(port) + 1);
        let epochs = self.epochs(port);
        let empty = to < from;
        // The chunk holding `from` starts at or before it.
        let start = if empty {
            keys::record_key(port, from)
        } else {
            match self
                .journal
                .range(keys::record_prefix(port)..=keys::record_key(port, from))
                .next_back()
            {
                Some(Ok((k, _))) => k.to_vec(),
                _ => keys::record_key(port, from),
            }
        };
        let end = keys::record_key(port, to.max(from));
        let chunks = self.journal.range(start..=end).take_while(move |_| !empty);
        let mut out: Vec<Result<Record, StoreError>> = Vec::new();
        chunks.flat_map(move |item| {
            out.clear();
            let decoded = item.map_err(StoreError::from).and_then(|(k, v)| {
                let first = keys::seq_of_record_key(&k)
                    .ok_or_else(|| StoreError::BadMeta(port_arc.to_string()))?;
                Ok((first, v))
            });
            match decoded {
                Err(e) => out.push(Err(e)),
                Ok((first, v)) => {
                    let v = match chunk::expand(&v) {
                        Ok(v) => v,
                        Err(source) => {
                            out.push(Err(StoreError::Corrupt {
                                port: port_arc.to_string(),
                                seq: first,
                                source,
                            }));
                            return std::mem::take(&mut out);
                        }
                    };
                    // A chunk is one append's: one run, one epoch.
                    let epoch = epoch_at(&epochs, first);
                    for (seq, entry) in (first..).zip(chunk::entries(&v)) {
                        if seq > to {
                            break;
                        }
                        match entry {
                            Ok(_) if seq < from => {}
                            Ok(e) => out.push(Ok(Record {
                                port: port_arc.clone(),
                                seq,
                                epoch,
                                received_us: e.received_us,
                                flags: e.flags,
                                bytes: e.bytes.to_vec(),
                            })),
                            Err(source) => {
                                out.push(Err(StoreError::Corrupt {
                                    port: port_arc.to_string(),
                                    seq,
                                    source,
                                }));
                                break;
                            }
                        }
                    }
                }
            }
            std::mem::take(&mut out)
        })
    }

    /// A port's chunks in order, as (key, first sequence, record count),
    /// reading only their headers.
    fn chunk_heads<'a>(
        &'a self,
        port: &'a str,
    ) -> impl Iterator<Item = Result<(sled::IVec, u64, u64), StoreError>> + 'a {
        self.journal
            .scan_prefix(keys::record_prefix(port))
            .map(move |item| {
                let (k, v) = item?;
                let first = keys::seq_of_record_key(&k)
                    .ok_or_else(|| StoreError::BadMeta(port.to_string()))?;
                let n = chunk::count(&v).map_err(|source| StoreError::Corrupt {
                    port: port.to_string(),
                    seq: first,
                    source,
                })?;
                Ok((k, first, n))
            })
    }

    /// Bytes of the store's files written again when it opened, because a
    /// sync failed in the last run ([`Store::note_failed_sync`]).
    pub fn resynced_bytes(&self) -> Option<u64> {
        self.inner.resynced
    }

    /// Leaves the mark that makes the next open write the store's files
    /// again (call after a failed sync, before the process stops).
    pub fn note_failed_sync(&self) -> std::io::Result<()> {
        let dir = self
            .db_file
            .blobs
            .parent()
            .expect("the store has a directory");
        resync::mark(dir)
    }

    /// This run's epoch: records appended through this store get it.
    pub fn epoch(&self) -> Epoch {
        self.inner.epoch
    }

    /// The epoch of a port's record `seq` ([`Epoch::NONE`] for records
    /// stored before epochs were kept).
    pub fn epoch_of(&self, port: &str, seq: u64) -> Epoch {
        let ports = self.inner.ports.lock().expect("store port table poisoned");
        ports.get(port).map_or(Epoch::NONE, |p| p.epoch_of(seq))
    }

    fn epochs(&self, port: &str) -> Vec<(u64, Epoch)> {
        let ports = self.inner.ports.lock().expect("store port table poisoned");
        ports.get(port).map_or_else(Vec::new, |p| p.epochs.clone())
    }

    fn removed_through(&self, port: &str) -> u64 {
        let ports = self.inner.ports.lock().expect("store port table poisoned");
        ports.get(port).map_or(0, |p| p.removed_through)
    }

    /// Counts a port's records (walks its chunks: O(records / chunk size)).
    pub fn port_stats(&self, port: &str) -> Result<PortStats, StoreError> {
        let mut stats = PortStats {
            last_seq: self.last_seq(port)?,
            ..PortStats::default()
        };
        let removed = self.removed_through(port);
        for item in self.chunk_heads(port) {
            let (_, first, n) = item?;
            let held_from = first.max(removed + 1);
            let last = first + n - 1;
            if n > 0 && last >= held_from {
                stats.first_seq.get_or_insert(held_from);
                stats.records += last - held_from + 1;
            }
        }
        Ok(stats)
    }

    /// The last sequence handed out to a port, as stored on disk.
    pub fn last_seq(&self, port: &str) -> Result<u64, StoreError> {
        match self.journal.get(keys::seq_key(port))? {
            Some(v) => keys::decode_u64(&v).ok_or_else(|| StoreError::BadMeta(port.to_string())),
            None => Ok(0),
        }
    }

    /// The names of all ports that have ever had a record in this store.
    pub fn ports(&self) -> Vec<Arc<str>> {
        let ports = self.inner.ports.lock().expect("store port table poisoned");
        let mut names: Vec<Arc<str>> = ports.keys().cloned().collect();
        names.sort();
        names
    }

    /// Reads a port's metadata entry.
    pub fn get_meta(&self, port: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .journal
            .get(keys::meta_key(port, name))?
            .map(|v| v.to_vec()))
    }

    /// Writes a port's metadata entry (durable after the next flush).
    pub fn put_meta(&self, port: &str, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.journal.insert(keys::meta_key(port, name), value)?;
        Ok(())
    }

    /// Removes a port's metadata entry (durable after the next flush).
    pub fn remove_meta(&self, port: &str, name: &str) -> Result<(), StoreError> {
        self.journal.remove(keys::meta_key(port, name))?;
        Ok(())
    }

    /// A port's cursor `name`: the last sequence that consumer is done with
    /// (0 when it has none).
    pub fn cursor(&self, port: &str, name: &str) -> Result<u64, StoreError> {
        let key = (Arc::<str>::from(port), name.to_string());
        if let Some(v) = self
            .inner
            .cursors
            .lock()
            .expect("cursor table poisoned")
            .get(&key)
        {
            return Ok(*v);
        }
        let v = match self.get_meta(port, &cursor_meta(name))? {
            Some(v) => keys::decode_u64(&v).ok_or_else(|| StoreError::BadMeta(port.to_string()))?,
            None => 0,
        };
        let mut cursors = self.inner.cursors.lock().expect("cursor table poisoned");
        Ok(*cursors.entry(key).or_insert(v))
    }

    /// Moves a port's cursor forward to `seq` (never back); durable with the
    /// next flush. Returns the cursor as it now stands.
    pub fn advance_cursor(&self, port: &str, name: &str, seq: u64) -> Result<u64, StoreError> {
        let current = self.cursor(port, name)?;
        if seq <= current {
            return Ok(current);
        }
        let mut cursors = self.inner.cursors.lock().expect("cursor table poisoned");
        let entry = cursors
            .entry((Arc::<str>::from(port), name.to_string()))
            .or_insert(current);
        if seq > *entry {
            *entry = seq;
            self.journal
                .insert(keys::meta_key(port, &cursor_meta(name)), &seq.to_be_bytes())?;
        }
        Ok(*entry)
    }

    /// Records of the port past cursor `name` that are flushed: the consumer's backlog.
    pub fn backlog(&self, port: &str, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .durable_seq(port)
            .saturating_sub(self.cursor(port, name)?))
    }

    /// Records past cursor `name` summed over all ports, flushed or not (for
    /// capacity decisions, which must count what is about to be flushed too).
    pub fn total_backlog(&self, name: &str) -> Result<u64, StoreError> {
        let assigned: Vec<(Arc<str>, u64)> = {
            let ports = self.inner.ports.lock().expect("store port table poisoned");
            ports.iter().map(|(p, s)| (p.clone(), s.assigned)).collect()
        };
        let mut total = 0;
        for (port, assigned) in assigned {
            total += assigned.saturating_sub(self.cursor(&port, name)?);
        }
        Ok(total)
    }

    /// Removes the port's records up to `seq` (never past the flushed ones,
    /// and at most [`REMOVE_CHUNK`] per call) from the journal. Returns how
    /// many were removed. Durable with the next
    /// flush; until then a crash brings them back, which is harmless.
    pub fn remove_through(&self, port: &str, seq: u64) -> Result<u64, StoreError> {
        let mut ports = self.inner.ports.lock().expect("store port table poisoned");
        let Some(p) = ports.get_mut(port) else {
            return Ok(0);
        };
        // At most REMOVE_CHUNK per call: a drained backlog of millions is
        // removed over several calls, not in one huge batch.
        let target = seq
            .min(p.durable.load(Ordering::Acquire))
            .min(p.removed_through + REMOVE_CHUNK);
        if target <= p.removed_through {
            return Ok(0);
        }
        // Whole chunks at or below the target go; a chunk that straddles it
        // stays, and the watermark hides its removed records.
        let mut batch = sled::Batch::default();
        for item in self.chunk_heads(port) {
            let (k, first, n) = item?;
            if first + n.max(1) - 1 > target {
                break;
            }
            batch.remove(k);
        }
        batch.insert(keys::meta_key(port, REMOVED_META), &target.to_be_bytes());
        self.journal.apply_batch(batch)?;
        let removed = target - p.removed_through;
        p.removed_through = target;
        Ok(removed)
    }

    /// The oldest sequence of a port still in the journal, if any.
    pub fn first_held(&self, port: &str) -> Option<u64> {
        let ports = self.inner.ports.lock().expect("store port table poisoned");
        let p = ports.get(port)?;
        (p.removed_through < p.durable.load(Ordering::Acquire)).then_some(p.removed_through + 1)
    }

    /// The sequence and content digest stored for a submitter's `id` on
    /// `port` by [`Store::append_indexed`], if any.
    pub fn lookup_id(&self, port: &str, id: &str) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        let Some(v) = self.get_meta(port, &id_meta(id))? else {
            return Ok(None);
        };
        let bad = || StoreError::BadMeta(port.to_string());
        let seq = keys::decode_u64(v.get(..8).ok_or_else(bad)?).ok_or_else(bad)?;
        let digest: [u8; 32] = v
            .get(8..40)
            .and_then(|d| d.try_into().ok())
            .ok_or_else(bad)?;
        Ok(Some((seq, digest)))
    }

    /// Removes `port`'s id entries submitted before `before_us` whose
    /// records are removed (delivered and filed), and the acknowledgement
    /// notes of those records; at most `limit` ids per call. Durable with
    /// the next flush. Returns how many ids were forgotten: a retry of one
    /// of them is then a new record.
    pub fn forget_ids(
        &self,
        port: &str,
        before_us: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let removed = self.removed_through(port);
        let prefix = keys::meta_key(port, &id_meta(""));
        let mut batch = sled::Batch::default();
        let mut forgotten = 0;
        for item in self.journal.scan_prefix(&prefix) {
            let (k, v) = item?;
            let bad = || StoreError::BadMeta(port.to_string());
            let seq = keys::decode_u64(v.get(..8).ok_or_else(bad)?).ok_or_else(bad)?;
            let at = v
                .get(40..48)
                .and_then(keys::decode_u64)
                .map_or(i64::MIN, |t| t as i64);
            if seq > removed || at >= before_us {
                continue;
            }
            batch.remove(k);
            for ack in self
                .journal
                .scan_prefix(keys::meta_key(port, &ack_meta(seq, "")))
            {
                batch.remove(ack?.0);
            }
            forgotten += 1;
            if forgotten >= limit {
                break;
            }
        }
        if forgotten > 0 {
            self.journal.apply_batch(batch)?;
        }
        Ok(forgotten)
    }

    /// Notes that `destination` had `port`'s record `seq` acknowledged by
    /// `server` at `at_us` (durable with the next flush), for
    /// [`Store::acks`]. Kept for transactions, whose submitters ask.
    pub fn note_ack(
        &self,
        port: &str,
        seq: u64,
        destination: &str,
        server: &str,
        at_us: i64,
    ) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(8 + server.len());
        value.extend_from_slice(&at_us.to_be_bytes());
        value.extend_from_slice(server.as_bytes());
        self.put_meta(port, &ack_meta(seq, destination), &value)
    }

    /// Every acknowledgement noted for `port`'s record `seq`:
    /// (destination, server, time in microseconds), by destination.
    pub fn acks(&self, port: &str, seq: u64) -> Result<Vec<(String, String, i64)>, StoreError> {
        let prefix = keys::meta_key(port, &ack_meta(seq, ""));
        let mut out = Vec::new();
        for item in self.journal.scan_prefix(&prefix) {
            let (k, v) = item?;
            let destination = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if v.len() < 8 {
                return Err(StoreError::BadMeta(port.to_string()));
            }
            let at = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            out.push((
                destination,
                String::from_utf8_lossy(&v[8..]).into_owned(),
                at,
            ));
        }
        Ok(out)
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests;
