//! What one RTMP session has had confirmed: bytes after the handshake, the fragments whose
//! last byte lies within them, and the media time of the last tag within them. Shared by the
//! connection's task, which moves it, and the sink, which reports it to the runtime.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use streampub_core::plugin::SinkError;

/// A session's confirmed progress.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes after the handshake the server (or, for a server that sends no
    /// acknowledgements, the peer's TCP) has confirmed.
    confirmed: u64,
    /// Where each fragment ended in this session and not yet confirmed ended, oldest first.
    fragment_ends: VecDeque<u64>,
    /// Fragments the sink has ended whose end the session's task has not reached yet (still
    /// in the queue between them): unconfirmed too.
    ends_queued: usize,
    /// Where each media tag not yet confirmed ended, and its timestamp.
    media: VecDeque<(u64, u32)>,
    /// The timestamp of the session's first media tag (not a sequence header or metadata):
    /// its media time zero, as the runtime counts it.
    first_timestamp: Option<u32>,
    /// The timestamp of the last tag confirmed.
    confirmed_timestamp: Option<u32>,
    /// Since when the server has let the stream be published.
    pub live_since: Option<Instant>,
    /// Why the session ended, if it failed.
    pub failure: Option<SinkError>,
}

impl Progress {
    /// A tag ending at `end` (bytes after the handshake) with `timestamp` was sent; `media`:
    /// it is a frame, not a sequence header or metadata.
    pub(crate) fn tag_sent(&mut self, end: u64, timestamp: u32, media: bool) {
        if media {
            self.first_timestamp.get_or_insert(timestamp);
        }
        self.media.push_back((end, timestamp));
    }

    /// The sink ended a fragment; its end is on its way to the session.
    pub(crate) fn fragment_queued(&mut self) {
        self.ends_queued += 1;
    }

    /// A fragment ended at `end` in the session.
    pub(crate) fn fragment_ended(&mut self, end: u64) {
        self.ends_queued = self.ends_queued.saturating_sub(1);
        if end > self.confirmed {
            self.fragment_ends.push_back(end);
        }
    }

    /// Everything up to `offset` is confirmed.
    pub(crate) fn confirm(&mut self, offset: u64) {
        if offset <= self.confirmed {
            return;
        }
        self.confirmed = offset;
        while let Some(&(end, timestamp)) = self.media.front() {
            if end > offset {
                break;
            }
            self.confirmed_timestamp = Some(timestamp);
            self.media.pop_front();
        }
        while self.fragment_ends.front().is_some_and(|end| *end <= offset) {
            self.fragment_ends.pop_front();
        }
    }

    /// Whether anything sent in this session (a tag, a fragment's end) is not confirmed.
    pub(crate) fn waits_for_confirmation(&self) -> bool {
        !self.media.is_empty() || self.unconfirmed() > 0
    }

    /// How many of the fragments ended in this session are not confirmed.
    pub(crate) fn unconfirmed(&self) -> usize {
        self.fragment_ends.len() + self.ends_queued
    }

    /// The media time (from the session's first tag) up to which the session is confirmed.
    pub(crate) fn confirmed_output_time(&self) -> Option<Duration> {
        let (first, last) = (self.first_timestamp?, self.confirmed_timestamp?);
        // Headers confirmed before the first frame: nothing of the media yet.
        let since_first = last.wrapping_sub(first);
        (since_first < 1 << 31).then(|| Duration::from_millis(u64::from(since_first)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_is_confirmed_once_its_last_byte_is_and_media_time_follows_the_tags() {
        let mut progress = Progress::default();
        // A sequence header at the session's start time, then frames from a later keyframe.
        progress.tag_sent(50, 4_000, false);
        progress.tag_sent(100, 5_000, true);
        progress.tag_sent(200, 5_040, true);
        progress.fragment_queued();
        progress.fragment_ended(200);
        progress.tag_sent(300, 5_080, true);
        progress.fragment_queued();
        assert_eq!(progress.unconfirmed(), 2, "an end still queued counts");
        progress.fragment_ended(300);
        assert_eq!(progress.unconfirmed(), 2);
        assert_eq!(progress.confirmed_output_time(), None);
        progress.confirm(250);
        assert_eq!(progress.unconfirmed(), 1);
        assert_eq!(
            progress.confirmed_output_time(),
            Some(Duration::from_millis(40))
        );
        progress.confirm(300);
        assert_eq!(progress.unconfirmed(), 0);
        assert_eq!(
            progress.confirmed_output_time(),
            Some(Duration::from_millis(80))
        );
    }

    #[test]
    fn a_fragment_half_sent_waits_for_confirmation_too() {
        let mut progress = Progress::default();
        assert!(!progress.waits_for_confirmation());
        // Inside a fragment: no fragment has ended, its tags wait all the same.
        progress.tag_sent(100, 0, true);
        assert!(progress.waits_for_confirmation());
        progress.confirm(100);
        assert!(!progress.waits_for_confirmation());
        progress.fragment_queued();
        assert!(progress.waits_for_confirmation(), "its end is on its way");
    }
}
