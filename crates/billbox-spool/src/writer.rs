//! Where a rotator's durable state goes: the store's one writer.
//!
//! A rotator never writes or flushes the store itself. Each change of its
//! [`FileState`] (a file opened, marked closing, closed) is handed to a
//! [`StateWriter`]: in the daemon that is the store actor, which applies it
//! in its next group commit; offline (`billbox salvage`, the crate's tests)
//! it is [`DirectState`], the process being the only writer then.

use billbox_store::{Store, StoreError, FILES_CURSOR};

use crate::state::{FileState, META_NAME};

/// One change of a port's file state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub port: std::sync::Arc<str>,
    pub state: FileState,
    /// Answer only once the change is flushed (a file is about to be
    /// created or renamed on the strength of it); otherwise once applied.
    pub durable: bool,
}

/// Why a state change was not recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("the file state could not be written to the store: {0}")]
    Store(#[source] std::sync::Arc<StoreError>),
    #[error("the file state could not be written: the store's writer is not running")]
    WriterGone,
}

/// Records the rotators' state changes. Blocking: a rotator runs on its own
/// thread and waits for the answer.
pub trait StateWriter: Send + Sync {
    fn record(&self, change: StateChange) -> Result<(), StateError>;
}

/// Applies a state change to `store`: the metadata entry and the files
/// cursor the store's removal reads. Durable at the store's next flush.
pub fn apply(store: &Store, change: &StateChange) -> Result<(), StoreError> {
    store.put_meta(&change.port, META_NAME, &change.state.encode())?;
    store.advance_cursor(&change.port, FILES_CURSOR, change.state.cursor)?;
    Ok(())
}

/// Writes and flushes the store directly: for a process with no store
/// actor, which is then the store's only writer.
pub struct DirectState(pub Store);

impl StateWriter for DirectState {
    fn record(&self, change: StateChange) -> Result<(), StateError> {
        let store_err = |e| StateError::Store(std::sync::Arc::new(e));
        apply(&self.0, &change).map_err(store_err)?;
        if change.durable {
            self.0.flush_blocking().map_err(store_err)?;
        }
        Ok(())
    }
}
