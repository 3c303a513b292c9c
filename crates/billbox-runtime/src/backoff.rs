//! Reopen and reconnect delays: doubling from a floor to the port's cap,
//! with jitter, so links that went down together (a PBX rebooted, a switch
//! restarted) do not all retry in the same instant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The share of each delay that is random: a delay `d` of the doubling
/// schedule is drawn from `[d * (1 - JITTER), d]`, so it is never longer
/// than the schedule says.
pub const JITTER: f64 = 0.25;

/// The delay before the next attempt to open a link.
#[derive(Debug, Clone)]
pub struct Backoff {
    floor: Duration,
    cap: Duration,
    next: Duration,
    jitter: f64,
    /// xorshift64* state (never 0).
    rng: u64,
}

impl Backoff {
    /// Starts at `floor` and doubles up to `cap` (at least `floor`), each
    /// delay shortened by up to [`JITTER`] of itself at random.
    pub fn new(floor: Duration, cap: Duration) -> Backoff {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = clock ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        Backoff::with_jitter(floor, cap, JITTER, seed)
    }

    /// As [`Backoff::new`] with a given `jitter` (0 to 1; 0 is the plain
    /// doubling schedule) and random `seed`, for tests.
    pub fn with_jitter(floor: Duration, cap: Duration, jitter: f64, seed: u64) -> Backoff {
        let cap = cap.max(floor);
        Backoff {
            floor,
            cap,
            next: floor,
            jitter: jitter.clamp(0.0, 1.0),
            rng: seed | 1,
        }
    }

    /// A number in `[0, 1)`.
    fn random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The delay to wait now; the schedule's next one is twice as long, up
    /// to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        let cut = self.jitter * self.random();
        d.mul_f64(1.0 - cut)
    }

    /// Back to the floor, after a link came up.
    pub fn reset(&mut self) {
        self.next = self.floor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::with_jitter(100 * MS, 500 * MS, 0.0, 7);
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn a_cap_below_the_floor_is_the_floor() {
        let mut b = Backoff::with_jitter(100 * MS, 10 * MS, 0.0, 7);
        assert_eq!(b.next_delay(), 100 * MS);
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn jitter_shortens_each_delay_by_at_most_its_share() {
        let schedule = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for seed in 0..200 {
            let mut b = Backoff::with_jitter(100 * MS, 1000 * MS, JITTER, seed);
            for d in schedule {
                let got = b.next_delay();
                let d = d * MS;
                assert!(
                    got <= d && got >= d.mul_f64(1.0 - JITTER),
                    "{got:?} for {d:?}"
                );
            }
        }
    }

    #[test]
    fn links_that_fail_together_retry_apart() {
        let delays: std::collections::HashSet<Duration> = (0..32)
            .map(|_| Backoff::new(1000 * MS, 1000 * MS).next_delay())
            .collect();
        assert!(delays.len() > 16, "{} distinct delays of 32", delays.len());
    }
}
