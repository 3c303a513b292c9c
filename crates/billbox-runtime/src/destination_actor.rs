//! The actor around one destination's delivery loop (the primary/secondary
//! exchange, or one carbon-copy server).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::watch;

use crate::supervise::{spawn_work, ActorName, Recovering, Recovery, Restart, Restarts};

/// Builds a fresh delivery loop (a restart gets a new one; all state that
/// matters is in the store or the shared queue).
pub type LoopFactory = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

/// Runs one destination's delivery loop; restarted by its supervisor when the
/// loop ends while billbox is not stopping.
pub struct DestinationActor {
    name: Arc<str>,
    make: LoopFactory,
    stop: watch::Receiver<bool>,
    recovery: Recovery,
}

impl DestinationActor {
    pub fn new(
        name: Arc<str>,
        make: LoopFactory,
        stop: watch::Receiver<bool>,
        restarts: Restarts,
    ) -> Self {
        let actor = ActorName {
            kind: "destination",
            label: "destination",
            subject: name.clone(),
        };
        DestinationActor {
            name,
            make,
            stop,
            recovery: Recovery::new(actor, restarts),
        }
    }
}

impl Actor for DestinationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if *self.stop.borrow() {
            return;
        }
        match self.recovery.plan() {
            Some(Restart::GiveUp) => {}
            Some(Restart::After(pause)) => {
                ctx.run_later(pause, |act, ctx| act.begin(ctx));
            }
            None => self.begin(ctx),
        }
    }
}

impl DestinationActor {
    /// Runs a fresh delivery loop.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        spawn_work(ctx, (self.make)());
    }
}

impl Recovering for DestinationActor {
    fn recovery(&mut self) -> &mut Recovery {
        &mut self.recovery
    }
}

impl Supervised for DestinationActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.recovery.restarting() && !*self.stop.borrow() {
            tracing::warn!(destination = %self.name, "Delivery loop is restarting.");
        }
    }
}
