//! Notable events: each struct logs one structured line and counts itself.
//!
//! Log levels: ERROR only when data is at risk, WARN for a link or input
//! problem billbox works around, INFO for state changes, DEBUG per batch.

use std::sync::atomic::Ordering;

use billbox_status::{board, FileFacts, Link};
use metrics::counter;
use tracing::{debug, error, info, warn};

/// A path's file name, for the status board.
pub(crate) fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A port's link came up: device opened, PBX connected in, or connected out.
pub struct PortLinkUp<'a> {
    pub port: &'a str,
    pub peer: &'a str,
    /// False while the port's link changes too often to log each one.
    pub log: bool,
}

impl PortLinkUp<'_> {
    pub fn emit(self) {
        if self.log {
            info!(
                port = self.port,
                peer = self.peer,
                "Port link is up; reading records."
            );
        }
        board().port(self.port).link(Link::Up {
            peer: self.peer.to_owned(),
        });
        counter!("billbox_port_link_up_total", "port" => self.port.to_owned()).increment(1);
    }
}

/// A port's link went down; the reader reopens it with backoff.
pub struct PortLinkDown<'a> {
    pub port: &'a str,
    pub reason: &'a str,
    /// False while the port's link changes too often to log each one.
    pub log: bool,
}

impl PortLinkDown<'_> {
    pub fn emit(self) {
        if self.log {
            warn!(
                port = self.port,
                reason = self.reason,
                "Port link went down; reopening with backoff."
            );
        }
        board().port(self.port).link(Link::Down {
            reason: self.reason.to_owned(),
        });
        counter!("billbox_port_link_down_total", "port" => self.port.to_owned()).increment(1);
    }
}

/// A port could not be opened. Logged once per state change, counted per try.
pub struct PortOpenFailed<'a> {
    pub port: &'a str,
    pub error: &'a str,
    pub first: bool,
}

impl PortOpenFailed<'_> {
    pub fn emit(self) {
        if self.first {
            warn!(
                port = self.port,
                error = self.error,
                "Port cannot be opened; retrying with backoff."
            );
        }
        board().port(self.port).link(Link::CannotOpen {
            error: self.error.to_owned(),
        });
        counter!("billbox_port_open_failures_total", "port" => self.port.to_owned()).increment(1);
    }
}

/// A TCP port is listening for its PBX.
pub struct PortListening<'a> {
    pub port: &'a str,
    pub addr: std::net::SocketAddr,
}

impl PortListening<'_> {
    pub fn emit(self) {
        info!(port = self.port, local_addr = %self.addr, "Port is listening for its PBX.");
        board().port(self.port).link(Link::Listening {
            addr: self.addr.to_string(),
        });
    }
}

/// A new PBX connection replaced the previous one on a listening port.
pub struct PortConnectionReplaced<'a> {
    pub port: &'a str,
    pub peer: &'a str,
    /// False while the port's link changes too often to log each one.
    pub log: bool,
}

impl PortConnectionReplaced<'_> {
    pub fn emit(self) {
        if self.log {
            warn!(
                port = self.port,
                peer = self.peer,
                "A new PBX connection replaced the current one."
            );
        }
        board().port(self.port).link(Link::Up {
            peer: self.peer.to_owned(),
        });
        counter!("billbox_port_connections_replaced_total", "port" => self.port.to_owned())
            .increment(1);
    }
}

/// Records of one port were flushed to the store: they are received.
pub struct RecordsReceived<'a> {
    pub port: &'a str,
    pub count: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl RecordsReceived<'_> {
    pub fn emit(self) {
        debug!(
            port = self.port,
            records = self.count,
            bytes = self.bytes,
            record_seq = self.first_seq,
            last_seq = self.last_seq,
            "Records are committed to the store."
        );
        board().port(self.port).received(self.count);
        counter!("billbox_records_received_total", "port" => self.port.to_owned())
            .increment(self.count);
        counter!("billbox_bytes_received_total", "port" => self.port.to_owned())
            .increment(self.bytes);
    }
}

