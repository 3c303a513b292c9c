//! The store actor: group commit in front of the sled store, and its only
//! writer.
//!
//! Appends that arrive while a flush runs wait in `pending`; when the flush
//! ends they are applied as one sled batch and flushed together, with every
//! other write made since (acknowledgements, file state changes, removals,
//! drops). Each append is answered only after the flush that made it
//! durable; then the rotators and destinations are told. One flush runs at
//! a time, and the commit being flushed is held by the actor, so a restart
//! flushes and answers it instead of dropping it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::capacity::{
    done_through, free_bytes, plan_drops, Capacity, Change, DiskReserve, Latch, Undelivered,
};
use actix::prelude::*;
use billbox_record::Record;
use billbox_store::{Assigned, IdEntry, NewRecord, Store, DELIVERY_CURSOR};
use tokio::sync::oneshot;

use crate::events::{
    DataDiskLow, DataDiskOk, MirrorQueueFull, RecordsDropped, RecordsReceived, RecordsRemoved,
    StoreFull, StoreHasSpace, StoreSyncFailed,
};
use crate::messages::{
    Acked, Append, AppendError, Committed, CopyBatch, Drain, DrainEnd, FilesChanged, Flush,
    OnConflict, Reconfigure, Submit, SubmitError, Submitted, SubscribeCommitted,
};
use crate::stats::LatencyHistogram;
use crate::supervise::{guard, ActorName, Guarded, Recovery, Restarts};
use billbox_spool::StateError;

/// A batch applied to sled, waiting for its flush to be answered. It is
/// held by the actor (not by the flush's future), so a restart flushes it
/// again instead of dropping its answers: its records are in sled already,
/// and answering "not committed" would make the readers append them twice.
struct Commit {
    batch: Vec<Pending>,
    plans: Vec<Result<Plan, AppendError>>,
    assigned: Vec<Assigned>,
    /// Changes applied before this flush began that wait for it.
    synced: Vec<SyncWaiter>,
}

/// Who waits for the next flush.
enum SyncWaiter {
    /// A rotator, for its file state change.
    Files(std::sync::mpsc::SyncSender<Result<(), StateError>>),
    /// A [`Flush`] (at shutdown): the sequence guard is written too.
    Flush(oneshot::Sender<Result<(), AppendError>>),
}

impl SyncWaiter {
    fn answer(self, store: &Store, result: Result<(), &Arc<billbox_store::StoreError>>) {
        match self {
            SyncWaiter::Files(tx) => {
                let _ = tx.send(result.map_err(|e| StateError::Store(e.clone())));
            }
            SyncWaiter::Flush(tx) => {
                let result = result
                    .map_err(Arc::clone)
                    .and_then(|()| store.confirm().map_err(Arc::new))
                    .map_err(AppendError::Store);
                let _ = tx.send(result);
            }
        }
    }
}

struct Pending {
    port: Arc<str>,
    records: Arc<Vec<NewRecord>>,
    reply: Reply,
}

/// Who waits for a pending append, and how it is answered.
enum Reply {
    /// A port reader's [`Append`].
    Append(oneshot::Sender<Result<Assigned, AppendError>>),
    /// A [`Submit`] of one transaction with the submitter's id.
    Submit {
        tx: oneshot::Sender<Result<Submitted, SubmitError>>,
        id: String,
        digest: [u8; 32],
        on_conflict: OnConflict,
    },
    /// Answered already.
    Answered,
}

impl Reply {
    fn fail(self, e: AppendError) {
        match self {
            Reply::Answered => {}
            Reply::Append(tx) => {
                let _ = tx.send(Err(e));
            }
            Reply::Submit { tx, .. } => {
                let _ = tx.send(Err(SubmitError::Append(e)));
            }
        }
    }
}

/// What one pending append does in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Its records are the batch element with this index.
    New(usize),
    /// Its id is stored already with the same content, as this record.
    Stored(u64),
    /// Its id is stored already with other content, as this record.
    Conflict(u64),
    /// Its id is that of an earlier element of this same batch: the same
    /// content (`true`) or not.
    Like(usize, bool),
}

