//! Supervision: a panic inside an actor becomes a restart of that actor, and
//! too many restarts stop billbox cleanly.
//!
//! actix's `Supervisor` restarts an actor that stops while its address is
//! alive, but an actor whose handler panics just dies (and a panic in a
//! future on the system arbiter takes the whole process). So the actors run
//! their work through [`guard`] (a handler's body) or [`Guarded`] (a
//! future): a panic there is caught, the actor records the cause and stops,
//! its supervisor restarts it, and it rebuilds its state from the store in
//! `started()`. The process-wide panic hook lets such a panic unwind
//! ([`panic_is_caught`]).
//!
//! Every restart is counted against a [`RestartBudget`] per actor; one that
//! restarts more than [`RESTART_BUDGET`] times within [`RESTART_WINDOW`]
//! is failing for good, and [`Restarts`] asks the process to stop (the
//! binary shuts down cleanly and exits with status 3, so the container
//! runtime restarts it from a clean state).

use std::any::Any;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::events::{ActorRestarted, RestartBudgetExceeded};

/// Restarts one actor may have within [`RESTART_WINDOW`].
pub const RESTART_BUDGET: usize = 5;
/// The window of [`RESTART_BUDGET`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// The pause before a restarted actor starts its work again: doubling per
/// restart within the window, so a fault that recurs at once does not spin.
pub const RESTART_PAUSE: Duration = Duration::from_millis(100);
/// The longest [`RESTART_PAUSE`].
pub const RESTART_PAUSE_MAX: Duration = Duration::from_secs(5);

/// What a restarted actor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Start its work again after this pause.
    After(Duration),
    /// Its budget is spent and billbox is stopping: stay idle.
    GiveUp,
}

impl Restart {
    /// The pause before the `n`-th restart within the window (from 1).
    pub fn pause(n: usize) -> Duration {
        let doublings = n.saturating_sub(1).min(16) as u32;
        (RESTART_PAUSE * 2u32.pow(doublings)).min(RESTART_PAUSE_MAX)
    }
}

thread_local! {
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// Where the last caught panic of this thread happened, as the panic
    /// hook saw it.
    static LOCATION: Cell<Option<String>> = const { Cell::new(None) };
}

/// For the process's panic hook: notes where a caught panic happened, so
/// the restart's cause names the place.
pub fn note_location(location: String) {
    LOCATION.with(|l| l.set(Some(location)));
}

/// True while this thread runs actor work whose panic is caught and turned
/// into a restart: the panic hook then only lets it unwind.
pub fn panic_is_caught() -> bool {
    CATCHING.with(|c| c.get() > 0)
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `f`; a panic in it is caught and returned as its message.
pub fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|p| {
        let message = panic_message(p.as_ref());
        match LOCATION.with(|l| l.take()) {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }
    })
}

/// A future whose panics are caught: it completes with `Err(message)`
/// instead of unwinding into the arbiter.
pub struct Guarded<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Guarded<F> {
    pub fn new(inner: F) -> Guarded<F> {
        Guarded {
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match guard(move || inner.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The restarts of one actor within a sliding window.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    limit: usize,
    window: Duration,
    times: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(limit: usize, window: Duration) -> RestartBudget {
        RestartBudget {
            limit,
            window,
            times: VecDeque::new(),
        }
    }

    /// Notes a restart at `now`; false once more than `limit` happened
    /// within `window`.
    pub fn note(&mut self, now: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.times.pop_front();
        }
        self.times.push_back(now);
        self.times.len() <= self.limit
    }

    /// Restarts within the window, as of the last one noted.
    pub fn count(&self) -> usize {
        self.times.len()
    }
}

/// What an actor is, for logs and `billbox_actor_restarts_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActorName {
    /// `reader`, `rotator`, `store`, `destination`.
    pub kind: &'static str,
    /// The label naming it: `port`, `destination`, or `""` (the store).
    pub label: &'static str,
    /// The port or destination.
    pub subject: Arc<str>,
}

/// One actor's part in its supervision: why its work last failed, and what
/// its restart said. Each supervised actor holds one.
pub struct Recovery {
    actor: ActorName,
    restarts: Restarts,
    cause: Option<String>,
    plan: Option<Restart>,
}

impl Recovery {
    pub fn new(actor: ActorName, restarts: Restarts) -> Recovery {
        Recovery {
            actor,
            restarts,
            cause: None,
            plan: None,
        }
    }