/// Input reached `max_record_bytes` without a terminator and was cut.
/// Logged once per run of truncated records, counted per record.
pub struct RecordsTruncated<'a> {
    pub port: &'a str,
    pub count: u64,
    pub max_record_bytes: usize,
    pub first_of_run: bool,
}

impl RecordsTruncated<'_> {
    pub fn emit(self) {
        if self.first_of_run {
            warn!(
                port = self.port,
                max_record_bytes = self.max_record_bytes,
                "Input without an end-of-record string reached max_record_bytes; keeping it as truncated records."
            );
        }
        counter!("billbox_records_truncated_total", "port" => self.port.to_owned())
            .increment(self.count);
    }
}

/// A run of truncated records ended with a normal record.
pub struct TruncationEnded<'a> {
    pub port: &'a str,
    pub records: u64,
}

impl TruncationEnded<'_> {
    pub fn emit(self) {
        info!(
            port = self.port,
            records = self.records,
            "Records end with their terminator again."
        );
    }
}

/// The link went away in the middle of a record; its bytes are kept.
pub struct RecordUnterminated<'a> {
    pub port: &'a str,
    pub bytes: usize,
}

impl RecordUnterminated<'_> {
    pub fn emit(self) {
        warn!(
            port = self.port,
            bytes = self.bytes,
            "The link ended inside a record; keeping it flagged unterminated."
        );
        counter!("billbox_records_unterminated_total", "port" => self.port.to_owned()).increment(1);
    }
}

/// A record could not be committed; the reader holds it and retries.
/// Logged on the first failure of a run and then once a minute.
pub struct CommitFailed<'a> {
    pub port: &'a str,
    pub records: usize,
    pub error: &'a str,
    pub log: bool,
}

impl CommitFailed<'_> {
    pub fn emit(self) {
        counter!("billbox_commit_failures_total", "port" => self.port.to_owned()).increment(1);
        if !self.log {
            return;
        }
        error!(
            port = self.port,
            records = self.records,
            error = self.error,
            "Records could not be committed to the store; holding them and not reading the port until they are."
        );
    }
}

/// A sync of the store failed: what it wrote since the last good sync may
/// never reach the disk, so nothing more is committed in this process and
/// billbox stops; its next start writes the store's files again.
pub struct StoreSyncFailed<'a> {
    pub error: &'a billbox_store::StoreError,
    /// Whether the mark that makes the next start write the files again
    /// could be left.
    pub marked: Result<(), &'a std::io::Error>,
    /// Records whose commit is given up (never acknowledged).
    pub records: usize,
}

impl StoreSyncFailed<'_> {
    pub fn emit(self) {
        counter!("billbox_store_flush_failures_total").increment(1);
        match self.marked {
            Ok(()) => error!(
                error = %self.error,
                records = self.records,
                "The store's disk failed a sync: records committed since the last good sync may not be on the disk. billbox commits nothing more and stops; its next start writes the store again before using it."
            ),
            Err(e) => error!(
                error = %self.error,
                mark_error = %e,
                records = self.records,
                "The store's disk failed a sync, and the mark for the next start could not be written either: the disk is failing. billbox commits nothing more and stops; check the disk before starting it again."
            ),
        }
    }
}

/// The store's files were written again at start, after a failed sync in
/// the last run.
pub struct StoreResynced {
    pub bytes: u64,
}

impl StoreResynced {
    pub fn emit(self) {
        warn!(
            bytes = self.bytes,
            "The store's files were written again and synced, because a sync failed in the last run."
        );
    }
}

/// An ACS file was closed and renamed to `.txt`.
pub struct FileClosed<'a> {
    pub port: &'a str,
    pub path: &'a std::path::Path,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl FileClosed<'_> {
    pub fn emit(self) {
        info!(
            port = self.port,
            path = %self.path.display(),
            records = self.records,
            record_seq = self.first_seq,
            last_seq = self.last_seq,
            "Billing file is closed."
        );
        board().port(self.port).file_closed(FileFacts {
            name: file_name(self.path),
            records: self.records,
            at: chrono::Utc::now(),
        });
        counter!("billbox_files_closed_total", "port" => self.port.to_owned()).increment(1);
    }
}

