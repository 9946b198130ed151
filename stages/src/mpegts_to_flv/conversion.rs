//! PES packets as FLV tags: an H.264 access unit becomes one AVCC tag (its parameter sets
//! become the sequence header), an AAC PES one raw tag per ADTS frame (its header becomes the
//! AudioSpecificConfig). Times are the PES timestamps, unwrapped past the 33-bit clock's wrap
//! and rounded to milliseconds from exact ticks (an AAC frame's from the PES's start plus
//! 1024 samples per frame before it, never from rounded durations, which would drift).

use bytes::Bytes;

use super::demux::Pes;
use crate::formats::flv::tags::{milliseconds, rounded_division, Configuration, FlvCodec, Tag};
use crate::formats::flv::MediaKind;
use crate::formats::h264::{decoder_configuration_record, AccessUnit};
use crate::formats::mpegts::adts::split_frames;
use crate::formats::mpegts::{TICKS_PER_SECOND, TIMESTAMP_MODULUS};
use crate::stream_shape::{AudioShape, StreamShape, VideoShape};

/// Samples per AAC frame.
const AAC_FRAME_SAMPLES: i128 = 1024;
/// A step between two timestamps this long or longer is taken as going back (and a wrap).
const HALF_CLOCK: u64 = TIMESTAMP_MODULUS / 2;

/// The 33-bit clock as one that does not wrap.
#[derive(Debug, Default)]
struct UnwrappedClock {
    last: Option<(u64, i128)>,
}

impl UnwrappedClock {
    fn ticks(&mut self, value: u64) -> i128 {
        let unwrapped = match self.last {
            None => i128::from(value),
            Some((last, unwrapped)) => {
                let step = (value + TIMESTAMP_MODULUS - last) % TIMESTAMP_MODULUS;
                if step < HALF_CLOCK {
                    unwrapped + i128::from(step)
                } else {
                    unwrapped - i128::from(TIMESTAMP_MODULUS - step)
                }
            }
        };
        self.last = Some((value, unwrapped));
        unwrapped
    }
}

/// What the conversion keeps from one PES to the next.
#[derive(Debug, Default)]
pub(super) struct Conversion {
    clock: UnwrappedClock,
    /// The parameter sets last seen, and the sequence header they make.
    sequence_parameter_sets: Vec<Vec<u8>>,
    picture_parameter_sets: Vec<Vec<u8>>,
    video: Option<Configuration>,
    /// The decode time (ticks) of the last video frame, and the last step between two.
    last_video_ticks: Option<i128>,
    pub(super) frame_interval: Option<u32>,
    /// The last ADTS header, and the sequence header it makes.
    adts_header: Option<[u8; 7]>,
    audio: Option<Configuration>,
    /// Video frames met before any parameter sets, which no decoder can use.
    pub(super) undecodable_frames: u64,
}

impl Conversion {
    /// The tags of `pes`, appended to `tags`.
    pub(super) fn convert(&mut self, pes: Pes, tags: &mut Vec<Tag>) -> Result<(), String> {
        let dts = self.clock.ticks(pes.dts);
        let pts = self.clock.ticks(pes.pts);
        match pes.kind {
            MediaKind::Video => self.video_tag(&pes, dts, pts, tags),
            MediaKind::Audio => self.audio_tags(&pes, pts, tags),
        }
    }

    fn video_tag(
        &mut self,
        pes: &Pes,
        dts: i128,
        pts: i128,
        tags: &mut Vec<Tag>,
    ) -> Result<(), String> {
        if let Some(last) = self.last_video_ticks.replace(dts) {
            let step = dts - last;
            if step > 0 && step < i128::from(TICKS_PER_SECOND) * 10 {
                self.frame_interval = Some(step as u32);
            }
        }
        let unit = AccessUnit::from_annex_b(&pes.data);
        // A unit too short to name its profile and level would make no record.
        let new_sequence_sets = unit
            .sequence_parameter_sets
            .first()
            .is_some_and(|first| first.len() >= 4);
        let new_picture_sets = !unit.picture_parameter_sets.is_empty();
        if new_sequence_sets {
            self.sequence_parameter_sets = unit.sequence_parameter_sets;
        }
        if new_picture_sets {
            self.picture_parameter_sets = unit.picture_parameter_sets;
        }
        // The record changes only with the parameter sets: not made again for every frame.
        if new_sequence_sets || new_picture_sets || self.video.is_none() {
            let record = match decoder_configuration_record(
                &self.sequence_parameter_sets,
                &self.picture_parameter_sets,
            ) {
                Ok(record) => record,
                Err(_) if self.video.is_none() => {
                    self.undecodable_frames += 1;
                    return Ok(());
                }
                Err(problem) => return Err(format!("its H.264 has {problem}")),
            };
            if self
                .video
                .as_ref()
                .is_none_or(|known| known.bytes != record)
            {
                self.video = Some(Configuration {
                    codec: FlvCodec::Avc,
                    bytes: Bytes::from(record),
                });
            }
        }
        if unit.avcc.is_empty() {
            return Ok(());
        }
        let decode_ms = milliseconds(dts, TICKS_PER_SECOND as u32);
        let presentation_ms = milliseconds(pts, TICKS_PER_SECOND as u32);
        let duration_ms = self.frame_interval.map_or(0, |interval| {
            milliseconds(interval.into(), TICKS_PER_SECOND as u32)
        });
        tags.push(Tag::frame(
            self.video.clone().expect("set above"),
            (decode_ms, duration_ms),
            unit.idr || pes.random_access,
            presentation_ms - decode_ms,
            Bytes::from(unit.avcc),
        ));
        Ok(())
    }