    /// The restart budgets and the process's stop, shared by all actors.
    pub fn restarts(&self) -> &Restarts {
        &self.restarts
    }

    /// The actor's work panicked with `cause`; the actor stops next.
    pub fn failed(&mut self, cause: String) {
        self.cause = Some(cause);
    }

    /// In `restarting()`: logs, counts and budgets the failure that stopped
    /// the actor. False when it stopped for another reason (its work
    /// ended): nothing is counted then.
    pub fn restarting(&mut self) -> bool {
        let Some(cause) = self.cause.take() else {
            return false;
        };
        self.plan = Some(self.restarts.restarted(&self.actor, &cause));
        true
    }

    /// In `started()`: `None` to begin the work now; else what the last
    /// restart said (pause first, or stay idle).
    pub fn plan(&mut self) -> Option<Restart> {
        self.plan.take()
    }
}

/// An actor whose long-running work [`spawn_work`] runs.
pub trait Recovering: actix::Actor<Context = actix::Context<Self>> {
    fn recovery(&mut self) -> &mut Recovery;
    fn stop_state(&mut self) -> &mut Stopping;
}

/// Runs `work` as the actor's long-running task (unless it was asked to
/// stop). When the work ends or panics (the cause is recorded), the actor
/// stops and its supervisor restarts it; after a [`crate::messages::Stop`]
/// the waiting replies are answered instead and the actor stays idle.
pub fn spawn_work<A: Recovering>(
    act: &mut A,
    ctx: &mut actix::Context<A>,
    work: impl Future<Output = ()> + 'static,
) {
    use actix::{ActorContext, ActorFutureExt, AsyncContext};
    if act.stop_state().asked {
        return;
    }
    act.stop_state().running = true;
    ctx.spawn(
        actix::fut::wrap_future::<_, A>(Guarded::new(work)).map(|result, act, ctx| {
            act.stop_state().running = false;
            if let Err(panic) = result {
                act.recovery().failed(panic);
            }
            if act.stop_state().asked {
                act.stop_state().answer();
            } else {
                ctx.stop()
            }
        }),
    );
}

/// The restart budgets of every actor, and the way to ask the process to
/// stop when one is spent. Cheap to clone.
#[derive(Clone)]
pub struct Restarts {
    budgets: Arc<Mutex<HashMap<ActorName, RestartBudget>>>,
    fatal: Arc<watch::Sender<Option<String>>>,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts::new()
    }
}

impl Restarts {
    pub fn new() -> Restarts {
        Restarts {
            budgets: Arc::default(),
            fatal: Arc::new(watch::channel(None).0),
        }
    }

    /// Changes to `Some(why)` once an actor spent its restart budget.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    /// billbox cannot go on safely (the store's disk failed a sync): stops
    /// the process, which exits non-zero for its container or unit to start
    /// it again. The first reason given is kept.
    pub fn stop_for(&self, why: String) {
        if self.fatal.borrow().is_none() {
            self.fatal.send_replace(Some(why));
        }
    }