/// The open `.tmp` of a port was removed from the spool directory before
/// it was closed (a collector took it): billbox wrote it again, whole,
/// from the store, so its records are in the `.txt` all the same.
pub struct OpenFileRewritten<'a> {
    pub port: &'a str,
    pub path: &'a std::path::Path,
    pub records: u64,
}

impl OpenFileRewritten<'_> {
    pub fn emit(self) {
        warn!(
            port = self.port,
            path = %self.path.display(),
            records = self.records,
            "A billing file was removed before it was closed; billbox wrote it again from the store. Collect only .txt files."
        );
        counter!("billbox_files_rewritten_total", "port" => self.port.to_owned()).increment(1);
    }
}

/// Records could not be written to files. They are safe in the store; the
/// files fall behind until the rotator succeeds again.
pub struct SpoolFailed<'a> {
    pub port: &'a str,
    pub error: &'a str,
    pub first: bool,
}

impl SpoolFailed<'_> {
    pub fn emit(self) {
        if self.first {
            error!(
                port = self.port,
                error = self.error,
                "Records cannot be written to billing files; they stay in the store and the rotator retries."
            );
        }
        counter!("billbox_spool_failures_total", "port" => self.port.to_owned()).increment(1);
    }
}

/// The rotator writes files again after failures.
pub struct SpoolRecovered<'a> {
    pub port: &'a str,
}

impl SpoolRecovered<'_> {
    pub fn emit(self) {
        info!(port = self.port, "Billing files are written again.");
    }
}

/// A rotator finished its start-up recovery: every record flushed before it
/// started is in a file (the last one possibly still open).
pub struct FilesRecovered<'a> {
    pub port: &'a str,
    pub next_seq: u64,
    pub open_file: bool,
}

impl FilesRecovered<'_> {
    pub fn emit(self) {
        info!(
            port = self.port,
            next_seq = self.next_seq,
            open_file = self.open_file,
            "Billing files hold every record the store had for this port at start."
        );
    }
}

/// The store holds `max_records` records waiting for delivery and
/// `when_full = "block"`: the ports are not read until space frees.
pub struct StoreFull {
    pub backlog: u64,
    pub max_records: u64,
}

impl StoreFull {
    pub fn emit(self) {
        error!(
            backlog = self.backlog,
            max_records = self.max_records,
            "The store is full of records waiting for delivery; ports are not read until servers acknowledge some."
        );
        board().store_full.store(true, Ordering::Relaxed);
        counter!("billbox_store_full_total").increment(1);
        metrics::gauge!("billbox_store_full").set(1.0);
    }
}

/// A full store has space again.
pub struct StoreHasSpace {
    pub backlog: u64,
    pub max_records: u64,
}

impl StoreHasSpace {
    pub fn emit(self) {
        info!(
            backlog = self.backlog,
            max_records = self.max_records,
            "The store has space again; reading the ports."
        );
        board().store_full.store(false, Ordering::Relaxed);
        metrics::gauge!("billbox_store_full").set(0.0);
    }
}

/// `when_full = "drop_oldest"` gave up delivery of the oldest records.
pub struct RecordsDropped<'a> {
    pub port: &'a str,
    pub count: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub max_records: u64,
}

impl RecordsDropped<'_> {
    pub fn emit(self) {
        error!(
            port = self.port,
            records = self.count,
            record_seq = self.first_seq,
            last_seq = self.last_seq,
            max_records = self.max_records,
            "The store is full; delivery of the oldest records is given up (they stay in the billing files)."
        );
        counter!("billbox_records_dropped_total", "port" => self.port.to_owned())
            .increment(self.count);
    }
}

/// Records every consumer is done with were removed from the store.
pub struct RecordsRemoved<'a> {
    pub port: &'a str,
    pub count: u64,
    pub through_seq: u64,
}

impl RecordsRemoved<'_> {
    pub fn emit(self) {
        debug!(
            port = self.port,
            records = self.count,
            last_seq = self.through_seq,
            "Delivered and filed records are removed from the store."
        );
        counter!("billbox_store_removed_records_total", "port" => self.port.to_owned())
            .increment(self.count);
    }
}

