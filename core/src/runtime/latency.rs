//! A histogram of publish latencies with fixed buckets, readable while it is written.
//!
//! Kept in core instead of a metrics library's type so that core depends on no metrics format;
//! a reporter (the HTTP listeners' `/metrics`) renders [`LatencyHistogram::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets in seconds: 5 ms doubling 15 times (up to about 82 s); one more
/// bucket counts everything above.
const BUCKET_COUNT: usize = 15;
const FIRST_BOUND_SECONDS: f64 = 0.005;

/// Counts of latencies per bucket, their sum and their number.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Per bucket, not cumulative; the last one is unbounded.
    counts: [AtomicU64; BUCKET_COUNT + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// What a histogram held at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// `(upper bound in seconds, observations in this bucket)`, not cumulative; the last bound
    /// is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    fn upper_bound(bucket: usize) -> f64 {
        if bucket == BUCKET_COUNT {
            f64::INFINITY
        } else {
            FIRST_BOUND_SECONDS * f64::from(1u32 << bucket)
        }
    }

    pub fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = (0..BUCKET_COUNT)
            .find(|&bucket| seconds <= Self::upper_bound(bucket))
            .unwrap_or(BUCKET_COUNT);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
            buckets: self
                .counts
                .iter()
                .enumerate()
                .map(|(bucket, count)| (Self::upper_bound(bucket), count.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(30));
        histogram.observe(Duration::from_secs(1000));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum_seconds - 1000.035).abs() < 1e-9);
        assert_eq!(snapshot.buckets.len(), 16);
        assert_eq!(snapshot.buckets[0], (0.005, 1));
        assert_eq!(snapshot.buckets[3], (0.04, 1));
        assert_eq!(snapshot.buckets[15], (f64::INFINITY, 1));
        assert_eq!(
            snapshot.buckets.iter().map(|(_, count)| count).sum::<u64>(),
            3
        );
    }
}
