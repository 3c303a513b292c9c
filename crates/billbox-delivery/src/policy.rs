//! The retransmission method: which server gets the next attempt.

use std::time::{Duration, Instant};

use billbox_config::Method;

/// One of the two servers of the primary/secondary exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    Primary,
    Secondary,
}

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Server::Primary => "primary",
            Server::Secondary => "secondary",
        }
    }

    fn other(self) -> Server {
        match self {
            Server::Primary => Server::Secondary,
            Server::Secondary => Server::Primary,
        }
    }
}

/// What the retransmission task does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Wait `retry_delay`, then attempt again (on [`Retransmission::target`]).
    Retry,
    /// A whole round failed: the task suspends until a new record is stored
    /// or [`Retransmission::suspend`] has passed, then calls
    /// [`Retransmission::resume`].
    Suspend,
}

/// Chooses the server for each attempt, and when the task suspends.
///
/// - `failover` (A-A-B-B): `attempts` failed attempts on the current server
///   move delivery to the other one. Delivery stays on the server that
///   answers; after `failback_after` on the secondary, the primary is tried
///   again (and left again after `attempts` failures).
/// - `round_robin` (A-B-A-B): every failed attempt moves to the other server;
///   delivery stays on the server that answers.
///
/// Without a secondary, every attempt goes to the primary.
///
/// A round is `attempts` consecutive failed attempts on each server
/// (`attempts` x 2 with a secondary, `attempts` without one); a success
/// ends it. With `suspend` above zero, a whole failed round suspends the
/// task (the AG's "Number of Retransmit Attempts ... before suspending the
/// task"); [`Retransmission::resume`] then starts a new round on the
/// primary. With `suspend` zero the task never suspends. Records are never
/// given up either way.
#[derive(Debug, Clone)]
pub struct Retransmission {
    method: Method,
    attempts: u32,
    has_secondary: bool,
    failback_after: Option<Duration>,
    suspend: Duration,
    current: Server,
    failures: u32,
    /// Consecutive failed attempts in the current round.
    round_failures: u32,
    since: Instant,
}

impl Retransmission {
    /// `suspend` zero: never suspend.
    pub fn new(
        method: Method,
        attempts: u32,
        has_secondary: bool,
        failback_after: Option<Duration>,
        suspend: Duration,
        now: Instant,
    ) -> Retransmission {
        Retransmission {
            method,
            attempts: attempts.max(1),
            has_secondary,
            failback_after,
            suspend,
            current: Server::Primary,
            failures: 0,
            round_failures: 0,
            since: now,
        }
    }

    /// How long a suspension lasts at most (zero: the task never suspends).
    pub fn suspend(&self) -> Duration {
        self.suspend
    }

    /// Failed attempts in a whole round.
    pub fn round(&self) -> u32 {
        if self.has_secondary {
            self.attempts.saturating_mul(2)
        } else {
            self.attempts
        }
    }

    /// The server for the next attempt.
    pub fn target(&mut self, now: Instant) -> Server {
        if self.method == Method::Failover
            && self.current == Server::Secondary
            && self.failures == 0
            && self
                .failback_after
                .is_some_and(|d| now.saturating_duration_since(self.since) >= d)
        {
            self.switch(Server::Primary, now);
        }
        self.current
    }

