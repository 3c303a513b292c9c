//! Messages between the actors.

use std::sync::Arc;

use actix::Message;
use billbox_store::{Assigned, NewRecord};

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
#[error("the records were not committed: {0}")]
pub struct AppendError(pub String);

/// A port has newly flushed records: its file rotator reads them from the
/// store (so no copy of them waits in a mailbox).
#[derive(Debug, Clone, Copy)]
pub struct Committed;

impl Message for Committed {
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

/// Asks the store actor to finish its pending commits and reply.
#[derive(Debug, Clone, Copy)]
pub struct Drain;

impl Message for Drain {
    type Result = ();
}
