//! The file rotator actor of one port: a thin wrapper over
//! [`billbox_spool::Rotator`] that feeds it flushed records, wakes it at its
//! file's deadline, and catches up from the store once a second (so a dropped
//! notification or a failed write costs at most a second of delay, never a
//! record).

use std::time::Duration;

use actix::prelude::*;
use billbox_spool::{Rotator, SpoolError};

use crate::events::{FileClosed, FilesRecovered, SpoolFailed, SpoolRecovered};
use crate::messages::Committed;
use crate::now_us;

/// How often the rotator checks the store for records it was not told about.
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(1);

/// Writes one port's flushed records into ACS files.
pub struct RotatorActor {
    rotator: Rotator,
    failing: bool,
    deadline: Option<(i64, SpawnHandle)>,
    /// Handed over to a new rotator of the port (config reload): does
    /// nothing more, and ends once its addresses are dropped.
    retired: bool,
}

/// Stop touching the port's files: another rotator takes over. The reply
/// comes once this one is idle.
#[derive(Debug, Clone, Copy)]
pub struct Retire;

impl Message for Retire {
    type Result = ();
}

impl Handler<Retire> for RotatorActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        if let Some((_, handle)) = self.deadline.take() {
            ctx.cancel_future(handle);
        }
    }
}

impl RotatorActor {
    pub fn new(rotator: Rotator) -> RotatorActor {
        RotatorActor {
            rotator,
            failing: false,
            deadline: None,
            retired: false,
        }
    }

    /// Logs what a rotator call did and re-arms the deadline timer.
    fn after(&mut self, result: Result<(), SpoolError>, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let port = self.rotator.settings().port.clone();
        for f in self.rotator.drain_closed() {
            FileClosed {
                port: &port,
                path: &f.path,
                records: f.records(),
                first_seq: f.first_seq,
                last_seq: f.last_seq,
            }
            .emit();
        }
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                SpoolRecovered { port: &port }.emit();
            }
            Ok(()) => {}
            Err(e) => {
                SpoolFailed {
                    port: &port,
                    error: &e.to_string(),
                    first: !self.failing,
                }
                .emit();
                self.failing = true;
            }
        }
        self.arm_deadline(ctx);
    }

    fn arm_deadline(&mut self, ctx: &mut Context<Self>) {
        let want = self.rotator.deadline_us();
        if want == self.deadline.as_ref().map(|d| d.0) {
            return;
        }
        if let Some((_, handle)) = self.deadline.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = want {
            let wait = Duration::from_micros((at - now_us()).max(0) as u64);
            let handle = ctx.run_later(wait, |act, ctx| {
                act.deadline = None;
                if act.retired {
                    return;
                }
                let r = act.rotator.tick(now_us());
                act.after(r, ctx);
            });
            self.deadline = Some((at, handle));
        }
    }
}

impl Actor for RotatorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // One pending wake-up is enough: it reads everything flushed by then.
        ctx.set_mailbox_capacity(1);
        self.deadline = None;
        if self.retired {
            return;
        }
        let r = self.rotator.recover(now_us());
        if r.is_ok() {
            FilesRecovered {
                port: &self.rotator.settings().port,
                next_seq: self.rotator.next_seq(),
                open_file: self.rotator.is_writing(),
            }
            .emit();
        }
        self.after(r, ctx);
        ctx.run_interval(CATCH_UP_EVERY, |act, ctx| {
            if act.retired {
                return;
            }
            let r = act.rotator.catch_up(now_us());
            act.after(r, ctx);
        });
    }
}

impl Supervised for RotatorActor {}

impl Handler<Committed> for RotatorActor {
    type Result = ();

    fn handle(&mut self, _: Committed, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let r = self.rotator.catch_up(now_us());
        self.after(r, ctx);
    }
}
