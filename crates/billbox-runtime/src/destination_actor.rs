//! The actor around one destination's delivery loop (the primary/secondary
//! exchange, or one carbon-copy server).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::watch;

/// Builds a fresh delivery loop (a restart gets a new one; all state that
/// matters is in the store or the shared queue).
pub type LoopFactory = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

/// Runs one destination's delivery loop; restarted by its supervisor when the
/// loop ends while billbox is not stopping.
pub struct DestinationActor {
    name: Arc<str>,
    make: LoopFactory,
    stop: watch::Receiver<bool>,
}

impl DestinationActor {
    pub fn new(name: Arc<str>, make: LoopFactory, stop: watch::Receiver<bool>) -> Self {
        DestinationActor { name, make, stop }
    }
}

impl Actor for DestinationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if *self.stop.borrow() {
            return;
        }
        (self.make)()
            .into_actor(self)
            .map(|(), _act, ctx| ctx.stop())
            .spawn(ctx);
    }
}

impl Supervised for DestinationActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !*self.stop.borrow() {
            tracing::warn!(destination = %self.name, "Delivery loop is restarting.");
        }
    }
}
