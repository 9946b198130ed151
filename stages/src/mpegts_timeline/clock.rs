//! The joined stream's 90 kHz clock: where it starts, and its ticks as durations.

use std::time::Duration;

use crate::formats::mpegts::{TICKS_PER_SECOND, TIMESTAMP_MODULUS};

/// Where the joined stream's clock starts: 1.4 s, ffmpeg's own start, so that a PCR up to
/// that far ahead of the first frame stays positive.
pub(super) const START: u64 = 126_000;

/// 90 kHz ticks as a duration.
pub(super) fn duration_of(ticks: u64) -> Duration {
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(TICKS_PER_SECOND);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Ticks from `from` to `to` on the 33-bit clock.
pub(super) fn ticks_between(from: u64, to: u64) -> u64 {
    (to + TIMESTAMP_MODULUS - from) % TIMESTAMP_MODULUS
}