/// Decides what each pending append does: ids already stored (or earlier
/// in the batch) are not stored again. Returns the plans, the batch
/// elements' indexes into `pending`, and the id entries to write.
fn plan_batch(
    store: &Store,
    pending: &[Pending],
) -> (Vec<Result<Plan, AppendError>>, Vec<usize>, Vec<IdEntry>) {
    let mut plans = Vec::with_capacity(pending.len());
    let mut elements = Vec::with_capacity(pending.len());
    let mut ids = Vec::new();
    // (port, id) -> (element, digest) of this batch.
    let mut seen: HashMap<(&str, &str), (usize, [u8; 32])> = HashMap::new();
    for (i, p) in pending.iter().enumerate() {
        let Reply::Submit {
            id,
            digest,
            on_conflict,
            ..
        } = &p.reply
        else {
            plans.push(Ok(Plan::New(elements.len())));
            elements.push(i);
            continue;
        };
        let found = match seen.get(&(p.port.as_ref(), id.as_str())) {
            Some(&(element, d)) => Ok(Some(Err((element, d == *digest)))),
            None => store
                .lookup_id(&p.port, id)
                .map(|f| f.map(|(seq, d)| Ok((seq, d == *digest))))
                .map_err(|e| AppendError::Store(Arc::new(e))),
        };
        let plan = match found {
            Err(e) => Err(e),
            Ok(Some(Ok((seq, true)))) => Ok(Plan::Stored(seq)),
            Ok(Some(Err((element, true)))) => Ok(Plan::Like(element, true)),
            Ok(Some(_)) if *on_conflict == OnConflict::Store => {
                elements.push(i);
                Ok(Plan::New(elements.len() - 1))
            }
            Ok(Some(Ok((seq, false)))) => Ok(Plan::Conflict(seq)),
            Ok(Some(Err((element, false)))) => Ok(Plan::Like(element, false)),
            Ok(None) => {
                let element = elements.len();
                elements.push(i);
                seen.insert((p.port.as_ref(), id.as_str()), (element, *digest));
                ids.push(IdEntry {
                    element,
                    id: id.clone(),
                    digest: *digest,
                    at_us: p.records.first().map_or(0, |r| r.received_us),
                });
                Ok(Plan::New(element))
            }
        };
        plans.push(plan);
    }
    (plans, elements, ids)
}

/// How long after a cursor moves the records every consumer is done with
/// are removed (the moves of that second are removed together).
pub const REMOVE_AFTER: Duration = Duration::from_secs(1);
/// How often the sequence guard learns what is flushed.
pub const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// How often old transaction ids are forgotten (`transactions.remember`).
pub const FORGET_EVERY: Duration = Duration::from_secs(60);
/// The most ids one stream forgets per [`FORGET_EVERY`].
pub const FORGET_LIMIT: usize = 10_000;

/// How long a file state change waits for a commit of records to ride
/// before it is flushed on its own (the rotator waits for it).
pub const SYNC_SOON: Duration = Duration::from_millis(2);
/// How long acknowledgements wait for a commit of records to ride before
/// they are flushed on their own: what a SIGKILL can re-send beyond the
/// batch in flight, at most ten flushes a second for them.
pub const ACKS_FLUSH_AFTER: Duration = Duration::from_millis(100);

/// How often a store held by a low disk checks its free space again.
pub const FULL_RECHECK: Duration = Duration::from_millis(100);

