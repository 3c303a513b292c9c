//! The file rotation rules of one port.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use billbox_record::Record;
use billbox_store::{Store, StoreError, FILES_CURSOR};

use crate::writer::{StateChange, StateWriter};
use billbox_transactions::{file_line, StreamKind};

use crate::naming::{unique_stem, TMP, TXT};
use crate::state::{FileState, OpenState, StateDecodeError, META_NAME};

/// Bytes buffered per open spool file between write calls. The buffer is
/// written through at the end of every call into the rotator, so it only
/// gathers one call's records into few writes; 64 ports hold 64 of them.
const FILE_BUFFER: usize = 8 * 1024;

/// What a port's rotator needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatorSettings {
    pub port: Arc<str>,
    /// `XXXXX` in `cycXXXXX-...`: the port's alias, else the gateway name.
    pub prefix: String,
    /// The spool directory.
    pub dir: PathBuf,
    /// Records per file (`billing_records`, at least 1).
    pub records_per_file: u32,
    /// File lifetime from its first record (`billing_timeout`); `None` = no limit.
    pub timeout: Option<Duration>,
}

/// A file that was closed and renamed to `.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedFile {
    pub path: PathBuf,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Its `.tmp` had been removed from the spool directory (by a
    /// collector, by hand) while it was open: it was written again, whole,
    /// from the store before it was closed.
    pub rewritten: bool,
}

impl ClosedFile {
    pub fn records(&self) -> u64 {
        self.last_seq + 1 - self.first_seq
    }
}

/// Why the rotator could not do its work. Records stay in the store; the
/// rotator starts over from its durable state on the next call.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{op} {path} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateDecodeError),
    #[error(transparent)]
    StateNotSaved(#[from] crate::writer::StateError),
    #[error("record {port}/{seq} is missing from the store")]
    Missing { port: Arc<str>, seq: u64 },
}

struct Writing {
    /// Buffered: written through at the end of every call into the rotator
    /// and before the file is synced.
    file: BufWriter<File>,
    stem: String,
    first_seq: u64,
    last_seq: u64,
    first_received_us: i64,
}

/// Writes one port's records into ACS files.
///
/// Call [`Rotator::recover`] once (other calls do it when needed), then
/// [`Rotator::take`] with each batch of flushed records, and [`Rotator::tick`]
/// when [`Rotator::deadline_us`] passes. A call that fails leaves the
/// rotator to recover again on the next call: nothing is lost, since the
/// store keeps every record until it is in a closed file.
pub struct Rotator {
    settings: RotatorSettings,
    /// Call records are filed as received; transactions one line each.
    kind: StreamKind,
    /// Read only: records and the durable state come from it.
    store: Store,
    /// Where state changes are recorded (the store's one writer).
    writer: Arc<dyn StateWriter>,
    state: FileState,
    writing: Option<Writing>,
    next_seq: u64,
    recovered: bool,
    closed: Vec<ClosedFile>,
    /// The name of the last file this port opened (in this run, or open at
    /// the crash): new names sort after it.
    last_stem: Option<String>,
    /// The file being closed had to be written again (its `.tmp` was
    /// removed under billbox).
    rewrote: bool,
}

impl Rotator {
    /// A rotator that reads `store` and records its state with `writer`.
    pub fn new(settings: RotatorSettings, store: Store, writer: Arc<dyn StateWriter>) -> Rotator {
        Rotator {
            kind: StreamKind::of(&settings.port),
            settings,
            store,
            writer,
            state: FileState::default(),
            writing: None,
            next_seq: 1,
            recovered: false,
            closed: Vec::new(),
            last_stem: None,
            rewrote: false,
        }
    }

    /// A rotator of the same port that starts over from the store (after
    /// this one failed: its open file is dropped, its state rebuilt).
    pub fn start_over(&self) -> Rotator {
        let mut fresh = Rotator::new(
            self.settings.clone(),
            self.store.clone(),
            self.writer.clone(),
        );
        fresh.last_stem = self.last_stem.clone();
        fresh
    }

    pub fn settings(&self) -> &RotatorSettings {
        &self.settings
    }

