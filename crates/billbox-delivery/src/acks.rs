//! Where a destination's acknowledgements go: to the store's one writer.
//!
//! A delivery loop does not write the store itself. When a server
//! acknowledges a batch, the loop hands an [`Ack`] to its [`AckSink`] and
//! waits until it is recorded, so the loop's next read of its cursor
//! already sees it. In billbox the sink is the store actor (the cursor move
//! then rides the next group commit); a process without one (`billbox
//! salvage`) records straight into its store with [`DirectAcks`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use billbox_store::{Store, StoreError};

/// One acknowledgement to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub port: Arc<str>,
    /// The cursor to move through `last` (`delivery`, `cc:NAME`); `None` for
    /// a fire-once carbon copy, which has none.
    pub cursor: Option<String>,
    pub first: u64,
    pub last: u64,
    /// For transactions: the destination and server to note for the
    /// submit API's status answer (`None` for call records).
    pub note: Option<(Arc<str>, &'static str)>,
}

/// Why an [`Ack`] was not recorded (the records are then sent again).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AckError {
    #[error("the store failed: {0}")]
    Store(#[source] Arc<StoreError>),
    #[error("the store's writer stopped")]
    Gone,
}

/// Recording an [`Ack`]: done when the future completes.
pub type AckFuture = Pin<Box<dyn Future<Output = Result<(), AckError>>>>;

/// Records acknowledgements.
pub trait AckSink {
    fn record(&self, ack: Ack) -> AckFuture;
}

/// How many times [`record_with_retries`] tries.
pub const ACK_ATTEMPTS: u32 = 5;
/// The pause between those tries (a restarting store actor takes 100 ms
/// or more to take messages again).
pub const ACK_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Records `ack`, trying again while the writer fails or restarts: a
/// server has the records, so recording beats sending them again (which
/// the caller does only when every try failed).
pub async fn record_with_retries(sink: &dyn AckSink, ack: Ack) -> Result<(), AckError> {
    let mut tries = 1;
    loop {
        match sink.record(ack.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if tries >= ACK_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(port = %ack.port, error = %e, "Recording an acknowledgement failed; trying again.");
                tries += 1;
                tokio::time::sleep(ACK_RETRY).await;
            }
        }
    }
}

/// Applies an [`Ack`] to `store` (for the store's one writer, or a process
/// that has no store actor).
pub fn apply(store: &Store, ack: &Ack) -> Result<(), StoreError> {
    if let Some((destination, server)) = &ack.note {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        store.note_ack(&ack.port, ack.first, destination, server, now)?;
    }
    if let Some(cursor) = &ack.cursor {
        store.advance_cursor(&ack.port, cursor, ack.last)?;
    }
    Ok(())
}

/// Records acknowledgements straight into a store.
pub struct DirectAcks(pub Store);

impl AckSink for DirectAcks {
    fn record(&self, ack: Ack) -> AckFuture {
        let result = apply(&self.0, &ack).map_err(|e| AckError::Store(Arc::new(e)));
        Box::pin(async move { result })
    }
}
