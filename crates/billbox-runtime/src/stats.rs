//! In-process figures that the benchmarks and the demo read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds grow by this factor (about 19 % error at most).
const GROWTH: f64 = 1.189_207_115; // 2^(1/4)
const FIRST_US: f64 = 10.0;
const BUCKETS: usize = 100;

/// A lock-free latency histogram with logarithmic buckets from 10 µs to
/// about 30 minutes; quantiles are reported as the bucket's upper bound.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BUCKETS],
    max_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            max_us: AtomicU64::new(0),
        }
    }
}

fn bound_us(i: usize) -> f64 {
    FIRST_US * GROWTH.powi(i as i32)
}

impl LatencyHistogram {
    /// Counts `n` events that each took `us` microseconds.
    pub fn record(&self, us: u64, n: u64) {
        let i = if (us as f64) <= FIRST_US {
            0
        } else {
            (((us as f64) / FIRST_US).ln() / GROWTH.ln()).ceil() as usize
        };
        self.counts[i.min(BUCKETS - 1)].fetch_add(n, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Events counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The latency below which a fraction `q` (0..=1) of events fall.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= want {
                let max = self.max_us.load(Ordering::Relaxed) as f64;
                return Duration::from_micros(bound_us(i).min(max.max(FIRST_US)) as u64);
            }
        }
        self.max()
    }

    /// The longest latency counted.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = LatencyHistogram::default();
        for us in 1..=1000u64 {
            h.record(us * 10, 1);
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5).as_micros() as f64;
        assert!((5000.0..=5000.0 * GROWTH).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((9900.0..=10_000.0).contains(&p99), "{p99}");
        assert_eq!(h.max(), Duration::from_micros(10_000));
        assert_eq!(LatencyHistogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn huge_values_land_in_the_last_bucket() {
        let h = LatencyHistogram::default();
        h.record(u64::MAX / 2, 3);
        assert_eq!(h.count(), 3);
    }
}
