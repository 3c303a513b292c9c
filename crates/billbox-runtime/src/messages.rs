//! Messages between the actors.

use std::sync::Arc;

use actix::Message;
use billbox_store::{Assigned, NewRecord, StoreError};

/// A port reader hands framed records to the store. The reply comes once the
/// records are flushed: only then are they received.
#[derive(Debug, Clone)]
pub struct Append {
    pub port: Arc<str>,
    pub records: Arc<Vec<NewRecord>>,
}

impl Message for Append {
    type Result = Result<Assigned, AppendError>;
}

/// Why an append was not committed. The reader keeps the records and retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The store refused the batch or its flush failed (shared by every
    /// append of that commit).
    #[error("the records were not committed: {0}")]
    Store(#[source] Arc<StoreError>),
    /// A sync of the store failed earlier: the store takes nothing more in
    /// this process, which stops (its next start writes the store again).
    #[error("the records were not committed: the store's disk failed a sync and billbox stops")]
    StoreFailed,
    /// The store actor restarted before the commit.
    #[error("the records were not committed: the store actor restarted")]
    Restarted,
    /// The store actor stopped before answering.
    #[error("the records were not committed: the store actor stopped")]
    Stopped,
}

/// One transaction for a transaction stream, with the submitter's id: the
/// store actor commits it only if the id is new (in the same sled batch as
/// the id entry), and answers after the flush.
#[derive(Debug, Clone)]
pub struct Submit {
    pub port: Arc<str>,
    pub record: NewRecord,
    /// The submitter's id (unique per stream).
    pub id: String,
    /// The content digest: the same id with another digest is a conflict.
    pub digest: [u8; 32],
    /// What to do when the id is already stored with another digest.
    pub on_conflict: OnConflict,
}

/// [`Submit::on_conflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Answer [`SubmitError::Conflict`]; nothing is stored (the submit API).
    Refuse,
    /// Store the record anyway, as a new one (the AG relay: an AG that
    /// reuses a `REC_NUM` still has its data kept).
    Store,
}

impl Message for Submit {
    type Result = Result<Submitted, SubmitError>;
}

/// What became of a [`Submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// The record's sequence in its stream.
    pub seq: u64,
    /// False when the id was already stored with the same content: `seq` is
    /// the record stored then, and nothing new was stored.
    pub new: bool,
}

/// Why a [`Submit`] was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    #[error("the id is already stored with other content, as record {seq}")]
    Conflict { seq: u64 },
    #[error("the store is full or its disk is below the reserve; try again later")]
    Full,
    #[error("the store cannot flush to its disk right now; try again later")]
    Failing,
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// Records of `port` are committed (flushed) through `through_seq`: from
/// the store actor to the port's rotator and to every cursor destination,
/// which read them from the store (so no copy of them waits in a mailbox).
/// Sent with `try_send`: a full mailbox already holds news that makes the
/// receiver read everything committed by then.
#[derive(Debug, Clone)]
pub struct Committed {
    pub port: Arc<str>,
    pub through_seq: u64,
}

impl Message for Committed {
    type Result = ();
}

/// A committed batch of one port for a fire-once carbon copy: the records
/// themselves, since it posts each once on arrival and never reads the
/// store.
#[derive(Debug, Clone)]
pub struct CopyBatch(pub Arc<Vec<billbox_record::Record>>);

impl Message for CopyBatch {
    type Result = ();
}

/// Stop a destination: in-flight POSTs may finish for up to
/// [`billbox_delivery::cursor::STOP_GRACE`]. The reply comes once its
/// loop has ended; it then stays idle until its addresses are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Stop;

impl Message for Stop {
    type Result = ();
}

/// Registers the rotator of a port with the store actor.
pub struct SubscribeCommitted {
    pub port: Arc<str>,
    pub recipient: actix::Recipient<Committed>,
}

impl Message for SubscribeCommitted {
    type Result = ();
}

/// Who the store actor feeds besides the rotators, and the rules it
/// applies (at start and at each reload that changes destinations).
pub struct Reconfigure(pub crate::store_actor::Consumers);

impl Message for Reconfigure {
    type Result = ();
}

/// Asks the store actor to finish its pending commits and reply.
#[derive(Debug, Clone, Copy)]
pub struct Drain;

impl Message for Drain {
    type Result = ();
}

/// Ends the drain that [`Drain`] began: the capacity and the disk reserve
/// apply again (after a reload has stopped and restarted readers).
#[derive(Debug, Clone, Copy)]
pub struct DrainEnd;

impl Message for DrainEnd {
    type Result = ();
}

/// Asks the store actor to flush everything written so far and write the
/// sequence guard (at shutdown, after the destinations' last
/// acknowledgements). The reply comes after that flush.
#[derive(Debug, Clone, Copy)]
pub struct Flush;

impl Message for Flush {
    type Result = Result<(), AppendError>;
}

/// A destination's acknowledgement, recorded by the store actor (the one
/// writer): its cursor moves, durable with the next group commit. The
/// reply comes once it is applied.
#[derive(Debug, Clone)]
pub struct Acked(pub billbox_delivery::Ack);

impl Message for Acked {
    type Result = Result<(), billbox_delivery::AckError>;
}

/// A rotator's file state changed (a file opened, marked closing, closed):
/// the store actor applies it in its group commit and answers on `reply`,
/// after the flush when [`billbox_spool::StateChange::durable`].
pub struct FilesChanged {
    pub change: billbox_spool::StateChange,
    pub reply: std::sync::mpsc::SyncSender<Result<(), billbox_spool::StateError>>,
}

impl Message for FilesChanged {
    type Result = ();
}

/// The store actor as the [`billbox_spool::StateWriter`] of rotators. A
/// rotator runs on the files arbiter and blocks until the answer comes, so
/// it has at most one change in the store actor's mailbox.
pub struct StoreActorFiles(pub actix::Addr<crate::StoreActor>);

impl billbox_spool::StateWriter for StoreActorFiles {
    fn record(&self, change: billbox_spool::StateChange) -> Result<(), billbox_spool::StateError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        // Unbounded send, bounded use: one change per rotator at a time.
        self.0.do_send(FilesChanged { change, reply });
        answer
            .recv()
            .unwrap_or(Err(billbox_spool::StateError::WriterGone))
    }
}

/// The store actor as the [`billbox_delivery::AckSink`] of delivery loops.
pub struct StoreActorAcks(pub actix::Addr<crate::StoreActor>);

impl billbox_delivery::AckSink for StoreActorAcks {
    fn record(&self, ack: billbox_delivery::Ack) -> billbox_delivery::AckFuture {
        let sent = self.0.send(Acked(ack));
        Box::pin(async move { sent.await.unwrap_or(Err(billbox_delivery::AckError::Gone)) })
    }
}