/// How often retained records that have aged past `store.retain` are
/// looked for (cursors do not move for them): a tenth of `retain`, between
/// one second and a minute.
pub fn retain_check(retain: Duration) -> Duration {
    (retain / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Who consumes committed records besides the rotators, and the rules the
/// store actor applies for them. Owned by the store actor; a reload sends a
/// new one ([`Reconfigure`]).
#[derive(Default)]
pub struct Consumers {
    /// Cursor names that must all pass a record before it is removed.
    pub removal_cursors: Vec<String>,
    /// Told of each commit ([`Committed`]): the cursor destinations (the
    /// primary/secondary sender, reliable carbon copies).
    pub destinations: Vec<Recipient<Committed>>,
    /// Fire-once carbon copies, by name, handed each committed batch.
    pub mirrors: Vec<(Arc<str>, Recipient<CopyBatch>)>,
    /// `max_records` and `when_full`, when records are forwarded.
    pub capacity: Option<Capacity>,
    /// The data directory and the free bytes to keep on its file system
    /// (`store.min_free_mb`); sled cannot recover from a full disk while
    /// running, so new records wait while less is free.
    pub min_free: Option<(std::path::PathBuf, DiskReserve)>,
    /// `store.flush_timeout`: a flush that has not returned after this long
    /// is taken as failed (`None`: the config's default).
    pub flush_timeout: Option<Duration>,
    /// How long the submitters' ids of delivered and filed transactions
    /// are remembered (`transactions.remember`); `None`: no transactions.
    pub remember_ids: Option<Duration>,
    /// `store.retain`: done records stay this long after they arrived
    /// (`None`: removed once done). They yield to the disk reserve.
    pub retain: Option<Duration>,
}

/// The single writer of the store.
pub struct StoreActor {
    store: Store,
    latency: Arc<LatencyHistogram>,
    consumers: Arc<Consumers>,
    /// The store is full (`block`): new records wait.
    full: Latch,
    /// Between [`Drain`] and [`DrainEnd`] (a stop or a reload stops
    /// readers): commit what they already read, capacity and reserve or not.
    draining: bool,
    /// The data disk is below its reserve: new records wait.
    disk_low: Latch,
    /// The data file system's lack of a size was logged.
    size_unknown_said: bool,
    /// A write or sync of the store failed (the error): nothing more is
    /// committed in this process, which stops ([`StoreActor::give_up`]).
    failed: Option<Arc<billbox_store::StoreError>>,
    recheck_scheduled: bool,
    /// Ports whose cursors moved since the last removal.
    removal_due: std::collections::HashSet<Arc<str>>,
    removal_scheduled: bool,
    /// The removal pass for records aging past `store.retain`.
    retain_timer: Option<SpawnHandle>,
    /// When a flush of what is not a record append is scheduled.
    sync_at: Option<std::time::Instant>,
    /// That time has come: the next commit flushes even without records.
    sync_due: bool,
    last_confirm: std::time::Instant,
    /// Per fire-once mirror: its mailbox is full (records are not copied;
    /// its own queue's overflow it reports itself).
    mirror_overflow: HashMap<Arc<str>, Latch>,
    pending: Vec<Pending>,
    /// The commit being flushed.
    in_flight: Option<Commit>,
    /// Acknowledgements were applied since the running flush began: they
    /// ride the next commit of records, or are flushed on their own within
    /// [`ACKS_FLUSH_AFTER`].
    acks_unflushed: bool,
    /// File state changes applied since the running flush began: answered
    /// after the next one.
    unsynced: Vec<SyncWaiter>,
    flushing: bool,
    drained: Vec<oneshot::Sender<()>>,
    rotators: HashMap<Arc<str>, Recipient<Committed>>,
    recovery: Recovery,
}

impl StoreActor {
    /// The consumers as they stand now.
    fn consumers(&self) -> Arc<Consumers> {
        self.consumers.clone()
    }

    /// `latency` counts, per record, the time from its read to its flush.
    /// It feeds no destination until it is sent [`Reconfigure`].
    pub fn new(store: Store, latency: Arc<LatencyHistogram>, restarts: Restarts) -> StoreActor {
        StoreActor {
            store,
            latency,
            consumers: Arc::default(),
            full: Latch::default(),
            draining: false,
            disk_low: Latch::default(),
            size_unknown_said: false,
            failed: None,
            recheck_scheduled: false,
            removal_due: Default::default(),
            removal_scheduled: false,
            retain_timer: None,
            sync_at: None,
            sync_due: false,
            last_confirm: std::time::Instant::now(),
            mirror_overflow: HashMap::new(),
            pending: Vec::new(),
            in_flight: None,
            acks_unflushed: false,
            unsynced: Vec::new(),
            flushing: false,
            drained: Vec::new(),
            rotators: HashMap::new(),
            recovery: Recovery::new(
                ActorName {
                    kind: "store",
                    label: "",
                    subject: Arc::from("store"),
                },
                restarts,
            ),
        }
    }

    /// Commits what is pending, if it can; a panic on the way stops the
    /// actor, and its supervisor restarts it (pending appends are answered
    /// "not committed", and their readers send them again).
    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if let Err(panic) = guard(|| self.try_commit(ctx)) {
            self.fail(panic, ctx);
        }
    }

    fn fail(&mut self, panic: String, ctx: &mut Context<Self>) {
        self.recovery.failed(panic);
        ctx.stop();
    }

    fn try_commit(&mut self, ctx: &mut Context<Self>) {
        if self.failed.is_some() {
            self.refuse_all();
            return;
        }
        if self.flushing {
            return;
        }
        if self.pending.is_empty() && self.unsynced.is_empty() && !self.acks_unflushed {
            for d in self.drained.drain(..) {
                let _ = d.send(());
            }
            return;
        }
        // Only file state changes or acknowledgements: they wait a moment
        // for records to ride with (unless billbox is stopping).
        if self.pending.is_empty() && !self.sync_due && !self.draining {
            let after = if self.unsynced.is_empty() {
                ACKS_FLUSH_AFTER
            } else {
                SYNC_SOON
            };
            self.sync_soon(after, ctx);
            return;
        }
        self.sync_due = false;
        // Stopping (draining): what the readers already read is committed,
        // past max_records and into the disk reserve (that is what it is
        // kept for), so a stop is never held.
        let held = !self.pending.is_empty()
            && !self.draining
            && (self.blocked_by_disk(ctx) || self.blocked_by_capacity());
        if held {
            // Submitters are told at once (HTTP 503) instead of waiting.
            let (submits, appends) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| matches!(p.reply, Reply::Submit { .. }));
            self.pending = appends;
            for p in submits {
                if let Reply::Submit { tx, .. } = p.reply {
                    let _ = tx.send(Err(SubmitError::Full));
                }
            }
            // File state changes and acknowledgements are flushed all the same.
            if self.unsynced.is_empty() && !self.acks_unflushed {
                return;
            }
        }
        // Test builds: a fault before anything is written.
        let _ = billbox_failpoints::check("store.commit");
        let batch = if held {
            Vec::new()
        } else {
            std::mem::take(&mut self.pending)
        };
        let synced = std::mem::take(&mut self.unsynced);
        // This flush makes every acknowledgement applied so far durable.
        self.acks_unflushed = false;
        let (plans, elements, ids) = plan_batch(&self.store, &batch);
        let refs: Vec<(Arc<str>, &[NewRecord])> = elements
            .iter()
            .map(|&i| (batch[i].port.clone(), batch[i].records.as_slice()))
            .collect();
        let assigned = match self.store.append_indexed(&refs, &ids) {
            Ok(a) => a,
            Err(e) => {
                // sled refuses writes only once its own I/O failed (it keeps
                // the error): it cannot be used again in this process.
                self.pending = batch;
                self.unsynced = synced;
                self.give_up(e);
                return;
            }
        };
        self.flushing = true;
        self.in_flight = Some(Commit {
            batch,
            plans,
            assigned,
            synced,
        });
        self.flush(ctx);
    }

    /// Flushes the commit in flight and answers it. A failed flush is not
    /// tried again: after a failed `fdatasync` Linux drops the data it
    /// could not write and the next one succeeds, and sled keeps the error
    /// of a failed write; so the store gives up ([`StoreActor::give_up`]).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let limit = self
            .consumers
            .flush_timeout
            .unwrap_or(billbox_config::StoreConfig::DEFAULT_FLUSH_TIMEOUT);
        Guarded::new(async move {
            match tokio::time::timeout(limit, store.flush()).await {
                Ok(result) => result,
                // sled's flush can wait forever once its own write failed.
                Err(_) => Err(billbox_store::StoreError::FlushStuck { after: limit }),
            }
        })
        .into_actor(self)
        .map(move |res, act, ctx| {
            let res = match res {
                Ok(res) => res,
                Err(panic) => return act.fail(panic, ctx),
            };
            let Some(commit) = act.in_flight.as_mut() else {
                return;
            };
            if let Err(e) = res {
                act.give_up(e);
                return;
            }
            for waiter in commit.synced.drain(..) {
                waiter.answer(&act.store, Ok(()));
            }
            act.flushing = false;
            let Some(commit) = act.in_flight.take() else {
                return;
            };
            // Answered first: a fault in what follows cannot take the
            // answers of durable records with it.
            let received = act.answer(commit);
            match guard(|| act.committed(received, ctx)) {
                Ok(()) => act.commit_next(ctx),
                Err(panic) => act.fail(panic, ctx),
            }
        })
        .spawn(ctx);
    }

    /// A write or sync of the store failed. Nothing of the commit in
    /// flight is answered as committed, and nothing more will be: its
    /// records may be on the disk or not (the next start tells), and the
    /// data a failed writeback dropped can only be written again by a new
    /// process, which writes the store's files again before opening it
    /// (`billbox_store::resync`). So: leave that mark, log at ERROR, refuse
    /// every append from now on, and stop billbox (exit 3).
    fn give_up(&mut self, e: billbox_store::StoreError) {
        let marked = self.store.note_failed_sync();
        let waiting = |p: &Pending| p.records.len();
        let records: usize = self.pending.iter().map(waiting).sum::<usize>()
            + self
                .in_flight
                .as_ref()
                .map_or(0, |c| c.batch.iter().map(waiting).sum());
        StoreSyncFailed {
            error: &e,
            marked: marked.as_ref().map(|_| ()),
            records,
        }
        .emit();
        let e = Arc::new(e);
        self.failed = Some(e.clone());
        self.flushing = false;
        if let Some(commit) = self.in_flight.take() {
            for waiter in commit.synced {
                waiter.answer(&self.store, Err(&e));
            }
            for p in commit.batch {
                p.reply.fail(AppendError::StoreFailed);
            }
        }
        self.refuse_all();
        self.recovery
            .restarts()
            .stop_for(format!("the store's disk failed a sync ({e})"));
    }

    /// After [`StoreActor::give_up`]: answers everything waiting "not
    /// committed, and never will be".
    fn refuse_all(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            p.reply.fail(AppendError::StoreFailed);
        }
        if let Some(e) = self.failed.clone() {
            for waiter in std::mem::take(&mut self.unsynced) {
                waiter.answer(&self.store, Err(&e));
            }
        }
        self.acks_unflushed = false;
        for d in self.drained.drain(..) {
            let _ = d.send(());
        }
    }

    /// Has a write that is not a record append (a file state change, an
    /// acknowledgement) flushed soon: with the next commit of records when
    /// one runs or waits (it rides along), else `after` from now, so a busy
    /// store does not flush for them on their own. An earlier deadline than
    /// the one scheduled gets its own timer.
    fn sync_soon(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if self.flushing || !self.pending.is_empty() {
            return;
        }
        let at = std::time::Instant::now() + after;
        if self.sync_at.is_some_and(|t| t <= at) {
            return;
        }
        self.sync_at = Some(at);
        ctx.run_later(after, move |act, ctx| {
            if act.sync_at != Some(at) {
                // Replaced by an earlier one, or done.
                return;
            }
            act.sync_at = None;
            act.sync_due = true;
            act.commit_next(ctx);
        });
    }

    /// Holds the pending appends while the data directory's file system has
    /// less free than its reserve.
    fn blocked_by_disk(&mut self, ctx: &mut Context<Self>) -> bool {
        let consumers = self.consumers();
        let Some((dir, reserve)) = &consumers.min_free else {
            return false;
        };
        let stat = nix::sys::statvfs::statvfs(dir).ok();
        let free =
            stat.and_then(|st| free_bytes(st.blocks(), st.blocks_available(), st.fragment_size()));
        if stat.is_some() && free.is_none() && !self.size_unknown_said {
            self.size_unknown_said = true;
            tracing::warn!(path = %dir.display(), "The data directory's file system reports no size; the disk reserve (store.min_free_mb) cannot be kept there, and sled's own errors are relied on.");
        }
        let low = reserve.low(free);
        let free_bytes = free.unwrap_or(u64::MAX);
        match self.disk_low.set(low) {
            Change::Started => DataDiskLow {
                path: dir,
                free_bytes,
                min_free_bytes: reserve.min_free_bytes,
            }
            .emit(),
            Change::Ended => DataDiskOk {
                path: dir,
                free_bytes,
            }
            .emit(),
            Change::Same => {}
        }
        if low {
            // Retained records go first: a removal pass that ignores retain.
            if consumers.retain.is_some() {
                self.cursor_moved(None, ctx);
            }
            self.schedule_recheck(ctx);
        }
        low
    }

    fn schedule_recheck(&mut self, ctx: &mut Context<Self>) {
        if !self.recheck_scheduled {
            self.recheck_scheduled = true;
            ctx.run_later(FULL_RECHECK, |act, ctx| {
                act.recheck_scheduled = false;
                act.commit_next(ctx);
            });
        }
    }

    /// A reload took the capacity away (no `[delivery]` any more): a store
    /// held full is not held any longer.
    fn release_uncapped(&mut self) {
        if self.consumers().capacity.is_none() {
            if let Change::Ended = self.full.set(false) {
                StoreHasSpace {
                    backlog: self.store.total_backlog(DELIVERY_CURSOR).unwrap_or(0),
                    max_records: 0,
                }
                .emit();
            }
        }
    }

    /// With `when_full = "block"`: holds the pending appends (and so the port
    /// readers) while the records waiting for delivery fill the capacity.
    fn blocked_by_capacity(&mut self) -> bool {
        let Some(capacity) = self.consumers().capacity else {
            self.release_uncapped();
            return false;
        };
        let backlog = self.store.total_backlog(DELIVERY_CURSOR).unwrap_or(0);
        let incoming: u64 = self.pending.iter().map(|p| p.records.len() as u64).sum();
        let held = capacity.holds(backlog, incoming);
        let max_records = capacity.max_records;
        match self.full.set(held) {
            Change::Started => StoreFull {
                backlog,
                max_records,
            }
            .emit(),
            Change::Ended => StoreHasSpace {
                backlog,
                max_records,
            }
            .emit(),
            Change::Same => {}
        }
        // An acknowledgement makes it look again (no polling).
        held
    }

    /// With `when_full = "drop_oldest"`: gives up delivery of the oldest
    /// records beyond the capacity (they stay for the files).
    fn drop_oldest(&mut self, ctx: &mut Context<Self>) {
        let Some(capacity) = self.consumers().capacity else {
            return;
        };
        let excess = capacity.excess(self.store.total_backlog(DELIVERY_CURSOR).unwrap_or(0));
        if excess == 0 {
            return;
        }
        let ports = self
            .store
            .ports()
            .into_iter()
            .map(|port| Undelivered {
                cursor: self.store.cursor(&port, DELIVERY_CURSOR).unwrap_or(0),
                durable: self.store.durable_seq(&port),
                port,
            })
            .collect();
        let received_at = |port: &str, seq: u64| match self.store.records(port, seq, seq).next() {
            Some(Ok(r)) => r.received_us,
            _ => i64::MIN,
        };
        for d in plan_drops(ports, excess, received_at) {
            if self
                .store
                .advance_cursor(&d.port, DELIVERY_CURSOR, d.last)
                .is_err()
            {
                break;
            }
            self.cursor_moved(Some(&d.port), ctx);
            RecordsDropped {
                port: &d.port,
                count: d.last + 1 - d.first,
                first_seq: d.first,
                last_seq: d.last,
                max_records: capacity.max_records,
            }
            .emit();
        }
    }

    /// Forgets the ids of transactions delivered, filed and older than
    /// `transactions.remember`.
    fn forget_ids(&mut self) {
        let Some(remember) = self.consumers().remember_ids else {
            return;
        };
        let before = crate::now_us().saturating_sub(remember.as_micros() as i64);
        for stream in [
            billbox_transactions::SUBMIT_STREAM,
            billbox_transactions::RELAY_STREAM,
        ] {
            match self.store.forget_ids(stream, before, FORGET_LIMIT) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(port = stream, ids = n, "Old transaction ids are forgotten.")
                }
                Err(e) => {
                    tracing::warn!(port = stream, error = %e, "Forgetting old transaction ids failed; retrying later.")
                }
            }
        }
    }

    /// A cursor of `port` moved (`None`: any port's may have): its done
    /// records are removed [`REMOVE_AFTER`] from now.
    fn cursor_moved(&mut self, port: Option<&Arc<str>>, ctx: &mut Context<Self>) {
        match port {
            Some(p) => {
                self.removal_due.insert(p.clone());
            }
            None => self.removal_due.extend(self.store.ports()),
        }
        if !self.removal_scheduled {
            self.removal_scheduled = true;
            ctx.run_later(REMOVE_AFTER, |act, ctx| {
                act.removal_scheduled = false;
                act.remove_done(ctx);
                // Deliveries free space: a blocked store looks again.
                if act.full.is_on() {
                    act.commit_next(ctx);
                }
            });
        }
    }

    /// Removes the records every consumer is done with, of the ports whose
    /// cursors moved.
    fn remove_done(&mut self, ctx: &mut Context<Self>) {
        let consumers = self.consumers();
        let due = std::mem::take(&mut self.removal_due);
        if consumers.removal_cursors.is_empty() {
            return;
        }
        // Retained records yield to the disk reserve.
        let retain = consumers.retain.filter(|_| !self.disk_low.is_on());
        for port in due {
            let done = done_through(
                consumers
                    .removal_cursors
                    .iter()
                    .map(|c| self.store.cursor(&port, c).unwrap_or(0)),
            );
            let done = match retain {
                Some(keep) => self.aged_through(&port, done, keep),
                None => done,
            };
            match self.store.remove_through(&port, done) {
                Ok(0) => {}
                Ok(n) => RecordsRemoved {
                    port: &port,
                    count: n,
                    through_seq: self.store.first_held(&port).map_or(done, |f| f - 1),
                }
                .emit(),
                Err(e) => {
                    tracing::warn!(port = %port, error = %e, "Removing delivered records failed; retrying later.");
                    self.cursor_moved(Some(&port), ctx);
                }
            }
        }
    }

    /// Retained records age out without any cursor moving: a removal pass
    /// every [`retain_check`] of the consumers' `retain` (none without).
    fn arm_retain(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.retain_timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(keep) = self.consumers.retain {
            self.retain_timer = Some(ctx.run_interval(retain_check(keep), |act, ctx| {
                act.cursor_moved(None, ctx);
            }));
        }
    }

    /// The last of `port`'s records through `done` that arrived more than
    /// `keep` ago (records are in arrival order, so the scan stops at the
    /// first younger one).
    fn aged_through(&self, port: &str, done: u64, keep: Duration) -> u64 {
        let Some(first) = self.store.first_held(port) else {
            return done;
        };
        let cutoff = crate::now_us() - i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
        let mut aged = first.saturating_sub(1);
        for rec in self.store.records(port, first, done) {
            match rec {
                Ok(r) if r.received_us < cutoff => aged = r.seq,
                _ => break,
            }
        }
        aged
    }

    /// Answers a flushed commit (its records are durable) and counts what
    /// was received. Returns the new records, for [`StoreActor::committed`].
    fn answer(&mut self, commit: Commit) -> Vec<(Pending, Assigned)> {
        let Commit {
            batch,
            plans,
            assigned,
            synced: _,
        } = commit;
        let flushed_us = crate::now_us();
        let mut received = Vec::with_capacity(batch.len());
        for (mut p, plan) in batch.into_iter().zip(plans) {
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => {
                    p.reply.fail(e);
                    continue;
                }
            };
            let a = match plan {
                Plan::New(element) => assigned[element],
                Plan::Stored(seq) | Plan::Conflict(seq) => Assigned {
                    first: seq,
                    count: 0,
                },
                Plan::Like(element, _) => Assigned {
                    first: assigned[element].first,
                    count: 0,
                },
            };
            let reply = std::mem::replace(&mut p.reply, Reply::Answered);
            match (reply, plan) {
                // Nothing was stored for a known id: answer, and that is all.
                (Reply::Submit { tx, .. }, Plan::Stored(_) | Plan::Like(_, true)) => {
                    let _ = tx.send(Ok(Submitted {
                        seq: a.first,
                        new: false,
                    }));
                    continue;
                }
                (Reply::Submit { tx, .. }, Plan::Conflict(_) | Plan::Like(_, false)) => {
                    let _ = tx.send(Err(SubmitError::Conflict { seq: a.first }));
                    continue;
                }
                (Reply::Append(tx), _) => {
                    self.store.mark_durable(&p.port, a.last());
                    let _ = tx.send(Ok(a));
                }
                (Reply::Submit { tx, .. }, _) => {
                    self.store.mark_durable(&p.port, a.last());
                    let _ = tx.send(Ok(Submitted {
                        seq: a.first,
                        new: true,
                    }));
                }
                (Reply::Answered, _) => continue,
            }
            // Counted with the answer: the count follows what is received.
            if let Some(r) = p.records.first() {
                let us = (flushed_us - r.received_us).max(0) as u64;
                self.latency.record(us, p.records.len() as u64);
            }
            RecordsReceived {
                port: &p.port,
                count: a.count,
                bytes: p.records.iter().map(|r| r.bytes.len() as u64).sum(),
                first_seq: a.first,
                last_seq: a.last(),
            }
            .emit();
            received.push((p, a));
        }
        received
    }

    /// What follows the answers of a commit: the mirrors' copies, the
    /// guard, `drop_oldest`, and the news to the rotators and cursor
    /// destinations.
    fn committed(&mut self, received: Vec<(Pending, Assigned)>, ctx: &mut Context<Self>) {
        // Test builds: a fault after the answers.
        let _ = billbox_failpoints::check("store.committed");
        let consumers = self.consumers();
        let epoch = self.store.epoch();
        // Per port: the last sequence this commit made durable.
        let mut through: HashMap<Arc<str>, u64> = HashMap::new();
        for (p, a) in received {
            let through = through.entry(p.port.clone()).or_insert(0);
            *through = (*through).max(a.last());
            if !consumers.mirrors.is_empty() {
                let records: Arc<Vec<Record>> = Arc::new(
                    p.records
                        .iter()
                        .enumerate()
                        .map(|(i, r)| Record {
                            port: p.port.clone(),
                            seq: a.first + i as u64,
                            epoch,
                            received_us: r.received_us,
                            flags: r.flags,
                            bytes: r.bytes.clone(),
                        })
                        .collect(),
                );
                for (name, mirror) in &consumers.mirrors {
                    // Its mailbox is full only while it is stuck; its own
                    // queue's overflow it reports itself.
                    let overflow = mirror.try_send(CopyBatch(records.clone())).is_err();
                    let change = self
                        .mirror_overflow
                        .entry(name.clone())
                        .or_default()
                        .set(overflow);
                    if overflow {
                        MirrorQueueFull {
                            mirror: name,
                            records: records.len() as u64,
                            first: change == Change::Started,
                        }
                        .emit();
                    }
                }
            }
        }
        // The guard learns what is flushed about once a second.
        if self.last_confirm.elapsed() >= CONFIRM_EVERY {
            self.last_confirm = std::time::Instant::now();
            if let Err(e) = self.store.confirm() {
                tracing::error!(error = %e, "The sequence guard could not be written; a damaged store would go unnoticed.");
            }
        }
        self.drop_oldest(ctx);
        for (port, through_seq) in through {
            let news = Committed { port, through_seq };
            // A full mailbox holds news already (see [`Committed`]).
            if let Some(rotator) = self.rotators.get(&news.port) {
                let _ = rotator.try_send(news.clone());
            }
            for destination in &consumers.destinations {
                let _ = destination.try_send(news.clone());
            }
        }
    }

    /// Tells `recipient` to read what is committed already (a new consumer
    /// may have missed news sent to the one it replaces).
    fn catch_up(&self, recipient: &Recipient<Committed>, port: Option<&Arc<str>>) {
        let ports = match port {
            Some(p) => vec![p.clone()],
            None => self.store.ports(),
        };
        for port in ports {
            let through_seq = self.store.durable_seq(&port);
            let _ = recipient.try_send(Committed { port, through_seq });
        }
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(FORGET_EVERY, |act, _| act.forget_ids());
        self.arm_retain(ctx);
        // What was done before a start (or restart) is removed too.
        self.removal_scheduled = false;
        self.cursor_moved(None, ctx);
        // A restart: the commit that was being flushed is flushed again
        // and answered, and everyone hears of what is committed (the
        // news of the commit that failed may not have gone out).
        if self.in_flight.is_some() {
            self.flushing = true;
            self.flush(ctx);
        }
        for (port, rotator) in &self.rotators {
            self.catch_up(rotator, Some(port));
        }
        for destination in &self.consumers.destinations {
            self.catch_up(destination, None);
        }
    }
}