    /// The attempt on `target()` was acknowledged: the round ends.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.round_failures = 0;
    }

    /// The attempt on `target()` failed. Returns whether the task now
    /// retries (after `retry_delay`) or suspends (a whole round failed).
    pub fn on_failure(&mut self, now: Instant) -> AfterFailure {
        self.round_failures = self.round_failures.saturating_add(1);
        if self.has_secondary {
            match self.method {
                Method::RoundRobin => self.switch(self.current.other(), now),
                Method::Failover => {
                    self.failures += 1;
                    if self.failures >= self.attempts {
                        self.switch(self.current.other(), now);
                    }
                }
            }
        }
        if self.round_failures >= self.round() {
            if !self.suspend.is_zero() {
                // Counted on until `resume()`: an attempt still in flight
                // that fails meanwhile also says Suspend.
                return AfterFailure::Suspend;
            }
            self.round_failures = 0;
        }
        AfterFailure::Retry
    }

    /// The suspension ended (a new record, or `suspend` passed): a new
    /// round starts with the primary.
    pub fn resume(&mut self, now: Instant) {
        self.switch(Server::Primary, now);
        self.round_failures = 0;
    }

    fn switch(&mut self, to: Server, now: Instant) {
        self.current = to;
        self.failures = 0;
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs attempts with the given outcomes and returns the servers tried.
    fn run(p: &mut Retransmission, outcomes: &[bool], now: Instant) -> String {
        let mut out = String::new();
        for ok in outcomes {
            out.push(match p.target(now) {
                Server::Primary => 'A',
                Server::Secondary => 'B',
            });
            if *ok {
                p.on_success();
            } else if p.on_failure(now) == AfterFailure::Suspend {
                out.push('|');
            }
        }
        out
    }

    #[test]
    fn failover_tries_each_server_attempts_times() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::Failover, 3, true, None, Duration::ZERO, t);
        assert_eq!(run(&mut p, &[false; 8], t), "AAABBBAA");
    }

    #[test]
    fn failover_stays_on_the_server_that_answers() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::Failover, 2, true, None, Duration::ZERO, t);
        assert_eq!(
            run(&mut p, &[true, false, false, true, true, false, true], t),
            "AAABBBB"
        );
    }

    #[test]
    fn failover_goes_back_to_the_primary_after_failback_after() {
        let t = Instant::now();
        let d = Duration::from_secs(60);
        let mut p = Retransmission::new(Method::Failover, 1, true, Some(d), Duration::ZERO, t);
        assert_eq!(run(&mut p, &[false, true], t), "AB");
        assert_eq!(run(&mut p, &[true], t + Duration::from_secs(59)), "B");
        assert_eq!(run(&mut p, &[true, true], t + d), "AA");
        // Primary still down at failback: attempts on it, then back to B.
        let mut p = Retransmission::new(Method::Failover, 2, true, Some(d), Duration::ZERO, t);
        assert_eq!(run(&mut p, &[false, false, true], t), "AAB");
        assert_eq!(run(&mut p, &[false, false, true], t + d), "AAB");
    }

    #[test]
    fn round_robin_alternates_on_every_failure() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::RoundRobin, 3, true, None, Duration::ZERO, t);
        assert_eq!(
            run(&mut p, &[false, false, false, false, true, true], t),
            "ABABAA"
        );
    }

    #[test]
    fn without_a_secondary_every_attempt_goes_to_the_primary() {
        let t = Instant::now();
        for method in [Method::Failover, Method::RoundRobin] {
            let mut p = Retransmission::new(method, 2, false, None, Duration::ZERO, t);
            assert_eq!(run(&mut p, &[false; 5], t), "AAAAA");
        }
    }

    const SUSPEND: Duration = Duration::from_secs(30);

    #[test]
    fn round_robin_suspends_after_attempts_on_each_server() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::RoundRobin, 2, true, None, SUSPEND, t);
        assert_eq!(p.round(), 4);
        assert_eq!(run(&mut p, &[false; 4], t), "ABAB|");
        p.resume(t);
        // A new round, from the primary, counted afresh.
        assert_eq!(run(&mut p, &[false; 4], t), "ABAB|");
        p.resume(t);
        assert_eq!(run(&mut p, &[false, false, false, true], t), "ABAB");
    }

    #[test]
    fn failover_suspends_after_attempts_on_each_server() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::Failover, 2, true, None, SUSPEND, t);
        assert_eq!(run(&mut p, &[false; 4], t), "AABB|");
        p.resume(t);
        assert_eq!(run(&mut p, &[false; 4], t), "AABB|");
        p.resume(t);
        // A success ends the round count: B answers, then fails again.
        assert_eq!(run(&mut p, &[false, false, true], t), "AAB");
        assert_eq!(run(&mut p, &[false; 4], t), "BBAA|");
        p.resume(t);
        assert_eq!(run(&mut p, &[true], t), "A");
    }

    #[test]
    fn failover_resumes_on_the_primary_after_a_suspension_that_ended_on_it() {
        // attempts = 1: A B | resume: A again, not B.
        let t = Instant::now();
        let mut p = Retransmission::new(Method::Failover, 1, true, None, SUSPEND, t);
        assert_eq!(run(&mut p, &[false, false], t), "AB|");
        p.resume(t);
        assert_eq!(run(&mut p, &[false, false], t), "AB|");
        // Round robin likewise after a round that began on B.
        let mut p = Retransmission::new(Method::RoundRobin, 1, true, None, SUSPEND, t);
        assert_eq!(run(&mut p, &[false, true, false, false], t), "ABBA|");
        p.resume(t);
        assert_eq!(run(&mut p, &[true], t), "A");
    }

    #[test]
    fn without_a_secondary_a_round_is_attempts_on_the_primary() {
        let t = Instant::now();
        for method in [Method::Failover, Method::RoundRobin] {
            let mut p = Retransmission::new(method, 2, false, None, SUSPEND, t);
            assert_eq!(p.round(), 2);
            assert_eq!(run(&mut p, &[false; 2], t), "AA|");
            p.resume(t);
            assert_eq!(run(&mut p, &[false, true, false, false], t), "AAAA|");
        }
    }

    #[test]
    fn suspend_zero_never_suspends() {
        let t = Instant::now();
        for method in [Method::Failover, Method::RoundRobin] {
            for secondary in [false, true] {
                let mut p = Retransmission::new(method, 2, secondary, None, Duration::ZERO, t);
                let order = run(&mut p, &[false; 40], t);
                assert!(!order.contains('|'), "{method:?} {secondary}: {order}");
                assert_eq!(order.len(), 40);
            }
        }
        let mut p = Retransmission::new(Method::Failover, 2, true, None, Duration::ZERO, t);
        assert_eq!(run(&mut p, &[false; 10], t), "AABBAABBAA");
    }
}
