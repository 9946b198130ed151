//! How the runtime retries a sink that failed with a retryable error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::units::HumanDuration;

/// Default `max_reconnect_attempts`.
pub const DEFAULT_MAX_RECONNECT_ATTEMPTS: u32 = 5;
/// Default `reconnect_delay`.
pub const DEFAULT_RECONNECT_DELAY: HumanDuration = HumanDuration::from_secs(2);
/// Default `max_reconnect_delay`.
pub const DEFAULT_MAX_RECONNECT_DELAY: HumanDuration = HumanDuration::from_secs(30);

/// Each delay is the previous one times this.
const BACKOFF_FACTOR: f64 = 1.5;
/// Delays are spread by up to this fraction either way, so that many pipelines that failed
/// together do not reconnect together.
const JITTER: f64 = 0.2;

/// Exponential backoff with jitter: the first delay is `initial_delay`, each next one 1.5 times
/// the previous, capped at `max_delay`, each spread by ±20 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Reconnects allowed for one failure; `None`: forever (`max_reconnect_attempts: 0`).
    pub max_attempts: Option<u32>,
    /// The wait before the first new attempt.
    pub initial_delay: Duration,
    /// The longest wait between attempts, however many failed.
    pub max_delay: Duration,
}

impl ReconnectPolicy {
    /// No reconnects: the first retryable error fails the pipeline.
    pub const NEVER: ReconnectPolicy = ReconnectPolicy {
        max_attempts: Some(0),
        initial_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The policy of the `max_reconnect_attempts` option, where 0 means forever.
    pub fn from_option(
        max_reconnect_attempts: u32,
        initial_delay: Duration,
        max_delay: Duration,
    ) -> Self {
        Self {
            max_attempts: (max_reconnect_attempts > 0).then_some(max_reconnect_attempts),
            initial_delay,
            max_delay,
        }
    }

    /// Whether reconnect number `attempt` (1-based) may be made.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt <= max)
    }

    /// The wait before reconnect number `attempt` (1-based), without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let delay = self.initial_delay.as_secs_f64() * BACKOFF_FACTOR.powi(exponent);
        Duration::from_secs_f64(delay.min(self.max_delay.as_secs_f64()))
    }

    /// The wait before reconnect number `attempt` (1-based), with jitter, never above
    /// `max_delay`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let spread = 1.0 + JITTER * (2.0 * unit_random() - 1.0);
        self.base_delay(attempt).mul_f64(spread).min(self.max_delay)
    }

    /// The longest all attempts can wait in total (for messages and tests).
    pub fn budget(&self) -> Option<Duration> {
        self.max_attempts.map(|max| {
            (1..=max)
                .map(|attempt| {
                    self.base_delay(attempt)
                        .mul_f64(1.0 + JITTER)
                        .min(self.max_delay)
                })
                .sum()
        })
    }
}

/// A number in [0, 1) that differs between calls and processes; jitter needs no more.
fn unit_random() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64 finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> ReconnectPolicy {
        ReconnectPolicy::from_option(
            max_attempts,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn delays_grow_by_half_and_are_capped() {
        let policy = policy(5);
        assert_eq!(policy.base_delay(1), Duration::from_secs(2));
        assert_eq!(policy.base_delay(2), Duration::from_secs(3));
        assert_eq!(policy.base_delay(3), Duration::from_millis(4500));
        assert_eq!(policy.base_delay(20), Duration::from_secs(30));
        for attempt in 1..30 {
            let delay = policy.delay(attempt);
            let base = policy.base_delay(attempt);
            assert!(delay <= Duration::from_secs(30));
            assert!(
                delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2),
                "{delay:?} vs {base:?}"
            );
        }
    }

    #[test]
    fn attempts_are_bounded_unless_zero() {
        assert!(policy(2).allows(2));
        assert!(!policy(2).allows(3));
        assert!(policy(0).allows(1_000_000));
        assert!(!ReconnectPolicy::NEVER.allows(1));
        // One attempt with no delays is one attempt, not "never".
        assert!(ReconnectPolicy::from_option(1, Duration::ZERO, Duration::ZERO).allows(1));
        assert!(policy(0).budget().is_none());
        assert_eq!(
            policy(2).budget(),
            Some(Duration::from_secs_f64(2.0 * 1.2 + 3.0 * 1.2))
        );
    }
}