/// A fire-once mirror's queue is full: new records are not copied to it.
pub struct MirrorQueueFull<'a> {
    pub mirror: &'a str,
    pub records: u64,
    pub first: bool,
}

impl MirrorQueueFull<'_> {
    pub fn emit(self) {
        if self.first {
            warn!(destination = self.mirror, "The carbon-copy server is too slow; new records are not copied to it until it catches up.");
        }
        counter!("billbox_carbon_copy_missed_records_total", "destination" => self.mirror.to_owned()).increment(self.records);
    }
}

/// The store could not be used and was moved aside; billbox goes on with a
/// fresh store whose sequences start above the old ones.
pub struct StoreQuarantined<'a> {
    pub path: &'a std::path::Path,
    pub moved_to: &'a std::path::Path,
    pub error: &'a str,
}

impl StoreQuarantined<'_> {
    pub fn emit(self) {
        error!(
            path = %self.path.display(),
            moved_to = %self.moved_to.display(),
            error = self.error,
            "The store is damaged and was moved aside; billbox continues with a fresh store. Records still in the old one may not have been delivered: keep the moved directory and inspect it with `billbox inspect` on a copy, or recover it from backup."
        );
        counter!("billbox_store_quarantined_total").increment(1);
    }
}

/// The data directory's file system is nearly full: new records wait.
pub struct DataDiskLow<'a> {
    pub path: &'a std::path::Path,
    pub free_bytes: u64,
    pub min_free_bytes: u64,
}

impl DataDiskLow<'_> {
    pub fn emit(self) {
        error!(
            path = %self.path.display(),
            free_bytes = self.free_bytes,
            min_free_bytes = self.min_free_bytes,
            "The data directory's disk is nearly full; ports are not read until space is freed (stored records are safe)."
        );
        board().disk_low.store(true, Ordering::Relaxed);
        metrics::gauge!("billbox_data_disk_low").set(1.0);
        counter!("billbox_data_disk_low_total").increment(1);
    }
}

/// The data directory has enough free space again.
pub struct DataDiskOk<'a> {
    pub path: &'a std::path::Path,
    pub free_bytes: u64,
}

impl DataDiskOk<'_> {
    pub fn emit(self) {
        info!(path = %self.path.display(), free_bytes = self.free_bytes, "The data directory has space again; reading the ports.");
        board().disk_low.store(false, Ordering::Relaxed);
        metrics::gauge!("billbox_data_disk_low").set(0.0);
    }
}

/// Link changes that were not logged one by one (too many in a minute).
pub struct LinkChangesSuppressed<'a> {
    pub port: &'a str,
    pub changes: u64,
}

impl LinkChangesSuppressed<'_> {
    pub fn emit(self) {
        warn!(
            port = self.port,
            changes = self.changes,
            "The port's link changed too often to log each change; these were counted, not logged."
        );
    }
}

/// A submitted transaction was refused (bad input, no token, a conflicting
/// id). Nothing was stored. The reason never holds card data.
pub struct TransactionRefused<'a> {
    pub peer: Option<std::net::SocketAddr>,
    pub status: u16,
    pub field: Option<&'a str>,
    pub why: &'a str,
}

impl TransactionRefused<'_> {
    pub fn emit(self) {
        warn!(
            peer = ?self.peer,
            status = self.status,
            field = self.field,
            reason = self.why,
            "A submitted transaction was refused; nothing was stored."
        );
        board().port(billbox_transactions::SUBMIT_STREAM).refused(1);
        counter!("billbox_transactions_refused_total", "status" => self.status.to_string())
            .increment(1);
    }
}

/// A relayed AG packet was refused (malformed, too large, a signature that
/// does not verify, no token). Nothing was stored; the AG keeps it.
pub struct RelayRefused<'a> {
    pub peer: Option<std::net::SocketAddr>,
    pub why: &'a str,
}