impl Supervised for StoreActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.flushing = false;
        self.recheck_scheduled = false;
        self.removal_scheduled = false;
        // A restart clears the timers; started() arms it again.
        self.retain_timer = None;
        self.sync_at = None;
        // Not applied yet: their readers send them again. (A commit in
        // flight stays: it is applied, and is flushed again in started().)
        for p in self.pending.drain(..) {
            p.reply.fail(AppendError::Restarted);
        }
        // Their changes are applied; the rotators save them again.
        for waiter in self.unsynced.drain(..) {
            match waiter {
                SyncWaiter::Files(tx) => {
                    let _ = tx.send(Err(StateError::WriterGone));
                }
                SyncWaiter::Flush(tx) => {
                    let _ = tx.send(Err(AppendError::Restarted));
                }
            }
        }
        // Appends and timers drive it: no pause to take, and nothing to
        // stop once the budget is spent (billbox is then stopping).
        self.recovery.restarting();
        let _ = self.recovery.plan();
    }
}

impl Handler<Append> for StoreActor {
    type Result = ResponseFuture<Result<Assigned, AppendError>>;

    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.pending.push(Pending {
            port: msg.port,
            records: msg.records,
            reply: Reply::Append(tx),
        });
        self.commit_next(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(AppendError::Stopped)) })
    }
}