    fn audio_tags(&mut self, pes: &Pes, pts: i128, tags: &mut Vec<Tag>) -> Result<(), String> {
        for (index, frame) in split_frames(&pes.data)?.into_iter().enumerate() {
            let header: [u8; 7] = frame.header.try_into().expect("an ADTS header is 7 bytes");
            if self
                .adts_header
                .is_none_or(|known| !same_configuration(&known, &header))
            {
                let shape = AudioShape::from_adts_header(&header)?;
                self.adts_header = Some(header);
                self.audio = Some(Configuration {
                    codec: FlvCodec::Aac,
                    bytes: shape.configuration,
                });
            }
            let rate = i128::from(frame.sample_rate);
            // Exact: ticks × rate, plus 90 kHz ticks × rate per frame before this one.
            let scaled = pts * rate + index as i128 * AAC_FRAME_SAMPLES * 90_000;
            let decode_ms = rounded_division(scaled * 1000, 90_000 * rate);
            let duration_ms = rounded_division(AAC_FRAME_SAMPLES * 1000, rate);
            tags.push(Tag::frame(
                self.audio.clone().expect("set above"),
                (decode_ms, duration_ms),
                false,
                0,
                Bytes::copy_from_slice(frame.raw),
            ));
        }
        Ok(())
    }

    /// The stream has another video stream: what was known of the last one goes.
    pub(super) fn forget_video(&mut self) {
        self.sequence_parameter_sets.clear();
        self.picture_parameter_sets.clear();
        self.video = None;
        self.last_video_ticks = None;
        self.frame_interval = None;
    }

    /// What the stream is, for `onMetaData`: as far as its parameter sets, frame rate and
    /// ADTS headers say.
    pub(super) fn shape(&self) -> Option<StreamShape> {
        let video = self.sequence_parameter_sets.first().and_then(|unit| {
            let interval = self.frame_interval?;
            VideoShape::from_sps_unit(unit, (TICKS_PER_SECOND as u32, interval)).ok()
        });
        let audio = self
            .adts_header
            .and_then(|header| AudioShape::from_adts_header(&header).ok());
        (video.is_some() || audio.is_some()).then_some(StreamShape { video, audio })
    }
}

/// Whether two ADTS headers say the same AudioSpecificConfig (profile, rate, channels), not
/// minding the lengths and buffer fullness that change from frame to frame.
fn same_configuration(one: &[u8; 7], other: &[u8; 7]) -> bool {
    one[2] & 0xfd == other[2] & 0xfd && one[3] & 0xc0 == other[3] & 0xc0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_goes_on_past_the_33_bit_wrap_and_steps_back_for_b_frames() {
        let mut clock = UnwrappedClock::default();
        let start = TIMESTAMP_MODULUS - 3000;
        assert_eq!(clock.ticks(start), i128::from(start));
        assert_eq!(clock.ticks(1000), i128::from(start) + 4000);
        assert_eq!(
            clock.ticks(TIMESTAMP_MODULUS - 500),
            i128::from(start) + 2500
        );
        assert_eq!(clock.ticks(4000), i128::from(start) + 7000);
    }

    #[test]
    fn aac_frames_are_timed_from_their_pes_without_drift() {
        let mut conversion = Conversion::default();
        // Three ADTS frames at 44.1 kHz (index 4), stereo, LC.
        let frame = |length: usize| {
            let mut frame = vec![0xff, 0xf1, 0x50, 0x80, 0, 0, 0xfc];
            frame[3] |= (length >> 11) as u8 & 0x03;
            frame[4] = (length >> 3) as u8;
            frame[5] = ((length & 0x07) << 5) as u8 | 0x1f;
            frame.resize(length, 0x21);
            frame
        };
        let pes = Pes {
            kind: MediaKind::Audio,
            pts: 90_000,
            dts: 90_000,
            data: [frame(20), frame(9), frame(12)].concat(),
            random_access: false,
        };
        let mut tags = Vec::new();
        conversion.convert(pes, &mut tags).unwrap();
        let times: Vec<i128> = tags.iter().map(|tag| tag.decode_ms).collect();
        // 1000 ms, then 1024/44100 s (23.22 ms) per frame, each rounded on its own.
        assert_eq!(times, [1000, 1023, 1046]);
        assert_eq!(
            tags[0].configuration.bytes.as_ref(),
            [0x12, 0x10],
            "AAC-LC, 44.1 kHz, stereo"
        );
    }
}