impl RelayRefused<'_> {
    pub fn emit(self) {
        warn!(
            peer = ?self.peer,
            reason = self.why,
            "A relayed AG packet was refused with an ERROR ack; nothing was stored."
        );
        board().port(billbox_transactions::RELAY_STREAM).refused(1);
        counter!("billbox_relay_refused_total").increment(1);
    }
}

/// An actor failed (a panic in its work) and is being restarted; it
/// rebuilds its state from the store.
pub struct ActorRestarted<'a> {
    pub actor: &'a crate::supervise::ActorName,
    pub cause: &'a str,
    /// Restarts of this actor within the restart window, this one included.
    pub restarts: usize,
}

impl ActorRestarted<'_> {
    pub fn emit(self) {
        let a = self.actor;
        error!(
            actor = a.kind,
            subject = %a.subject,
            cause = self.cause,
            restarts = self.restarts,
            "An actor failed and is restarted; it starts over from the store, the other ports and destinations go on."
        );
        let subject = a.subject.to_string();
        match a.label {
            "" => counter!("billbox_actor_restarts_total", "actor" => a.kind).increment(1),
            label => counter!("billbox_actor_restarts_total", "actor" => a.kind, label => subject)
                .increment(1),
        }
    }
}

/// An actor restarted more often than its budget allows: billbox stops
/// cleanly and exits non-zero, so the container restarts it.
pub struct RestartBudgetExceeded<'a> {
    pub actor: &'a crate::supervise::ActorName,
    pub restarts: usize,
}

impl RestartBudgetExceeded<'_> {
    pub fn emit(self) {
        error!(
            actor = self.actor.kind,
            subject = %self.actor.subject,
            restarts = self.restarts,
            window_secs = crate::supervise::RESTART_WINDOW.as_secs(),
            "An actor keeps failing; billbox stops cleanly and exits with status 3 so it is started afresh. Committed records are safe in the store."
        );
    }
}

/// Puts the counters and gauges that count trouble on `/metrics` at zero
/// from the start, so an alert rule on `increase(...)` or `== 1` sees a
/// series before the first failure (Prometheus has nothing to compare an
/// absent series with). Per port for the port counters, per server for
/// the delivery failures.
pub fn series_at_zero(config: &billbox_config::Config) {
    for port in &config.ports {
        for name in [
            "billbox_records_received_total",
            "billbox_bytes_received_total",
            "billbox_records_truncated_total",
            "billbox_records_unterminated_total",
            "billbox_records_dropped_total",
            "billbox_port_link_up_total",
            "billbox_port_link_down_total",
            "billbox_port_open_failures_total",
            "billbox_port_connections_replaced_total",
            "billbox_files_closed_total",
            "billbox_spool_failures_total",
        ] {
            counter!(name, "port" => port.name.clone()).increment(0);
        }
    }
    if let Some(d) = &config.delivery {
        let servers: &[&'static str] = if d.secondary.is_some() {
            &["primary", "secondary"]
        } else {
            &["primary"]
        };
        for server in servers {
            counter!("billbox_delivery_failures_total", "destination" => "delivery", "server" => *server)
                .increment(0);
        }
    }
    for cc in &config.carbon_copies {
        let destination = format!("cc:{}", cc.name);
        // A reliable copy is a destination with one server, its primary.
        let server = if cc.reliable { "primary" } else { "mirror" };
        counter!("billbox_delivery_failures_total", "destination" => destination.clone(), "server" => server)
            .increment(0);
        if !cc.reliable {
            counter!("billbox_carbon_copy_missed_records_total", "destination" => destination)
                .increment(0);
        }
    }
    if config.transactions.is_some() {
        counter!("billbox_relay_refused_total").increment(0);
    }
    counter!("billbox_actor_restarts_total", "actor" => "store").increment(0);
    counter!("billbox_store_full_total").increment(0);
    counter!("billbox_data_disk_low_total").increment(0);
    counter!("billbox_store_flush_failures_total").increment(0);
    metrics::gauge!("billbox_store_full").set(0.0);
    metrics::gauge!("billbox_data_disk_low").set(0.0);
}
