//! Resuming inside a fragment: the media times the driver follows so that, after a failure,
//! the fragment cut short is sent again from where its output was confirmed (at a keyframe, by
//! the stage that makes the media) instead of from its start.
//!
//! Three times matter, all on the stream's timeline (the media times stages mark):
//! - the session's origin, its first media time: an output that reports its own time
//!   (ffmpeg's `out_time`) counts from there, so the sink's spans and confirmed time are
//!   given relative to it;
//! - a fragment's start, its first media time when it was sent whole;
//! - the confirmed point: origin plus what the sink confirmed of the session.

use std::time::{Duration, Instant};

use crate::fragment::MediaSpan;

/// A fragment whose output was confirmed part of the way, to be sent again from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ResumePoint {
    sequence: u64,
    /// Its first media time when sent whole. For a fragment resumed where an earlier run left
    /// it (whose start on this run's timeline is not known), the first media time of its first
    /// resumed delivery: later offsets then count from there, which errs towards repeating,
    /// never towards skipping.
    fragment_start: Option<Duration>,
    /// How far past that its output was confirmed, the most any session got.
    offset: Duration,
}

/// What the driver knows of the media times written into the sink.
#[derive(Debug, Default)]
pub(crate) struct MediaClock {
    /// The first media time written in the current sink session.
    session_origin: Option<Duration>,
    /// The fragment being delivered, and the first media time written in its delivery.
    delivery: Option<u64>,
    delivery_start: Option<Duration>,
    resume: Option<ResumePoint>,
    /// The fragment and offset whose confirmation was last saved for a restart, and when.
    saved_progress: Option<(u64, Duration, Instant)>,
    /// Whether the session that failed last confirmed more than every one before it.
    failed_session_progressed: bool,
}

impl MediaClock {
    /// The sink started a new session: its output counts from its first media again.
    pub(crate) fn session_started(&mut self) {
        self.session_origin = None;
    }

    /// The delivery of fragment `sequence` begins.
    pub(crate) fn delivery_started(&mut self, sequence: u64) {
        self.delivery = Some(sequence);
        self.delivery_start = None;
    }

    /// Media of `time` is written.
    pub(crate) fn media_written(&mut self, time: Duration) {
        self.session_origin.get_or_insert(time);
        if self.delivery_start.is_none() {
            self.delivery_start = Some(time);
            if let Some(resume) = &mut self.resume {
                if Some(resume.sequence) == self.delivery && resume.fragment_start.is_none() {
                    resume.fragment_start = Some(time);
                }
            }
        }
    }

    /// The span a stage gave for the current fragment, as the sink sees it: the part sent in
    /// this delivery, relative to the session's origin (the span's start when no stage marks
    /// media times).
    pub(crate) fn span_for_sink(&mut self, span: MediaSpan) -> MediaSpan {
        let origin = *self.session_origin.get_or_insert(span.start);
        let start = self.delivery_start.unwrap_or(span.start);
        MediaSpan {
            start: start.saturating_sub(origin),
            end: span.end.saturating_sub(origin),
        }
    }

    /// Where fragment `sequence`, whose delivery just ended, starts when sent whole: the
    /// start recorded for its resume point, or the first media time of this delivery.
    pub(crate) fn fragment_start(&self, sequence: u64) -> Option<Duration> {
        match self.resume {
            Some(resume) if resume.sequence == sequence => resume.fragment_start,
            _ => self.delivery_start,
        }
    }

    /// How far past `fragment_start` the current session's output is confirmed, given what the
    /// sink confirmed of the session; `None` if not past it or not known.
    pub(crate) fn confirmed_offset(
        &self,
        fragment_start: Option<Duration>,
        confirmed: Option<Duration>,
    ) -> Option<Duration> {
        let point = self.session_origin? + confirmed?;
        point
            .checked_sub(fragment_start?)
            .filter(|offset| !offset.is_zero())
    }

    /// Fragment `sequence` is where an earlier run's output was confirmed up to `offset`.
    pub(crate) fn resume_after_restart(&mut self, sequence: u64, offset: Duration) {
        self.resume = Some(ResumePoint {
            sequence,
            fragment_start: None,
            offset,
        });
    }

    /// Whether `offset` into fragment `sequence` is worth saving for a restart: the first
    /// confirmed point of a fragment, then every `step` more of media, at most once per `step`
    /// of wall-clock time (an unpaced output runs many times faster than real time).
    pub(crate) fn progress_to_save(
        &mut self,
        sequence: u64,
        offset: Duration,
        step: Duration,
    ) -> bool {
        if self.saved_progress.is_some_and(|(saved, at, when)| {
            saved == sequence && (offset < at + step || when.elapsed() < step)
        }) {
            return false;
        }
        self.saved_progress = Some((sequence, offset, Instant::now()));
        true
    }

    /// The session failed; `first_unconfirmed` is the oldest fragment it has not confirmed
    /// whole (its sequence and start), `confirmed` what the sink confirmed of the session.
    /// Remembers how far into that fragment the output got, keeping the most any session got.
    /// Returns whether the session got further than every one before it: a session that only
    /// replayed what was confirmed already made no progress.
    pub(crate) fn session_failed(
        &mut self,
        first_unconfirmed: Option<(u64, Option<Duration>)>,
        confirmed: Option<Duration>,
    ) -> bool {
        self.failed_session_progressed = false;
        let Some((sequence, fragment_start)) = first_unconfirmed else {
            return false;
        };
        let Some(offset) = self.confirmed_offset(fragment_start, confirmed) else {
            return false;
        };
        self.failed_session_progressed = match &mut self.resume {
            Some(resume) if resume.sequence == sequence => {
                let progressed = offset > resume.offset;
                resume.offset = resume.offset.max(offset);
                progressed
            }
            _ => {
                self.resume = Some(ResumePoint {
                    sequence,
                    fragment_start,
                    offset,
                });
                true
            }
        };
        self.failed_session_progressed
    }