    /// The next sequence this rotator will write.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether a `.tmp` file is open.
    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The `.tmp` file being written: its file name, its records, and when
    /// its first record was received (microseconds since the epoch).
    pub fn open_file(&self) -> Option<(String, u64, i64)> {
        let w = self.writing.as_ref()?;
        Some((
            format!("{}.{TMP}", w.stem),
            (w.last_seq + 1).saturating_sub(w.first_seq),
            w.first_received_us,
        ))
    }

    /// The last sequence written into a closed file.
    pub fn cursor(&self) -> u64 {
        self.state.cursor
    }

    /// Files closed since the last call.
    pub fn drain_closed(&mut self) -> Vec<ClosedFile> {
        std::mem::take(&mut self.closed)
    }

    /// When the open file's lifetime ends (microseconds since the epoch).
    pub fn deadline_us(&self) -> Option<i64> {
        let w = self.writing.as_ref()?;
        let t = self.settings.timeout?;
        Some(w.first_received_us.saturating_add(t.as_micros() as i64))
    }

    /// Loads the durable state, completes and closes a file left open by a
    /// crash, then writes every flushed record not yet in a file.
    pub fn recover(&mut self, now_us: i64) -> Result<(), SpoolError> {
        self.guard(|r| r.recover_inner(now_us))
    }

    /// Writes flushed records (in sequence order) into files; records already
    /// written are skipped and a gap is filled from the store.
    pub fn take(&mut self, records: &[Record], now_us: i64) -> Result<(), SpoolError> {
        self.guard(|r| {
            if !r.recovered {
                r.recover_inner(now_us)?;
            }
            for rec in records {
                if rec.seq > r.next_seq {
                    r.catch_up_to(rec.seq - 1)?;
                }
                r.append(rec)?;
            }
            r.close_if_expired(now_us)
        })
    }

    /// Writes every flushed record of the port not yet in a file.
    pub fn catch_up(&mut self, now_us: i64) -> Result<(), SpoolError> {
        self.guard(|r| {
            if !r.recovered {
                return r.recover_inner(now_us);
            }
            let durable = r.store.durable_seq(&r.settings.port);
            r.catch_up_to(durable)?;
            r.close_if_expired(now_us)
        })
    }

    /// Closes the open file now, whatever its lifetime (for `billbox salvage`).
    pub fn close_now(&mut self) -> Result<(), SpoolError> {
        self.guard(|r| r.close_current())
    }

    /// Closes the open file when its lifetime has ended.
    pub fn tick(&mut self, now_us: i64) -> Result<(), SpoolError> {
        self.guard(|r| {
            if !r.recovered {
                return r.recover_inner(now_us);
            }
            r.close_if_expired(now_us)
        })
    }

    fn guard(
        &mut self,
        f: impl FnOnce(&mut Rotator) -> Result<(), SpoolError>,
    ) -> Result<(), SpoolError> {
        let mut result = f(self);
        if result.is_ok() {
            result = self.write_through();
        }
        if result.is_err() {
            self.writing = None;
            self.recovered = false;
        }
        result
    }

    /// Hands what is buffered for the open file to the OS, so the `.tmp`
    /// file shows every record taken so far.
    fn write_through(&mut self) -> Result<(), SpoolError> {
        let Some(w) = self.writing.as_mut() else {
            return Ok(());
        };
        w.file.flush().map_err(|source| SpoolError::Io {
            op: "writing",
            path: self.settings.dir.join(format!("{}.{TMP}", w.stem)),
            source,
        })
    }

