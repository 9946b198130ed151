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
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    ComponentContext, ComponentError, FragmentInfo, MediaSpan, Stage, StageConfig, StageError,
    StageOutput,
};
use streampub_core::register_stage;

use self::reading::FlvFile;
use self::saved::SavedFlvTimeline;
use crate::filler::FillerSource;
use crate::flv::filler::Filler;
use crate::flv::{MediaKind, TagHeader, TagKind, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN};
use crate::resume_cut::ResumeCut;
use crate::session_limit::SessionLimit;
use crate::session_options::{SessionOptions, SessionSettings};
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

/// The decoder configurations of the stream: the data of its sequence header tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Configurations {
    video: Option<Bytes>,
    audio: Option<Bytes>,
}

impl Configurations {
    fn get(&self, kind: TagKind) -> Option<&Bytes> {
        match kind {
            TagKind::Video => self.video.as_ref(),
            _ => self.audio.as_ref(),
        }
    }

    fn get_mut(&mut self, kind: TagKind) -> &mut Option<Bytes> {
        match kind {
            TagKind::Video => &mut self.video,
            _ => &mut self.audio,
        }
    }
}

/// The state at the start of a fragment, for a rewind.
#[derive(Debug, Clone)]
pub(crate) struct FlvSnapshot {
    offset: u64,
    configurations: Configurations,
    header: Option<[u8; 9]>,
}

/// The `flv-timeline` stage.
pub(crate) type FlvTimelineStage = TimelineEngine<FlvTimeline>;

/// The FLV part of the `flv-timeline` stage: the stream's state between files.
#[derive(Debug, Default)]
pub(crate) struct FlvTimeline {
    /// The file header of the stream (from its first file, data offset 9).
    header: Option<[u8; 9]>,
    /// Whether the current session has had its file header.
    header_written: bool,
    configurations: Configurations,
    /// Where the next file starts, in milliseconds.
    offset: u64,
    /// Per kind (video, audio), the decoder configuration (sequence header body) the session
    /// got last: the stream's, or the filler's during a gap.
    sent: [Option<Bytes>; 2],
    filler: Filler,
    session: SessionLimit,
    /// While a file sent again from inside is being cut: its tags (time, parts).
    resume: Option<ResumeCut<(Duration, Vec<Bytes>)>>,
}

impl SessionSettings for FlvTimeline {
    fn set_session_limit(&mut self, limit: SessionLimit) {
        self.session = limit;
    }

    fn set_filler(&mut self, source: FillerSource, ffmpeg: PathBuf) {
        self.filler = Filler::new(source, ffmpeg);
    }
}

impl FlvTimeline {
    /// Writes the file header and the known decoder configurations: what a session needs
    /// first. The configurations carry the current offset as their timestamp. A session that
    /// begins during a gap gets the filler's, whose tags come first.
    fn write_session_start(&mut self, output: &mut StageOutput) {
        let Some(header) = self.header else {
            return;
        };
        output.push_chunk(Bytes::copy_from_slice(&header));
        output.push_chunk(Bytes::from_static(&[0; PREVIOUS_TAG_SIZE_LEN]));
        self.sent = [None, None];
        self.header_written = true;
        self.session.begin(Duration::from_millis(self.offset));
        let timestamp = self.offset as u32;
        let filler_configurations = self.filler.configurations();
        for kind in [MediaKind::Video, MediaKind::Audio] {
            match &filler_configurations[kind.index()] {
                Some(configuration) if self.filler.is_playing() => {
                    self.send_filler_configuration(kind, configuration, timestamp, output);
                }
                _ => self.send_stream_configuration(kind.into(), timestamp, output),
            }
        }
    }

    /// Sends a whole media tag (its parts, at `time` on the timeline), unless a file resumed
    /// from inside is being cut before it.
    fn send_media_tag(
        &mut self,
        time: Duration,
        random_access: bool,
        parts: Vec<Bytes>,
        output: &mut StageOutput,
    ) {
        let Some(cut) = &mut self.resume else {
            return send_tag(time, parts, output);
        };
        let mut send = Vec::new();
        if cut.take(time, random_access, (time, parts), &mut send) {
            self.resume = None;
        }
        send_tags(send, output);
    }
}

/// Emits a whole media tag (its parts), marked with its time.
fn send_tag(time: Duration, parts: Vec<Bytes>, output: &mut StageOutput) {
    output.mark_media_time(time);
    for part in parts {
        output.push_chunk(part);
    }
}

/// Emits whole media tags.
fn send_tags(tags: Vec<(Duration, Vec<Bytes>)>, output: &mut StageOutput) {
    for (time, parts) in tags {
        send_tag(time, parts, output);
    }
}

/// Emits one tag: header, data, `PreviousTagSize`.
fn push_tag(kind: TagKind, timestamp: u32, data: &Bytes, output: &mut StageOutput) {
    let size = data.len() as u32;
    let [_, s1, s2, s3] = size.to_be_bytes();
    let mut header = [kind.type_byte(), s1, s2, s3, 0, 0, 0, 0, 0, 0, 0];
    header = TagHeader::with_timestamp(&header, timestamp);
    output.push_chunk(Bytes::copy_from_slice(&header));
    output.push_chunk(data.clone());
    output.push_chunk(Bytes::copy_from_slice(
        &(size + TAG_HEADER_LEN as u32).to_be_bytes(),
    ));
}

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