impl Handler<Submit> for StoreActor {
    type Result = ResponseFuture<Result<Submitted, SubmitError>>;

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) -> Self::Result {
        // Submitters are told at once once the store gave up.
        if self.failed.is_some() {
            return Box::pin(async { Err(SubmitError::Failing) });
        }
        let (tx, rx) = oneshot::channel();
        self.pending.push(Pending {
            port: msg.port,
            records: Arc::new(vec![msg.record]),
            reply: Reply::Submit {
                tx,
                id: msg.id,
                digest: msg.digest,
                on_conflict: msg.on_conflict,
            },
        });
        self.commit_next(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(SubmitError::Append(AppendError::Stopped)))
        })
    }
}

impl Handler<Acked> for StoreActor {
    type Result = Result<(), billbox_delivery::AckError>;

    fn handle(&mut self, msg: Acked, ctx: &mut Context<Self>) -> Self::Result {
        let store = &self.store;
        let applied = guard(|| {
            // Test builds: a fault before the cursor moves.
            let _ = billbox_failpoints::check("store.ack");
            billbox_delivery::acks::apply(store, &msg.0)
        });
        match applied {
            Ok(result) => result.map_err(|e| billbox_delivery::AckError::Store(Arc::new(e)))?,
            Err(panic) => {
                // The loop records it again once the actor is back.
                self.fail(panic, ctx);
                return Err(billbox_delivery::AckError::Gone);
            }
        }
        if msg.0.cursor.is_some() {
            self.cursor_moved(Some(&msg.0.port), ctx);
        }
        // Durable with the next commit of records, or within
        // ACKS_FLUSH_AFTER when none comes.
        self.acks_unflushed = true;
        if self.full.is_on() {
            // A held store may have room now.
            self.commit_next(ctx);
        } else {
            self.sync_soon(ACKS_FLUSH_AFTER, ctx);
        }
        Ok(())
    }
}

