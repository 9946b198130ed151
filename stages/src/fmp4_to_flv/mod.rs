//! The `fmp4-to-flv` stage: turns the continuous fragmented-MP4 stream of the `fmp4-timeline`
//! stage into FLV tags, so that ffmpeg reads FLV (`-f flv`): its FLV demuxer keeps no index,
//! so its memory stays flat over weeks (its MP4 demuxer grows about 2.5 KB per second of media),
//! and each sample can leave as soon as it is written (the MP4 demuxer waits for the next box).
//!
//! Per session: one FLV file header, the AVC sequence header (the `avcC` box, as it is) and the
//! AAC one (the AudioSpecificConfig from `esds`) before the first sample, then one tag per
//! sample, audio and video interleaved by decode time. A tag's timestamp is the sample's decode
//! time in milliseconds and its composition time the presentation time in milliseconds minus
//! that, both rounded from the exact tick values (never summed from rounded durations, which
//! would drift). Samples are AVCC / raw AAC already and pass unchanged. With `enhanced_rtmp`,
//! HEVC, AV1, VP9 and Opus become enhanced RTMP's FourCC tags (see `flv::tags`); without it
//! they are refused, since FLV without enhanced RTMP carries only H.264 and AAC.
//!
//! A `moof`'s `mdat` is held whole (one fragment of the upstream file, bounded by
//! `MAX_MEDIA_DATA`) to interleave its tracks, as slices of the chunks read: samples are not
//! copied (unless one spans two chunks), and no buffer the size of the box is allocated. Such
//! buffers, allocated and freed for every `moof`, made glibc's allocator hold on to a growing,
//! fragmented heap: streampub's RSS went from 32 to 51 MB over 2,880 fragments; with slices it
//! stays at 11 MB (`scripts/ffmpeg-memory`, BENCHMARKS.md).
//!
//! A fragment sent again after a failure from inside ([`Stage::resume_fragment`]) loses its
//! tags before the last keyframe at or before the confirmed point (see `resume_cut`); the
//! session's headers and sequence headers come before the first tag sent, as always.
//!
//! The tags of an `mdat` are written when the next box begins or the fragment ends, not at
//! once: a fragment cut short has its last `mdat` completed with zeros by `fmp4-timeline` (to
//! keep a byte stream in sync) and then fails; its held tags are dropped, so no zeros reach
//! ffmpeg as samples (a viewer would see corrupt frames until the next keyframe).

mod reading;
mod stream_state;
#[cfg(test)]
mod tests;
mod writing;

use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    ComponentContext, ComponentError, FragmentInfo, HumanDuration, Stage, StageConfig, StageError,
    StageOutput,
};
use streampub_core::register_stage;

use self::reading::Fmp4ToFlvFile;
use self::stream_state::Fmp4ToFlv;
use crate::filler::FillerSource;
use crate::resume_cut::ResumeCut;
use crate::session_options::SessionOptions;
use crate::timeline_engine::{OpenFile, TimelineEngine, TimelineFormat};

/// The stage's `type`.
pub const FMP4_TO_FLV_STAGE: &str = "fmp4-to-flv";

register_stage!(
    Fmp4ToFlvConfig,
    FMP4_TO_FLV_STAGE,
    "Turns the continuous fMP4 of fmp4-timeline into FLV tags (H.264 and AAC; HEVC, AV1, VP9 and Opus as enhanced RTMP)",
);

/// Turns fMP4 into FLV; put it after `fmp4-timeline`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fmp4ToFlvConfig {
    #[serde(flatten)]
    pub session: SessionOptions,
    /// The timestamp of the first session's first tag (later sessions start at 0). Only for
    /// trying what happens late in a long run: e.g. `4h39m37s`, where timestamps begin to need
    /// FLV's extended byte (past 16,777,215 ms), or just under `session_limit`.
    #[serde(default)]
    pub start_timestamp: HumanDuration,
    /// Write HEVC, AV1 and VP9 video and Opus audio as enhanced RTMP's FourCC tags, for a
    /// sink that speaks it (the `rtmp` sink sets this on the stage it puts in front of
    /// itself). Off, such tracks fail with the ways out: ffmpeg's FLV reader before 6.1 takes
    /// only H.264 and AAC.
    #[serde(default)]
    pub enhanced_rtmp: bool,
}

