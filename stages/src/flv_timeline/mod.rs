//! The `flv-timeline` stage: joins FLV files into one continuous FLV stream.
//!
//! Each upstream file is a complete FLV file (header, `onMetaData`, sequence headers, then
//! audio and video tags) whose timestamps start at zero. Written one after another into one
//! ffmpeg, the second file header is read as garbage ("Unable to seek to the next packet") and
//! everything after it is lost. This stage writes one file header per session, drops every
//! script tag (`onMetaData` describes one file, not the stream), forwards each decoder
//! configuration (sequence header) once and drops repeats of it, drops end-of-sequence tags,
//! and moves every tag's timestamp onto one timeline:
//!
//! `new = old − (first timestamp of this file) + offset`
//!
//! where `offset` is where the previous file ended: its last tag of each stream plus that
//! stream's last interval between tags, the later of the two. FLV counts milliseconds, so
//! each join is exact to the millisecond; timestamps wrap after 2³² ms (49.7 days), as RTMP's
//! do. A different decoder configuration starts a new session (a new file header and the new
//! configuration follow). It streams: tag data passes through as slices of the incoming
//! chunks, each tag once it is whole (a tag cut short is dropped); only sequence headers and
//! script tags are copied.
//!
//! When the sink is paced and upstream is late, it plays a filler between files (H.264 and AAC
//! streams; see `filling`).
//!
//! A file sent again after a failure from inside ([`Stage::resume_fragment`]) loses its media
//! tags before the last keyframe at or before the confirmed point (see `resume_cut`); the
//! session's file header and sequence headers still come first.

mod filling;
mod reading;
mod saved;
mod stream_state;
#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    ComponentContext, ComponentError, FragmentInfo, MediaSpan, Stage, StageConfig, StageError,
    StageOutput,
};
use streampub_core::register_stage;

use self::reading::FlvFile;
use self::saved::SavedFlvTimeline;
use self::stream_state::{send_tags, FlvSnapshot, FlvTimeline};
use crate::filler::FillerSource;
use crate::resume_cut::ResumeCut;
use crate::session_options::SessionOptions;
use crate::timeline_engine::{OpenFile, TimelineEngine, TimelineFormat};

/// The stage's `type`.
pub const FLV_TIMELINE_STAGE: &str = "flv-timeline";

register_stage!(
    FlvTimelineConfig,
    FLV_TIMELINE_STAGE,
    "Joins FLV files into one continuous FLV stream: one header, continuous timestamps",
);

/// Joins FLV files into one continuous FLV stream.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlvTimelineConfig {
    #[serde(flatten)]
    pub session: SessionOptions,
}

#[async_trait]
impl StageConfig for FlvTimelineConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        self.session.validate()
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(
            FlvTimelineStage::default().with_session_options(&self.session, FillerSource::None),
        ))
    }
}

/// The `flv-timeline` stage.
pub(crate) type FlvTimelineStage = TimelineEngine<FlvTimeline>;

impl TimelineFormat for FlvTimeline {
    const STAGE: &'static str = FLV_TIMELINE_STAGE;
    const USABLE: &'static str = "usable FLV";
    type Snapshot = FlvSnapshot;
    type Saved = SavedFlvTimeline;

    fn begin_file(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<FlvFile, StageError> {
        if self.header_written
            && self
                .session
                .ends_before(&fragment.name, Duration::from_millis(self.offset), output)
        {
            self.header_written = false;
        }
        // The stream takes over from any filler; a later gap starts the clip afresh.
        self.filler.stop();
        Ok(FlvFile::new(self.filler.wants_shape().then(Vec::new)))
    }

    fn end_file(
        &mut self,
        file: OpenFile<FlvFile>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        // A file resumed past its last keyframe: from that keyframe.
        if let Some(cut) = self.resume.take() {
            send_tags(cut.finish(), output);
        }
        let start = self.offset;
        let error = file.problem_at_end().map(|problem| file.error(problem));
        self.offset += file.duration();
        match error {
            Some(error) => Err(error),
            None => {
                self.prepare_filler(&file);
                output.mark_media_span(MediaSpan {
                    start: Duration::from_millis(start),
                    end: Duration::from_millis(self.offset),
                });
                Ok(())
            }
        }
    }

    fn abort_file(&mut self, file: Option<OpenFile<FlvFile>>) {
        self.resume = None;
        // What was emitted of the file stays on the timeline.
        if let Some(file) = file {
            self.offset += file.duration();
        }
    }

    fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        // In a gap, the new session's decoder has nothing to refer to: the filler goes on
        // from its keyframe.
        self.filler.restart_at_keyframe();
        self.header_written = false;
        self.write_session_start(output);
        Ok(())
    }

    fn fill(&mut self, until: Duration, output: &mut StageOutput) -> Result<(), StageError> {
        self.fill_until(until, output)
    }

    fn resume_fragment(&mut self, offset: Duration) {
        self.resume = Some(ResumeCut::new(offset));
    }

    fn snapshot(&self) -> FlvSnapshot {
        FlvSnapshot {
            offset: self.offset,
            configurations: self.configurations.clone(),
            header: self.header,
        }
    }

    fn rewind_to(&mut self, snapshot: FlvSnapshot) {
        self.offset = snapshot.offset;
        self.configurations = snapshot.configurations;
        self.header = snapshot.header;
    }

    fn saved(&self) -> Option<SavedFlvTimeline> {
        Some(SavedFlvTimeline::of(self))
    }

    fn restore(&mut self, saved: SavedFlvTimeline) -> Result<(), StageError> {
        saved.restore_into(self)
    }
}
