//! The destination actors: [`DestinationActor`] for a cursor destination
//! (the primary/secondary sender, or a reliable carbon copy) and
//! [`MirrorActor`] for a fire-once carbon copy.
//!
//! Both are told of commits by the store actor ([`Committed`],
//! [`CopyBatch`]) and stopped by [`Stop`]; a panic in their work stops the
//! actor and its supervisor restarts it (all state that matters is in the
//! store, or, for a mirror, in the actor's own queue, which a restart keeps).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use billbox_delivery::mirror::{Copied, MirrorDestination};
use tokio::sync::watch;

use crate::capacity::{CopyQueue, Offered};
use crate::events::MirrorQueueFull;
use crate::messages::{Committed, CopyBatch, Stop};
use crate::supervise::{
    spawn_work, ActorName, Guarded, Recovering, Recovery, Restart, Restarts, Stopping,
};

/// Builds a fresh delivery loop from the actor's news (bumped on each
/// [`Committed`]) and stop signal; a restart gets a new loop.
pub type LoopFactory = Box<
    dyn Fn(Arc<watch::Sender<u64>>, watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()>>>,
>;

/// The mailbox of a [`DestinationActor`].
const NEWS_MAILBOX: usize = 256;

/// Runs one cursor destination's delivery loop. Its state is in the store
/// (the cursor, moved by the store actor on each acknowledgement).
pub struct DestinationActor {
    name: Arc<str>,
    make: LoopFactory,
    /// Bumped on each [`Committed`]: the loop's idle workers look again.
    news: Arc<watch::Sender<u64>>,
    stop: watch::Sender<bool>,
    stopping: Stopping,
    recovery: Recovery,
}

impl DestinationActor {
    pub fn new(name: Arc<str>, make: LoopFactory, restarts: Restarts) -> Self {
        let actor = ActorName {
            kind: "destination",
            label: "destination",
            subject: name.clone(),
        };
        DestinationActor {
            name,
            make,
            news: Arc::new(watch::channel(0).0),
            stop: watch::channel(false).0,
            stopping: Stopping::default(),
            recovery: Recovery::new(actor, restarts),
        }
    }

    /// Runs a fresh delivery loop.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        let work = (self.make)(self.news.clone(), self.stop.subscribe());
        spawn_work(self, ctx, work);
    }
}

impl Actor for DestinationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // One message per port of a commit arrives at once (a full
        // mailbox is fine: it holds news already).
        ctx.set_mailbox_capacity(NEWS_MAILBOX);
        match self.recovery.plan() {
            Some(Restart::GiveUp) => {}
            Some(Restart::After(pause)) => {
                ctx.run_later(pause, |act, ctx| act.begin(ctx));
            }
            None => self.begin(ctx),
        }
    }
}

impl Recovering for DestinationActor {
    fn recovery(&mut self) -> &mut Recovery {
        &mut self.recovery
    }

    fn stop_state(&mut self) -> &mut Stopping {
        &mut self.stopping
    }
}

impl Supervised for DestinationActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.recovery.restarting() && !self.stopping.asked {
            tracing::warn!(destination = %self.name, "Delivery loop is restarting.");
        }
    }
}

impl Handler<Committed> for DestinationActor {
    type Result = ();

    fn handle(&mut self, _: Committed, _ctx: &mut Context<Self>) {
        self.news.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Handler<Stop> for DestinationActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, _ctx: &mut Context<Self>) -> Self::Result {
        let _ = self.stop.send(true);
        self.stopping.wait()
    }
}

/// Committed batches a fire-once carbon copy may hold before new records
/// are no longer copied to it.
pub const MIRROR_QUEUE: usize = 1024;

/// One fire-once carbon copy: posts each committed batch once, in order,
/// from its own queue.
pub struct MirrorActor {
    mirror: Rc<MirrorDestination>,
    queue: CopyQueue<Arc<Vec<billbox_record::Record>>>,
    stop: watch::Sender<bool>,
    stopping: Stopping,
    /// A restarted actor waits out its pause before it posts again.
    waiting: bool,
    recovery: Recovery,
}

impl MirrorActor {
    pub fn new(mirror: MirrorDestination, restarts: Restarts) -> Self {
        let actor = ActorName {
            kind: "destination",
            label: "destination",
            subject: mirror.name.clone(),
        };
        MirrorActor {
            mirror: Rc::new(mirror),
            queue: CopyQueue::new(MIRROR_QUEUE),
            stop: watch::channel(false).0,
            stopping: Stopping::default(),
            waiting: false,
            recovery: Recovery::new(actor, restarts),
        }
    }

    /// Posts the next queued batch, if none is being posted.
    fn post_next(&mut self, ctx: &mut Context<Self>) {
        if self.stopping.running || self.stopping.asked || self.waiting {
            return;
        }
        let Some(batch) = self.queue.take_next() else {
            return;
        };
        self.stopping.running = true;
        let (mirror, mut stop) = (self.mirror.clone(), self.stop.subscribe());
        let work = async move { mirror.copy(&batch, &mut stop).await };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(Guarded::new(work)).map(
            |result, act, ctx| {
                act.stopping.running = false;
                match result {
                    Err(panic) => {
                        // That batch is not copied (fire-once); the rest
                        // wait in the queue for the restarted actor.
                        act.recovery.failed(panic);
                        ctx.stop();
                    }
                    Ok(Copied::Stopped) => act.stopping.answer(),
                    Ok(Copied::Done) if act.stopping.asked => act.stopping.answer(),
                    Ok(Copied::Done) => act.post_next(ctx),
                }
            },
        ));
    }
}

impl Actor for MirrorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // One batch per append of a commit arrives at once.
        ctx.set_mailbox_capacity(MIRROR_QUEUE);
        match self.recovery.plan() {
            Some(Restart::GiveUp) => self.waiting = true,
            Some(Restart::After(pause)) => {
                self.waiting = true;
                ctx.run_later(pause, |act, ctx| {
                    act.waiting = false;
                    act.post_next(ctx);
                });
            }
            None => self.post_next(ctx),
        }
    }
}

impl Supervised for MirrorActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.stopping.running = false;
        self.recovery.restarting();
    }
}

impl Handler<CopyBatch> for MirrorActor {
    type Result = ();

    fn handle(&mut self, msg: CopyBatch, ctx: &mut Context<Self>) {
        if self.stopping.asked {
            return;
        }
        let records = msg.0.len() as u64;
        match self.queue.offer(msg.0) {
            Offered::Queued => self.post_next(ctx),
            Offered::Refused { first } => MirrorQueueFull {
                mirror: &self.mirror.name,
                records,
                first,
            }
            .emit(),
        }
    }
}

impl Handler<Stop> for MirrorActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, _ctx: &mut Context<Self>) -> Self::Result {
        // Fire-once: what is queued is not copied (it is in the store).
        self.queue.clear();
        let _ = self.stop.send(true);
        self.stopping.wait()
    }
}
