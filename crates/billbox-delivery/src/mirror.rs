//! Fire-once carbon copies.

use std::sync::Arc;

use billbox_record::Record;
use bytes::Bytes;
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
            for chunk in batch.chunks(self.batch_max.max(1)) {
                body.clear();
                if chunk.len() == 1 {
                    billbox_wire::encode_cdr(&self.gateway, &chunk[0], &mut body);
                } else {
                    billbox_wire::encode_cdr_batch(&self.gateway, chunk, &mut body);
                }
                let result = tokio::select! {
                    r = self.endpoint.post(Bytes::copy_from_slice(&body)) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let (first, last) = (chunk[0].seq, chunk[chunk.len() - 1].seq);
                match result {
                    Ok(()) => {
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
