//! What the server's Acknowledgements say it has received, as a running total of the bytes
//! this client sent after the handshake.
//!
//! Servers differ (read from their sources and trackers): nginx-rtmp and SRS send the running
//! total but start again from 0 once it passes 0xF0000000 (about 4 GB); node-media-server does
//! the same; others wrap at 2^31 or 2^32; some (YouTube, reportedly) send a fixed count per
//! window instead of a total. SRS counts the handshake's bytes, nginx-rtmp does not.
//!
//! The widening is conservative: it never claims more than was received. A value below the
//! last one after a large one is a counter that started again, and the total goes on from the
//! last value seen (the bytes between that value and the restart are not counted: at most a
//! window, so a resend may repeat a little more). A value below or equal to the last while both
//! are small cannot be a restart: once, it may be a total sent again (nothing new); twice in a
//! row, the server counts per window, and from then on each value is added. The handshake's bytes are taken off every total, so a server that does not count
//! them is believed a few kilobytes short. A total is never more than was sent.
//!
//! Missing acknowledgements are never a reason to drop the connection: a server that sends
//! none is confirmed by the kernel's count instead (the driver's business).

use crate::handshake::CLIENT_HANDSHAKE_BYTES;

/// A last value at or above this, followed by a smaller one, is a counter that started again
/// (below 2^31, for servers whose counter wraps there); no server counts a window this large.
const RESTART_ABOVE: u32 = 0x7000_0000;

/// How the server counts, as far as its acknowledgements have shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counting {
    /// No acknowledgement yet.
    #[default]
    Unknown,
    /// A running total (that may start again past a large value).
    Total,
    /// A count of the bytes since its last acknowledgement.
    PerWindow,
}

impl Counting {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "none yet",
            Self::Total => "running total",
            Self::PerWindow => "per window",
        }
    }
}

/// The server's acknowledgements so far.
#[derive(Debug, Default, Clone)]
pub struct Acknowledgements {
    counting: Counting,
    last: Option<u32>,
    /// What the counter had counted before it last started again.
    base: u64,
    /// The widened total, handshake included as the server may count it.
    total: u64,
    /// Values in a row not above the last while small: two make a count per window.
    small_repeats: u8,
    received: u64,
}

impl Acknowledgements {
    /// Takes an acknowledgement of `value`; `sent` is what this client has sent after the
    /// handshake. Returns the bytes after the handshake the server has surely received.
    pub fn received(&mut self, value: u32, sent: u64) -> u64 {
        self.received += 1;
        let value64 = u64::from(value);
        match (self.counting, self.last) {
            (Counting::PerWindow, _) => self.total += value64,
            (_, Some(last)) if value <= last && last < RESTART_ABOVE => {
                // Not a restart. Twice in a row, it is a count per window (this one a window
                // more); once may be a repeated total, which claims nothing new.
                self.small_repeats += 1;
                if self.small_repeats >= 2 {
                    self.counting = Counting::PerWindow;
                    self.total += value64;
                }
            }
            (_, Some(last)) if value < last => {
                self.small_repeats = 0;
                self.counting = Counting::Total;
                self.base += u64::from(last);
                self.total = self.base + value64;
            }
            _ => {
                self.small_repeats = 0;
                self.counting = Counting::Total;
                self.total = self.base + value64;
            }
        }
        self.last = Some(value);
        self.acknowledged(sent)
    }

    /// The bytes after the handshake the server has surely received.
    pub fn acknowledged(&self, sent: u64) -> u64 {
        self.total.saturating_sub(CLIENT_HANDSHAKE_BYTES).min(sent)
    }

    pub fn counting(&self) -> Counting {
        self.counting
    }

    /// How many acknowledgements came.
    pub fn count(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE: u64 = CLIENT_HANDSHAKE_BYTES;

    #[test]
    fn a_running_total_that_starts_again_past_0xf0000000_keeps_growing() {
        let mut acks = Acknowledgements::default();
        let sent = 10 * 0xF000_0000u64;
        let mut last = 0;
        // nginx-rtmp: a total every ~5 MB that resets to 0 at 0xF0000000.
        let mut counter: u64 = 0;
        let mut true_total: u64 = 0;
        for _ in 0..2000 {
            counter += 5_000_123;
            true_total += 5_000_123;
            if counter >= 0xF000_0000 {
                counter = 0;
            }
            let acknowledged = acks.received(counter as u32, sent);
            assert!(acknowledged >= last, "never goes back");
            assert!(acknowledged <= true_total, "never more than received");
            last = acknowledged;
        }
        assert_eq!(acks.counting(), Counting::Total);
        // Each restart loses at most one window.
        assert!(
            true_total - last <= 2 * 5_000_123 + HANDSHAKE,
            "{true_total} {last}"
        );
    }

    #[test]
    fn a_fixed_count_per_window_adds_up_once_it_is_told_from_a_repeated_total() {
        let mut acks = Acknowledgements::default();
        // The first is read as a total, the second as a repeat (nothing new): only from the
        // third is the count known to be per window, and each adds a window.
        let mut last = 0;
        for round in 1..=10u64 {
            let acknowledged = acks.received(131_325, u64::MAX);
            assert!(acknowledged >= last);
            assert!(acknowledged <= round * 131_325, "never more than received");
            last = acknowledged;
        }
        assert_eq!(acks.counting(), Counting::PerWindow);
        assert_eq!(last, (9 * 131_325u64).saturating_sub(HANDSHAKE));
    }

    #[test]
    fn a_total_sent_twice_claims_nothing_new() {
        let mut acks = Acknowledgements::default();
        acks.received(1_000_000, u64::MAX);
        assert_eq!(acks.received(1_000_000, u64::MAX), 1_000_000 - HANDSHAKE);
        assert_eq!(acks.received(1_250_000, u64::MAX), 1_250_000 - HANDSHAKE);
        assert_eq!(acks.counting(), Counting::Total);
    }

    #[test]
    fn a_total_past_2_to_the_32_wraps_into_a_larger_total() {
        let mut acks = Acknowledgements::default();
        acks.received(u32::MAX - 100, u64::MAX);
        let acknowledged = acks.received(200, u64::MAX);
        assert_eq!(acknowledged, u64::from(u32::MAX) - 100 + 200 - HANDSHAKE);
    }

    #[test]
    fn a_total_that_wraps_at_2_to_the_31_keeps_growing() {
        let mut acks = Acknowledgements::default();
        acks.received(0x7FFF_F000, u64::MAX);
        let acknowledged = acks.received(0x2000, u64::MAX);
        assert_eq!(acknowledged, 0x7FFF_F000 + 0x2000 - HANDSHAKE);
        assert_eq!(acks.counting(), Counting::Total);
    }

    #[test]
    fn nothing_is_acknowledged_beyond_what_was_sent() {
        let mut acks = Acknowledgements::default();
        assert_eq!(acks.received(1_000_000, 500), 500);
    }
}
