//! Sending a fragment again from inside ([`streampub_core::plugin::Stage::resume_fragment`]): the
//! media units (tags, PES packets) of a fragment, in decode order, are dropped up to the last
//! random-access point (a video keyframe; any audio frame of a stream without video) at or
//! before the confirmed offset, and sent from there.
//!
//! Units are seen one at a time, so which keyframe is the last one before the offset is known
//! only once a unit past the offset (or the fragment's end) comes: the units from the latest
//! keyframe are held until then. That is at most one GOP of media (about 0.5 MB for a 2-s GOP
//! at 2 Mbit/s), held only while a resumed fragment is being cut. A fragment with no keyframe
//! at or before the offset (one that does not begin with a keyframe, and whose first comes
//! later) is held from its start and sent whole, as if it were not resumed: a resume never
//! starts a session on a frame that needs an earlier one.

use std::time::Duration;

/// The cut of one fragment that is sent again from inside.
#[derive(Debug)]
pub(crate) struct ResumeCut<T> {
    /// How far past the fragment's first media time its output was confirmed.
    offset: Duration,
    /// The fragment's first media time, once its first unit is seen.
    first: Option<Duration>,
    /// The units from the latest keyframe at or before the offset (from the start before the
    /// first keyframe), and that keyframe's time.
    held: Vec<T>,
    held_from: Option<Duration>,
}

impl<T> ResumeCut<T> {
    pub(crate) fn new(offset: Duration) -> Self {
        Self {
            offset,
            first: None,
            held: Vec::new(),
            held_from: None,
        }
    }

    /// The time of the keyframe the fragment resumes at, once one at or before the offset is
    /// known.
    pub(crate) fn keyframe_time(&self) -> Option<Duration> {
        self.held_from
    }

    /// Takes the fragment's next unit of media, at `time`; pushes onto `send` what is to be
    /// sent now. Returns `true` once the cut is done: this and every later unit go out as
    /// usual, and the cut can be dropped.
    pub(crate) fn take(
        &mut self,
        time: Duration,
        random_access: bool,
        unit: T,
        send: &mut Vec<T>,
    ) -> bool {
        let first = *self.first.get_or_insert(time);
        if time.saturating_sub(first) > self.offset {
            send.append(&mut self.held);
            send.push(unit);
            return true;
        }
        if random_access {
            self.held.clear();
            self.held.push(unit);
            self.held_from = Some(time);
        } else if self.held_from.is_none_or(|from| time >= from) {
            // Units of a time before the keyframe (a stream muxed a little late) stay out.
            self.held.push(unit);
        }
        false
    }

    /// The fragment ended before a unit past the offset: what is held (from its last
    /// keyframe) is sent, so nothing after the confirmed part is skipped.
    pub(crate) fn finish(self) -> Vec<T> {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs frames (time in seconds, keyframe, name) through a cut at `offset` seconds.
    fn cut(offset: u64, frames: &[(u64, bool, char)]) -> String {
        let mut cut = Some(ResumeCut::new(Duration::from_secs(offset)));
        let mut sent = Vec::new();
        for &(time, key, name) in frames {
            match &mut cut {
                Some(active) => {
                    if active.take(Duration::from_secs(time), key, name, &mut sent) {
                        cut = None;
                    }
                }
                None => sent.push(name),
            }
        }
        if let Some(cut) = cut {
            sent.extend(cut.finish());
        }
        sent.into_iter().collect()
    }

    const GOPS: &[(u64, bool, char)] = &[
        (10, true, 'A'),
        (11, false, 'b'),
        (12, true, 'C'),
        (13, false, 'd'),
        (14, true, 'E'),
        (15, false, 'f'),
    ];

    #[test]
    fn the_fragment_resumes_at_the_last_keyframe_at_or_before_the_offset() {
        assert_eq!(cut(0, GOPS), "AbCdEf");
        assert_eq!(cut(1, GOPS), "AbCdEf");
        assert_eq!(cut(2, GOPS), "CdEf", "a keyframe right at the offset");
        assert_eq!(cut(3, GOPS), "CdEf");
        assert_eq!(
            cut(5, GOPS),
            "Ef",
            "the fragment ends first: from its last keyframe"
        );
        assert_eq!(cut(60, GOPS), "Ef");
    }

    #[test]
    fn without_a_keyframe_before_the_offset_the_fragment_is_sent_whole() {
        let frames = [(0, false, 'x'), (1, true, 'A'), (2, false, 'b')];
        assert_eq!(cut(1, &frames), "Ab");
        assert_eq!(
            cut(0, &frames),
            "xAb",
            "its first keyframe comes after the offset"
        );
        assert_eq!(cut(5, &[(0, false, 'x'), (1, false, 'y')]), "xy");
        // A unit of a time before the keyframe, muxed after it, stays out.
        assert_eq!(
            cut(
                3,
                &[
                    (0, true, 'A'),
                    (2, true, 'B'),
                    (1, false, 'a'),
                    (4, false, 'c')
                ]
            ),
            "Bc"
        );
    }
}