    fn recover_inner(&mut self, now_us: i64) -> Result<(), SpoolError> {
        self.writing = None;
        self.state = match self.store.get_meta(&self.settings.port, META_NAME)? {
            Some(v) => FileState::decode(&v)?,
            None => FileState::default(),
        };
        // A store started fresh above the sequences of a quarantined one
        // begins its files cursor there.
        let floor = self.store.cursor(&self.settings.port, FILES_CURSOR)?;
        if self.state.open.is_none() && floor > self.state.cursor {
            self.state.cursor = floor;
        }
        if let Some(open) = &self.state.open {
            self.last_stem = Some(open.stem.clone());
        }
        if let Some(open) = self.state.open.clone() {
            let tmp = self.path(&open.stem, TMP);
            match open.closing_last {
                Some(last) if tmp.exists() => {
                    self.write_whole(&open.stem, open.first, last)?;
                    self.rename_closed(&open.stem, open.first, last)?;
                }
                Some(last) => {
                    // The rename happened before the crash (the `.tmp`'s
                    // name was durable since it was created, so only the
                    // rename can have taken it); only the cursor is behind.
                    self.state.cursor = last;
                    self.state.open = None;
                    self.persist(false)?;
                }
                None => {
                    let durable = self.store.durable_seq(&self.settings.port);
                    let end =
                        durable.min(open.first + u64::from(self.settings.records_per_file) - 1);
                    if end < open.first {
                        remove_if_exists(&tmp)?;
                        self.state.open = None;
                        self.persist(false)?;
                    } else {
                        self.write_whole(&open.stem, open.first, end)?;
                        self.mark_closing(end)?;
                        self.rename_closed(&open.stem, open.first, end)?;
                    }
                }
            }
        }
        self.next_seq = self.state.cursor + 1;
        self.persist(false)?;
        self.recovered = true;
        let durable = self.store.durable_seq(&self.settings.port);
        self.catch_up_to(durable)?;
        self.close_if_expired(now_us)
    }

    fn catch_up_to(&mut self, to: u64) -> Result<(), SpoolError> {
        if self.next_seq > to {
            return Ok(());
        }
        let store = self.store.clone();
        let port = self.settings.port.clone();
        for rec in store.records(&port, self.next_seq, to) {
            let rec = rec?;
            if rec.seq != self.next_seq {
                return Err(SpoolError::Missing {
                    port,
                    seq: self.next_seq,
                });
            }
            self.append(&rec)?;
        }
        if self.next_seq <= to {
            return Err(SpoolError::Missing {
                port,
                seq: self.next_seq,
            });
        }
        Ok(())
    }

    fn append(&mut self, rec: &Record) -> Result<(), SpoolError> {
        if rec.seq < self.next_seq {
            return Ok(());
        }
        if rec.seq > self.next_seq {
            return Err(SpoolError::Missing {
                port: self.settings.port.clone(),
                seq: self.next_seq,
            });
        }
        if self.writing.is_some() && self.expired_at(rec.received_us) {
            self.close_current()?;
        }
        if self.writing.is_none() {
            self.open_new(rec)?;
        }
        let w = self.writing.as_mut().expect("a file is open");
        w.file
            .write_all(&file_line(self.kind, rec))
            .map_err(|source| SpoolError::Io {
                op: "writing",
                path: self.settings.dir.join(format!("{}.{TMP}", w.stem)),
                source,
            })?;
        w.last_seq = rec.seq;
        self.next_seq = rec.seq + 1;
        if w.last_seq + 1 - w.first_seq >= u64::from(self.settings.records_per_file) {
            self.close_current()?;
        }
        Ok(())
    }

    fn expired_at(&self, at_us: i64) -> bool {
        self.deadline_us().is_some_and(|d| at_us >= d)
    }

    fn close_if_expired(&mut self, now_us: i64) -> Result<(), SpoolError> {
        if self.expired_at(now_us) {
            self.close_current()?;
        }
        Ok(())
    }

