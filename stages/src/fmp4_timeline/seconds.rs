//! Exact fractions of seconds: the timeline's offset, so that joining any number of files
//! does not drift; each conversion to a track's timescale rounds once.

use std::time::Duration;

/// An exact non-negative fraction of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seconds {
    pub(super) numerator: u128,
    pub(super) denominator: u128,
}

impl Default for Seconds {
    fn default() -> Self {
        Self {
            numerator: 0,
            denominator: 1,
        }
    }
}

impl Seconds {
    pub(super) fn add_ticks(self, ticks: u64, timescale: u32) -> Self {
        let timescale = u128::from(timescale);
        let numerator = self.numerator * timescale + u128::from(ticks) * self.denominator;
        let denominator = self.denominator * timescale;
        let divisor = gcd(numerator, denominator);
        Self {
            numerator: numerator / divisor,
            denominator: denominator / divisor,
        }
    }

    /// `duration` exactly.
    pub(super) fn of_duration(duration: Duration) -> Self {
        Self::default().add_ticks(
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            1_000_000_000,
        )
    }

    /// As a duration, rounded down to the nanosecond.
    pub(super) fn as_duration(self) -> Duration {
        let nanos = self.numerator * 1_000_000_000 / self.denominator;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// In a track's timescale, rounded to the nearest tick.
    pub(super) fn in_ticks(self, timescale: u32) -> u64 {
        let scaled = self.numerator * u128::from(timescale);
        u64::try_from((scaled + self.denominator / 2) / self.denominator).unwrap_or(u64::MAX)
    }

    /// Whether this is later than `other` (a/b > c/d as a·d > c·b).
    pub(super) fn is_after(self, other: Self) -> bool {
        self.numerator * other.denominator > other.numerator * self.denominator
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}
