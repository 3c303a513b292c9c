//! The file rotator actor of one port: a thin wrapper over
//! [`billbox_spool::Rotator`]. The store actor tells it of each commit
//! ([`Committed`]) and it files the port's records from the store; timers
//! only where time is the event: its open file's deadline, and the retry
//! after a failed write (which costs a delay, never a record: the store
//! keeps every record until it is in a closed file).

use std::time::Duration;

use actix::prelude::*;
use billbox_spool::{Rotator, SpoolError};

use crate::events::{FileClosed, FilesRecovered, OpenFileRewritten, SpoolFailed, SpoolRecovered};
use crate::messages::Committed;
use crate::now_us;
use crate::supervise::{guard, ActorName, Recovery, Restart, Restarts};

/// How long after a failed write the rotator tries again.
pub const SPOOL_RETRY: Duration = Duration::from_secs(1);

/// Writes one port's flushed records into ACS files.
pub struct RotatorActor {
    rotator: Rotator,
    recovery: Recovery,
    failing: bool,
    deadline: Option<(i64, SpawnHandle)>,
    /// A retry after a failed write is scheduled.
    retry: Option<SpawnHandle>,
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
        if let Some(handle) = self.retry.take() {
            ctx.cancel_future(handle);
        }
    }
}

impl RotatorActor {
    pub fn new(rotator: Rotator, restarts: Restarts) -> RotatorActor {
        let actor = ActorName {
            kind: "rotator",
            label: "port",
            subject: rotator.settings().port.clone(),
        };
        RotatorActor {
            rotator,
            recovery: Recovery::new(actor, restarts),
            failing: false,
            deadline: None,
            retry: None,
            retired: false,
        }
    }

    /// Runs one rotator call; a panic in it stops the actor, and its
    /// supervisor restarts it (the rotator starts over from the store).
    fn work(
        &mut self,
        ctx: &mut Context<Self>,
        call: impl FnOnce(&mut Rotator) -> Result<(), SpoolError>,
    ) {
        let rotator = &mut self.rotator;
        match guard(move || {
            if billbox_failpoints::check_at("rotator.write", &rotator.settings().port) {
                return Err(SpoolError::Io {
                    op: "writing",
                    path: "(injected fault)".into(),
                    source: std::io::Error::other("an injected fault (test builds only)"),
                });
            }
            call(rotator)
        }) {
            Ok(result) => self.after(result, ctx),
            Err(panic) => {
                self.recovery.failed(panic);
                ctx.stop();
            }
        }
    }

    /// Logs what a rotator call did and re-arms the deadline timer.
    fn after(&mut self, result: Result<(), SpoolError>, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let port = self.rotator.settings().port.clone();
        for f in self.rotator.drain_closed() {
            if f.rewritten {
                OpenFileRewritten {
                    port: &port,
                    path: &f.path,
                    records: f.records(),
                }
                .emit();
            }
            FileClosed {
                port: &port,
                path: &f.path,
                records: f.records(),
                first_seq: f.first_seq,
                last_seq: f.last_seq,
            }
            .emit();
        }
        billbox_status::board()
            .port(&port)
            .open_file(self.rotator.open_file().map(|(name, records, first_us)| {
                billbox_status::FileFacts {
                    name,
                    records,
                    at: chrono::DateTime::from_timestamp_micros(first_us).unwrap_or_default(),
                }
            }));
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
                if self.retry.is_none() {
                    self.retry = Some(ctx.run_later(SPOOL_RETRY, |act, ctx| {
                        act.retry = None;
                        if !act.retired {
                            act.work(ctx, |r| r.catch_up(now_us()));
                        }
                    }));
                }
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
                act.work(ctx, |r| r.tick(now_us()));
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
        self.retry = None;
        match self.recovery.plan() {
            Some(Restart::GiveUp) => self.retired = true,
            Some(Restart::After(pause)) => {
                ctx.run_later(pause, |act, ctx| act.begin(ctx));
            }
            None => self.begin(ctx),
        }
    }
}

impl RotatorActor {
    /// Recovers the port's files from the store, then keeps them current.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.work(ctx, |r| {
            let result = r.recover(now_us());
            if result.is_ok() {
                FilesRecovered {
                    port: &r.settings().port,
                    next_seq: r.next_seq(),
                    open_file: r.is_writing(),
                }
                .emit();
            }
            result
        });
    }
}

impl Supervised for RotatorActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.recovery.restarting() {
            // Whatever the failed rotator held (an open file) is dropped;
            // the new one recovers the port's files from the store.
            self.rotator = self.rotator.start_over();
        }
    }
}

impl Handler<Committed> for RotatorActor {
    type Result = ();

    fn handle(&mut self, _: Committed, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.work(ctx, |r| r.catch_up(now_us()));
    }
}
