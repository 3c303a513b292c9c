//! Fire-once carbon copies.

use std::sync::Arc;

use crate::acks::{Ack, AckSink};
use billbox_record::Record;
use billbox_transactions::StreamKind;
use metrics::counter;
use tokio::sync::{mpsc, watch};

use crate::endpoint::Endpoint;
use crate::events::{Delivered, Outage};

/// Posts each new record once, on arrival, to one mirror server. A record the
/// mirror does not acknowledge is counted and not sent again: the AG's
/// carbon-copy behaviour. (Set `reliable = true` for a mirror that must get
/// everything: it is then a [`crate::CursorDestination`].)
pub struct MirrorDestination {
    pub name: Arc<str>,
    pub gateway: Arc<str>,
    pub endpoint: Endpoint,
    pub batch_max: usize,
    /// Where acknowledgements of transactions are noted (for the submit
    /// API's status answer).
    pub acks: std::rc::Rc<dyn AckSink>,
    /// New records, as the store actor flushes them (shared so a restarted
    /// loop picks up the same queue).
    pub records: Arc<tokio::sync::Mutex<mpsc::Receiver<Arc<Vec<Record>>>>>,
}

impl MirrorDestination {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut outage = Outage::default();
        let mut body = Vec::new();
        let mut queue = self.records.clone().lock_owned().await;
        loop {
            let batch = tokio::select! {
                b = queue.recv() => match b {
                    Some(b) => b,
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(port) = batch.first().map(|r| r.port.clone()) else {
                continue;
            };
            let kind = StreamKind::of(&port);
            // An AG server takes one ADD_REC per POST.
            let per_post = if kind.is_transactions() {
                1
            } else {
                self.batch_max.max(1)
            };
            for chunk in batch.chunks(per_post) {
                let packet = crate::encode_packet(&self.gateway, kind, chunk, &mut body);
                let _ = billbox_failpoints::check_at("destination.post", &self.name);
                let result = tokio::select! {
                    r = self.endpoint.post(packet) => r,
                    _ = stop.wait_for(|s| *s) => return,
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
                        outage.succeeded(&self.name, "mirror");
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
                        outage.failed(
                            &self.name,
                            "mirror",
                            self.endpoint.url().as_str(),
                            &e.to_string(),
                            0,
                        );
                    }
                }
            }
        }
    }
}
