//! Fire-once carbon copies.

use std::cell::RefCell;
use std::sync::Arc;

use crate::acks::{Ack, AckSink};
use billbox_record::Record;
use billbox_transactions::StreamKind;
use metrics::counter;
use tokio::sync::watch;

use crate::endpoint::Endpoint;
use crate::events::{Delivered, Outage};

/// Posts each new record once, on arrival, to one mirror server. A record the
/// mirror does not acknowledge is counted and not sent again: the AG's
/// carbon-copy behaviour. (Set `reliable = true` for a mirror that must get
/// everything: it is then a [`crate::CursorDestination`].)
///
/// The runtime's carbon-copy actor owns one, hands it each committed batch
/// ([`MirrorDestination::copy`]) and keeps the queue of batches waiting.
pub struct MirrorDestination {
    pub name: Arc<str>,
    pub gateway: Arc<str>,
    pub endpoint: Endpoint,
    pub batch_max: usize,
    /// Where acknowledgements of transactions are noted (for the submit
    /// API's status answer).
    pub acks: std::rc::Rc<dyn AckSink>,
    /// Whether the mirror answers: logged once per outage.
    pub outage: RefCell<Outage>,
    /// The packet buffer, reused between posts.
    pub body: RefCell<Vec<u8>>,
    /// This carbon copy on the status board.
    pub board: Arc<billbox_status::board::DestinationEntry>,
}

/// One post in flight on the status board, while it lives.
struct InFlight<'a>(&'a billbox_status::board::DestinationEntry);

impl<'a> InFlight<'a> {
    fn one(board: &'a billbox_status::board::DestinationEntry) -> InFlight<'a> {
        board.in_flight(1);
        InFlight(board)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight(0);
    }
}

/// How a [`MirrorDestination::copy`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// Every chunk was posted (acknowledged or counted as missed).
    Done,
    /// `stop` turned true: the rest of the batch is not copied.
    Stopped,
}

impl MirrorDestination {
    pub fn new(
        name: Arc<str>,
        gateway: Arc<str>,
        endpoint: Endpoint,
        batch_max: usize,
        acks: std::rc::Rc<dyn AckSink>,
    ) -> MirrorDestination {
        let board = billbox_status::board().destination(&name);
        MirrorDestination {
            name,
            gateway,
            endpoint,
            batch_max,
            acks,
            outage: RefCell::new(Outage::default()),
            body: RefCell::new(Vec::new()),
            board,
        }
    }

    /// Posts one committed batch (records of one port), `batch_max` records
    /// per POST (one per POST for transactions), each once.
    pub async fn copy(&self, batch: &[Record], stop: &mut watch::Receiver<bool>) -> Copied {
        let Some(port) = batch.first().map(|r| r.port.clone()) else {
            return Copied::Done;
        };
        let kind = StreamKind::of(&port);
        // An AG server takes one ADD_REC per POST.
        let per_post = if kind.is_transactions() {
            1
        } else {
            self.batch_max.max(1)
        };
        self.board.using("mirror", self.endpoint.url().as_str());
        for chunk in batch.chunks(per_post) {
            // Test builds: an injected panic, or a copy that fails.
            let post: crate::endpoint::PostFuture =
                if billbox_failpoints::check_at("destination.post", &self.name) {
                    Box::pin(async { Err(crate::PostError::Timeout(std::time::Duration::ZERO)) })
                } else {
                    let mut body = self.body.borrow_mut();
                    crate::encode_packet(&self.gateway, kind, chunk, &mut body);
                    self.endpoint.send(0, &body)
                };
            let result = {
                // Back to 0 however the post ends (a stop, a panic).
                let _flying = InFlight::one(&self.board);
                tokio::select! {
                    r = post => r,
                    _ = stop.wait_for(|s| *s) => return Copied::Stopped,
                }
            };
            let (first, last) = (chunk[0].seq, chunk[chunk.len() - 1].seq);
            match result {
                Ok(()) => {
                    if kind.is_transactions() {
                        let ack = Ack {
                            port: port.clone(),
                            cursor: None,
                            first,
                            last,
                            note: Some((self.name.clone(), "mirror")),
                        };
                        if let Err(e) = self.acks.record(ack).await {
                            tracing::warn!(destination = %self.name, port = %port, error = %e, "Noting a transaction's copy failed; its status will not show it.");
                        }
                    }
                    self.outage.borrow_mut().succeeded(&self.name, "mirror");
                    Delivered {
                        destination: &self.name,
                        server: "mirror",
                        port: &chunk[0].port,
                        first_seq: first,
                        last_seq: last,
                    }
                    .emit();
                }
                Err(e) => {
                    counter!("billbox_carbon_copy_missed_records_total", "destination" => self.name.to_string())
                        .increment(chunk.len() as u64);
                    self.outage.borrow_mut().failed(
                        &self.name,
                        "mirror",
                        self.endpoint.url().as_str(),
                        &e.to_string(),
                        0,
                    );
                }
            }
        }
        Copied::Done
    }
}