#[async_trait]
impl StageConfig for Fmp4ToFlvConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        self.session.validate()?;
        if self.start_timestamp >= self.session.session_limit {
            return Err(ComponentError::field(
                "start_timestamp",
                format!(
                    "must be less than session_limit ({}): a session cannot start past its end",
                    self.session.session_limit
                ),
            ));
        }
        Ok(())
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(
            Fmp4ToFlvStage::default()
                .with_session_options(&self.session, FillerSource::Generate)
                .starting_at(self.start_timestamp.get())
                .with_enhanced_rtmp(self.enhanced_rtmp),
        ))
    }
}

/// The `fmp4-to-flv` stage.
pub(crate) type Fmp4ToFlvStage = TimelineEngine<Fmp4ToFlv>;

impl Fmp4ToFlvStage {
    /// Whether enhanced RTMP's codecs are written (else refused).
    pub(crate) fn with_enhanced_rtmp(mut self, enabled: bool) -> Self {
        self.format_mut().enhanced_rtmp = enabled;
        self
    }

    /// The first session's first tag gets `timestamp` instead of 0.
    pub(crate) fn starting_at(mut self, timestamp: Duration) -> Self {
        self.format_mut().next_session_timestamp = timestamp.as_millis() as i128;
        self
    }
}

impl TimelineFormat for Fmp4ToFlv {
    const STAGE: &'static str = FMP4_TO_FLV_STAGE;
    const USABLE: &'static str = "convertible to FLV";
    /// The timeline is `fmp4-timeline`'s; a fragment sent again is converted afresh.
    type Snapshot = ();
    type Saved = ();

    fn begin_file(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<Fmp4ToFlvFile, StageError> {
        // The stream takes over from any filler; a later gap starts the clip afresh.
        self.filler.stop();
        if let Some(zero) = self.session_zero {
            let timestamp = u64::try_from(self.last_written - zero).unwrap_or(0);
            let timestamp = Duration::from_millis(timestamp);
            if self.session.ends_before(&fragment.name, timestamp, output) {
                self.session_zero = None;
                self.headers_due = true;
            }
        }
        Ok(Fmp4ToFlvFile::default())
    }

    fn end_file(
        &mut self,
        mut file: OpenFile<Fmp4ToFlvFile>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        self.finish_boxes(&mut file, output)?;
        if let Some(cut) = self.resume.take() {
            self.write_tags(cut.finish(), self.stream_configurations(), output);
        }
        Ok(())
    }

    fn abort_file(&mut self, _file: Option<OpenFile<Fmp4ToFlvFile>>) {
        // The held tags of its last `mdat` go with the file.
        self.resume = None;
    }

    fn start_session(&mut self, _output: &mut StageOutput) -> Result<(), StageError> {
        // The new session gets the init segment again (the timeline stage sends it), then its
        // own file header and sequence headers before its first sample, timestamps from 0.
        self.headers_due = true;
        self.session_zero = None;
        self.session.end();
        self.next_session_timestamp = 0;
        self.filler.restart_at_keyframe();
        Ok(())
    }

    fn begin_session_headers(&mut self) -> Option<Fmp4ToFlvFile> {
        Some(Fmp4ToFlvFile::default())
    }

    fn end_session_headers(
        &mut self,
        mut headers: OpenFile<Fmp4ToFlvFile>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        self.finish_boxes(&mut headers, output)
    }

    fn fill(&mut self, until: Duration, output: &mut StageOutput) -> Result<(), StageError> {
        let from = self
            .content_end_ms
            .ok_or_else(|| StageError::new("filler: no media has been written yet"))?;
        let tags = self
            .filler
            .tags_until(from, until.as_millis() as i128)
            .map_err(|problem| StageError::new(format!("filler: {problem}")))?;
        let configurations = self.filler.configurations();
        self.write_tags(tags, configurations, output);
        Ok(())
    }

    fn resume_fragment(&mut self, offset: Duration) {
        self.resume = Some(ResumeCut::new(offset));
    }

    fn snapshot(&self) {}

    fn rewind_to(&mut self, _snapshot: ()) {}

    fn saved(&self) -> Option<()> {
        None
    }

    fn restore(&mut self, _saved: ()) -> Result<(), StageError> {
        Ok(())
    }
}