    /// What [`Self::session_failed`] said of the session that failed last.
    pub(crate) fn failed_session_progressed(&self) -> bool {
        self.failed_session_progressed
    }

    /// How far past its start fragment `sequence` is to be resumed, if it is.
    pub(crate) fn resume_offset(&self, sequence: u64) -> Option<Duration> {
        self.resume
            .filter(|resume| resume.sequence == sequence)
            .map(|resume| resume.offset)
    }

    /// Where the delivery that just ended began, past the start of fragment `sequence` (what a
    /// resend did not repeat); `None` when it was sent from its start.
    pub(crate) fn resumed_at(&self, sequence: u64) -> Option<Duration> {
        let resume = self.resume.filter(|resume| resume.sequence == sequence)?;
        self.delivery_start?
            .checked_sub(resume.fragment_start?)
            .filter(|at| !at.is_zero())
    }

    /// Fragments up to `sequence` are published: none of them is resumed.
    pub(crate) fn published(&mut self, sequence: u64) {
        if self
            .resume
            .is_some_and(|resume| resume.sequence <= sequence)
        {
            self.resume = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn the_confirmed_point_is_kept_per_fragment_and_only_grows() {
        let mut clock = MediaClock::default();
        clock.delivery_started(2);
        clock.media_written(seconds(30));
        assert_eq!(clock.fragment_start(2), Some(seconds(30)));
        // The session began at 30 s and confirmed 12 s of media.
        assert!(clock.session_failed(Some((2, Some(seconds(30)))), Some(seconds(12))));
        assert_eq!(clock.resume_offset(2), Some(seconds(12)));
        assert_eq!(clock.resume_offset(3), None);

        // The next session starts at the keyframe at 40 s and confirms nothing more than 1 s:
        // no progress.
        clock.session_started();
        clock.delivery_started(2);
        clock.media_written(seconds(40));
        assert_eq!(clock.resumed_at(2), Some(seconds(10)));
        assert_eq!(clock.fragment_start(2), Some(seconds(30)));
        assert!(!clock.session_failed(Some((2, Some(seconds(30)))), Some(seconds(1))));
        assert_eq!(clock.resume_offset(2), Some(seconds(12)), "never less");
        assert!(clock.session_failed(Some((2, Some(seconds(30)))), Some(seconds(5))));
        assert_eq!(clock.resume_offset(2), Some(seconds(15)));

        clock.published(2);
        assert_eq!(clock.resume_offset(2), None);
    }

    #[test]
    fn spans_count_from_the_sessions_first_media() {
        let mut clock = MediaClock::default();
        clock.delivery_started(1);
        // Filler first, then the fragment.
        clock.media_written(seconds(90));
        clock.delivery_started(1);
        clock.media_written(seconds(100));
        let span = clock.span_for_sink(MediaSpan {
            start: seconds(100),
            end: seconds(130),
        });
        assert_eq!(
            span,
            MediaSpan {
                start: seconds(10),
                end: seconds(40)
            }
        );
        // Without media times, the first span is the origin.
        let mut clock = MediaClock::default();
        clock.delivery_started(1);
        let span = clock.span_for_sink(MediaSpan {
            start: seconds(6),
            end: seconds(8),
        });
        assert_eq!(span.end, seconds(2));
        assert_eq!(clock.fragment_start(1), None);
        clock.session_failed(Some((1, None)), Some(seconds(1)));
        assert_eq!(clock.resume_offset(1), None);
    }

    #[test]
    fn a_fragment_resumed_after_a_restart_counts_from_its_first_resumed_media() {
        let mut clock = MediaClock::default();
        clock.resume_after_restart(1, seconds(14));
        clock.delivery_started(1);
        assert_eq!(clock.resume_offset(1), Some(seconds(14)));
        // The cut began at the keyframe at 12 s of the fragment, 12 s on this run's timeline.
        clock.media_written(seconds(12));
        assert_eq!(clock.fragment_start(1), Some(seconds(12)));
        // Confirmed up to 20 s: 8 s past where this run began it, less than the saved 14 s.
        assert!(!clock.session_failed(Some((1, Some(seconds(12)))), Some(seconds(8))));
        assert_eq!(clock.resume_offset(1), Some(seconds(14)));
        assert!(clock.session_failed(Some((1, Some(seconds(12)))), Some(seconds(16))));
        assert_eq!(clock.resume_offset(1), Some(seconds(16)));
    }

    #[test]
    fn progress_is_saved_every_step_of_media_and_of_wall_clock() {
        let mut clock = MediaClock::default();
        let step = Duration::from_millis(50);
        assert!(clock.progress_to_save(1, seconds(1), step));
        assert!(!clock.progress_to_save(1, seconds(9), step), "too soon");
        std::thread::sleep(step);
        assert!(clock.progress_to_save(1, seconds(9), step));
        assert!(
            clock.progress_to_save(2, seconds(1), step),
            "a new fragment at once"
        );
    }
}