    fn open_new(&mut self, rec: &Record) -> Result<(), SpoolError> {
        let stem = unique_stem(
            &self.settings.dir,
            &self.settings.prefix,
            rec.received_us,
            self.last_stem.as_deref(),
        );
        self.last_stem = Some(stem.clone());
        self.state.open = Some(OpenState {
            stem: stem.clone(),
            first: rec.seq,
            closing_last: None,
        });
        self.persist(true)?;
        let path = self.path(&stem, TMP);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| SpoolError::Io {
                op: "creating",
                path: path.clone(),
                source,
            })?;
        // The `.tmp`'s name is made durable now (a file's fsync does not do
        // it): otherwise a power cut after the file is marked closing and
        // before the rename's directory fsync leaves neither name, which
        // recovery cannot tell from a renamed file an operator's transfer
        // job already took away.
        sync_dir(&self.settings.dir)?;
        self.writing = Some(Writing {
            file: BufWriter::with_capacity(FILE_BUFFER, file),
            stem,
            first_seq: rec.seq,
            last_seq: rec.seq - 1,
            first_received_us: rec.received_us,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), SpoolError> {
        let Some(w) = self.writing.take() else {
            return Ok(());
        };
        let path = self.path(&w.stem, TMP);
        let file = w.file.into_inner().map_err(|e| SpoolError::Io {
            op: "writing",
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| SpoolError::Io {
            op: "syncing",
            path: path.clone(),
            source,
        })?;
        drop(file);
        // Removed under billbox while open (the data went to an unlinked
        // inode): its records are still in the store, which keeps them
        // until they are in a closed file.
        self.rewrote = !path.exists();
        if self.rewrote {
            self.write_whole(&w.stem, w.first_seq, w.last_seq)?;
        }
        self.mark_closing(w.last_seq)?;
        self.rename_closed(&w.stem, w.first_seq, w.last_seq)?;
        if let Some(closed) = self.closed.last_mut() {
            closed.rewritten = std::mem::take(&mut self.rewrote);
        }
        Ok(())
    }

    /// Durably notes that the open file is complete up to `last`.
    fn mark_closing(&mut self, last: u64) -> Result<(), SpoolError> {
        if let Some(open) = self.state.open.as_mut() {
            open.closing_last = Some(last);
        }
        self.persist(true)?;
        Ok(())
    }

    /// Renames `.tmp` to `.txt`, syncs the directory and moves the cursor.
    fn rename_closed(&mut self, stem: &str, first: u64, last: u64) -> Result<(), SpoolError> {
        let tmp = self.path(stem, TMP);
        let txt = self.path(stem, TXT);
        let renamed = match std::fs::rename(&tmp, &txt) {
            // Removed under billbox since it was checked (a collector): its
            // records are still in the store; written again, renamed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.write_whole(stem, first, last)?;
                self.rewrote = true;
                std::fs::rename(&tmp, &txt)
            }
            other => other,
        };
        renamed.map_err(|source| SpoolError::Io {
            op: "renaming",
            path: tmp,
            source,
        })?;
        sync_dir(&self.settings.dir)?;
        self.state.cursor = last;
        self.state.open = None;
        // Made durable by the next flush; until then a crash finds the file
        // marked closing with its `.tmp` gone, which means the same.
        self.persist(false)?;
        self.closed.push(ClosedFile {
            path: txt,
            first_seq: first,
            last_seq: last,
            rewritten: false,
        });
        Ok(())
    }

    /// Writes a whole file from the journal: records `first..=last`, synced.
    fn write_whole(&mut self, stem: &str, first: u64, last: u64) -> Result<(), SpoolError> {
        let path = self.path(stem, TMP);
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { op, path, source }
        };
        let mut file = File::create(&path).map_err(io("creating", &path))?;
        let mut expect = first;
        for rec in self.store.records(&self.settings.port, first, last) {
            let rec = rec?;
            if rec.seq != expect {
                break;
            }
            file.write_all(&file_line(self.kind, &rec))
                .map_err(io("writing", &path))?;
            expect += 1;
        }
        if expect != last + 1 {
            return Err(SpoolError::Missing {
                port: self.settings.port.clone(),
                seq: expect,
            });
        }
        file.sync_all().map_err(io("syncing", &path))?;
        // Its name too, before it is marked closing (see `open_new`).
        sync_dir(&self.settings.dir)?;
        Ok(())
    }

    /// Records the state, and the files cursor the store's removal reads;
    /// `durable`: returns only once it is flushed.
    fn persist(&self, durable: bool) -> Result<(), SpoolError> {
        self.writer.record(StateChange {
            port: self.settings.port.clone(),
            state: self.state.clone(),
            durable,
        })?;
        Ok(())
    }

    fn path(&self, stem: &str, ext: &str) -> PathBuf {
        self.settings.dir.join(format!("{stem}.{ext}"))
    }
}

fn remove_if_exists(path: &Path) -> Result<(), SpoolError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SpoolError::Io {
            op: "removing",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SpoolError::Io {
            op: "syncing directory",
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests;