    /// An actor is being restarted after `cause`: logs it at ERROR, counts
    /// it, and stops the process once the actor spent its budget. Says what
    /// the restarted actor does.
    pub fn restarted(&self, actor: &ActorName, cause: &str) -> Restart {
        let (within, count) = {
            let mut budgets = self.budgets.lock().expect("restart budgets poisoned");
            let budget = budgets
                .entry(actor.clone())
                .or_insert_with(|| RestartBudget::new(RESTART_BUDGET, RESTART_WINDOW));
            (budget.note(Instant::now()), budget.count())
        };
        ActorRestarted {
            actor,
            cause,
            restarts: count,
        }
        .emit();
        if within {
            return Restart::After(Restart::pause(count));
        }
        if self.fatal.borrow().is_none() {
            RestartBudgetExceeded {
                actor,
                restarts: count,
            }
            .emit();
            self.fatal.send_replace(Some(format!(
                "the {} actor{} restarted {count} times within {}s",
                actor.kind,
                if actor.label.is_empty() {
                    String::new()
                } else {
                    format!(" of {} {}", actor.label, actor.subject)
                },
                RESTART_WINDOW.as_secs()
            )));
        }
        Restart::GiveUp
    }
}

/// Whether an actor was asked to [`crate::messages::Stop`], and who waits
/// for its work to end.
#[derive(Default)]
pub struct Stopping {
    /// [`crate::messages::Stop`] was received.
    pub asked: bool,
    /// The actor's work runs.
    pub running: bool,
    /// Answered when the running work has ended.
    waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Stopping {
    pub fn answer(&mut self) {
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    /// The reply to a [`crate::messages::Stop`]: now when nothing runs, else when it ends.
    pub fn wait(&mut self) -> actix::ResponseFuture<()> {
        self.asked = true;
        if !self.running {
            return Box::pin(async {});
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_caught_with_their_message() {
        assert_eq!(guard(|| 7), Ok(7));
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let caught = guard(|| -> u8 { panic!("bad state {}", 3) });
        let caught_str = guard(|| -> u8 { panic!("plain") });
        std::panic::set_hook(prev);
        assert_eq!(caught, Err("bad state 3".to_string()));
        assert_eq!(caught_str, Err("plain".to_string()));
        assert!(!panic_is_caught());
    }

    #[test]
    fn a_panicking_future_completes_with_its_message() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ok = rt.block_on(Guarded::new(async { 1 }));
        let bad = rt.block_on(Guarded::new(async {
            tokio::task::yield_now().await;
            if true {
                panic!("mid-stream");
            }
        }));
        std::panic::set_hook(prev);
        assert_eq!(ok, Ok(1));
        assert_eq!(bad, Err("mid-stream".to_string()));
    }

    #[test]
    fn restart_pauses_double_up_to_their_cap() {
        assert_eq!(Restart::pause(1), RESTART_PAUSE);
        assert_eq!(Restart::pause(2), RESTART_PAUSE * 2);
        assert_eq!(Restart::pause(40), RESTART_PAUSE_MAX);
    }

    #[test]
    fn the_budget_allows_bursts_and_refuses_a_loop() {
        let t = Instant::now();
        let mut b = RestartBudget::new(3, Duration::from_secs(60));
        assert!(b.note(t) && b.note(t) && b.note(t));
        assert!(!b.note(t + Duration::from_secs(1)));
        // Once the window has passed, restarts are allowed again.
        let mut b = RestartBudget::new(3, Duration::from_secs(60));
        for i in 0..10u64 {
            assert!(b.note(t + Duration::from_secs(25 * i)), "{i}");
        }
        assert_eq!(b.count(), 3);
    }

    #[test]
    fn a_spent_budget_asks_the_process_to_stop() {
        let r = Restarts::new();
        let fatal = r.fatal();
        let actor = ActorName {
            kind: "rotator",
            label: "port",
            subject: Arc::from("p"),
        };
        let plans: Vec<Restart> = (0..RESTART_BUDGET)
            .map(|_| r.restarted(&actor, "a bug"))
            .collect();
        assert_eq!(plans[0], Restart::After(RESTART_PAUSE));
        assert_eq!(plans[2], Restart::After(RESTART_PAUSE * 4));
        assert_eq!(*fatal.borrow(), None);
        assert_eq!(r.restarted(&actor, "a bug"), Restart::GiveUp);
        let why = fatal.borrow().clone().unwrap();
        assert!(
            why.contains("rotator actor of port p restarted 6 times"),
            "{why}"
        );
    }
}
