//! The store actor: group commit in front of the sled store.
//!
//! Appends that arrive while a flush runs wait in `pending`; when the flush
//! ends they are applied as one sled batch and flushed together. Each append
//! is answered only after the flush that made it durable, and its records
//! then go to the port's rotator. One flush runs at a time.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use billbox_record::Record;
use billbox_store::{Assigned, NewRecord, Store};
use tokio::sync::oneshot;

use crate::events::{RecordsReceived, StoreFlushFailed};
use crate::messages::{Append, AppendError, Committed, Drain, SubscribeCommitted};
use crate::stats::LatencyHistogram;

struct Pending {
    port: Arc<str>,
    records: Arc<Vec<NewRecord>>,
    reply: oneshot::Sender<Result<Assigned, AppendError>>,
}

/// The single writer of the store.
pub struct StoreActor {
    store: Store,
    latency: Arc<LatencyHistogram>,
    pending: Vec<Pending>,
    flushing: bool,
    drained: Vec<oneshot::Sender<()>>,
    rotators: HashMap<Arc<str>, Recipient<Committed>>,
}

impl StoreActor {
    /// `latency` counts, per record, the time from its read to its flush.
    pub fn new(store: Store, latency: Arc<LatencyHistogram>) -> StoreActor {
        StoreActor {
            store,
            latency,
            pending: Vec::new(),
            flushing: false,
            drained: Vec::new(),
            rotators: HashMap::new(),
        }
    }

    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        if self.pending.is_empty() {
            for d in self.drained.drain(..) {
                let _ = d.send(());
            }
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let refs: Vec<(Arc<str>, &[NewRecord])> = batch
            .iter()
            .map(|p| (p.port.clone(), p.records.as_slice()))
            .collect();
        let assigned = match self.store.append(&refs) {
            Ok(a) => a,
            Err(e) => {
                let msg = e.to_string();
                StoreFlushFailed { error: &msg }.emit();
                for p in batch {
                    let _ = p.reply.send(Err(AppendError(msg.clone())));
                }
                return;
            }
        };
        self.flushing = true;
        let store = self.store.clone();
        async move { store.flush().await }
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.flushing = false;
                match res {
                    Ok(()) => act.committed(batch, assigned),
                    Err(e) => {
                        let msg = e.to_string();
                        StoreFlushFailed { error: &msg }.emit();
                        for p in batch {
                            let _ = p.reply.send(Err(AppendError(msg.clone())));
                        }
                    }
                }
                act.commit_next(ctx);
            })
            .spawn(ctx);
    }

    fn committed(&mut self, batch: Vec<Pending>, assigned: Vec<Assigned>) {
        let flushed_us = crate::now_us();
        for (p, a) in batch.into_iter().zip(assigned) {
            // The records of one append were read together.
            if let Some(r) = p.records.first() {
                let us = (flushed_us - r.received_us).max(0) as u64;
                self.latency.record(us, p.records.len() as u64);
            }
            self.store.mark_durable(&p.port, a.last());
            RecordsReceived {
                port: &p.port,
                count: a.count,
                bytes: p.records.iter().map(|r| r.bytes.len() as u64).sum(),
                first_seq: a.first,
                last_seq: a.last(),
            }
            .emit();
            if let Some(rotator) = self.rotators.get(&p.port) {
                let records: Vec<Record> = p
                    .records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Record {
                        port: p.port.clone(),
                        seq: a.first + i as u64,
                        received_us: r.received_us,
                        flags: r.flags,
                        bytes: r.bytes.clone(),
                    })
                    .collect();
                // A full mailbox is fine: the rotator catches up from the store.
                let _ = rotator.try_send(Committed {
                    records: Arc::new(records),
                });
            }
            let _ = p.reply.send(Ok(a));
        }
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Supervised for StoreActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.flushing = false;
        for p in self.pending.drain(..) {
            let _ = p
                .reply
                .send(Err(AppendError("the store actor restarted".into())));
        }
    }
}

impl Handler<Append> for StoreActor {
    type Result = ResponseFuture<Result<Assigned, AppendError>>;

    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.pending.push(Pending {
            port: msg.port,
            records: msg.records,
            reply: tx,
        });
        self.commit_next(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(AppendError("the store actor stopped".into())))
        })
    }
}

impl Handler<SubscribeCommitted> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribeCommitted, _ctx: &mut Context<Self>) {
        self.rotators.insert(msg.port, msg.recipient);
    }
}

impl Handler<Drain> for StoreActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        self.commit_next(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
