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

/// Chooses the server for each attempt.
///
/// - `failover` (A-A-B-B): `attempts` failed attempts on the current server
///   move delivery to the other one. Delivery stays on the server that
///   answers; after `failback_after` on the secondary, the primary is tried
///   again (and left again after `attempts` failures).
/// - `round_robin` (A-B-A-B): every failed attempt moves to the other server;
///   delivery stays on the server that answers.
///
/// Without a secondary, every attempt goes to the primary.
#[derive(Debug, Clone)]
pub struct Retransmission {
    method: Method,
    attempts: u32,
    has_secondary: bool,
    failback_after: Option<Duration>,
    current: Server,
    failures: u32,
    since: Instant,
}

impl Retransmission {
    pub fn new(
        method: Method,
        attempts: u32,
        has_secondary: bool,
        failback_after: Option<Duration>,
        now: Instant,
    ) -> Retransmission {
        Retransmission {
            method,
            attempts: attempts.max(1),
            has_secondary,
            failback_after,
            current: Server::Primary,
            failures: 0,
            since: now,
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

    /// The attempt on `target()` was acknowledged.
    pub fn on_success(&mut self) {
        self.failures = 0;
    }

    /// The attempt on `target()` failed.
    pub fn on_failure(&mut self, now: Instant) {
        if !self.has_secondary {
            return;
        }
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
            } else {
                p.on_failure(now);
            }
        }
        out
    }

    #[test]
    fn failover_tries_each_server_attempts_times() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::Failover, 3, true, None, t);
        assert_eq!(run(&mut p, &[false; 8], t), "AAABBBAA");
    }

    #[test]
    fn failover_stays_on_the_server_that_answers() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::Failover, 2, true, None, t);
        assert_eq!(
            run(&mut p, &[true, false, false, true, true, false, true], t),
            "AAABBBB"
        );
    }

    #[test]
    fn failover_goes_back_to_the_primary_after_failback_after() {
        let t = Instant::now();
        let d = Duration::from_secs(60);
        let mut p = Retransmission::new(Method::Failover, 1, true, Some(d), t);
        assert_eq!(run(&mut p, &[false, true], t), "AB");
        assert_eq!(run(&mut p, &[true], t + Duration::from_secs(59)), "B");
        assert_eq!(run(&mut p, &[true, true], t + d), "AA");
        // Primary still down at failback: attempts on it, then back to B.
        let mut p = Retransmission::new(Method::Failover, 2, true, Some(d), t);
        assert_eq!(run(&mut p, &[false, false, true], t), "AAB");
        assert_eq!(run(&mut p, &[false, false, true], t + d), "AAB");
    }

    #[test]
    fn round_robin_alternates_on_every_failure() {
        let t = Instant::now();
        let mut p = Retransmission::new(Method::RoundRobin, 3, true, None, t);
        assert_eq!(
            run(&mut p, &[false, false, false, false, true, true], t),
            "ABABAA"
        );
    }

    #[test]
    fn without_a_secondary_every_attempt_goes_to_the_primary() {
        let t = Instant::now();
        for method in [Method::Failover, Method::RoundRobin] {
            let mut p = Retransmission::new(method, 2, false, None, t);
            assert_eq!(run(&mut p, &[false; 5], t), "AAAAA");
        }
    }
}