impl Handler<FilesChanged> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: FilesChanged, ctx: &mut Context<Self>) {
        let store = &self.store;
        let applied = match guard(|| billbox_spool::writer::apply(store, &msg.change)) {
            Ok(applied) => applied,
            Err(panic) => {
                // The rotator starts over from the store.
                let _ = msg.reply.send(Err(StateError::WriterGone));
                return self.fail(panic, ctx);
            }
        };
        if let Err(e) = applied {
            let _ = msg.reply.send(Err(StateError::Store(Arc::new(e))));
            return;
        }
        self.cursor_moved(Some(&msg.change.port), ctx);
        if !msg.change.durable {
            let _ = msg.reply.send(Ok(()));
            return;
        }
        // The flush running now may have begun before this change.
        self.unsynced.push(SyncWaiter::Files(msg.reply));
        self.sync_soon(SYNC_SOON, ctx);
    }
}

impl Handler<DrainEnd> for StoreActor {
    type Result = ();

    fn handle(&mut self, _: DrainEnd, ctx: &mut Context<Self>) {
        self.draining = false;
        self.commit_next(ctx);
    }
}

impl Handler<Flush> for StoreActor {
    type Result = ResponseFuture<Result<(), AppendError>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        if self.failed.is_some() {
            return Box::pin(async { Err(AppendError::StoreFailed) });
        }
        let (tx, rx) = oneshot::channel();
        self.unsynced.push(SyncWaiter::Flush(tx));
        self.commit_next(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(AppendError::Stopped)) })
    }
}

impl Handler<SubscribeCommitted> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribeCommitted, _ctx: &mut Context<Self>) {
        self.catch_up(&msg.recipient, Some(&msg.port));
        self.rotators.insert(msg.port, msg.recipient);
    }
}

impl Handler<Reconfigure> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Context<Self>) {
        for destination in &msg.0.destinations {
            self.catch_up(destination, None);
        }
        self.mirror_overflow.clear();
        self.consumers = Arc::new(msg.0);
        self.release_uncapped();
        self.arm_retain(ctx);
        // The removal cursors may be others now.
        self.cursor_moved(None, ctx);
        // The capacity or the reserve may have changed: held appends look again.
        self.commit_next(ctx);
    }
}

impl Handler<Drain> for StoreActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        // Records the readers already took in are committed even past
        // max_records: stopping must not lose them.
        self.draining = true;
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        self.commit_next(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
