//! The `mpegts-timeline` stage: joins MPEG-TS files into one continuous transport stream.
//!
//! Each upstream file is a complete transport stream whose clock starts anew. Written one after
//! another, the timestamps jump back at every file: an archive plays only its last file, and
//! ffmpeg guesses its way through ("Packet corrupt", "DTS out of order"). This stage moves every
//! PES timestamp (PTS, DTS) and every PCR onto one clock:
//!
//! `new = old − (first PES timestamp of this file) + offset`   (modulo 2³³)
//!
//! where the file's first timestamp is the earliest of its streams' first ones, and `offset`
//! is where the previous file ended: the later of its streams' last timestamp plus that
//! stream's last interval. The first file starts at 1.4 s, as ffmpeg's own muxer does, so
//! that a PCR ahead of its first frame stays positive. It keeps the continuity
//! counters of each PID continuous across files, keeps every PAT and PMT, and starts a new
//! session when a PMT describes other streams (other PIDs or stream types). The 33-bit wrap
//! (every 26.5 hours) is handled by modular arithmetic, like any decoder does. It streams:
//! packets are rewritten one at a time; only the packets before a file's first timestamp are
//! held (its PAT, PMT, first PCR and the packets until every stream has shown its first
//! timestamp).
//!
//! When the sink is paced and upstream is late, it plays a filler between files (H.264 and
//! AAC streams; see `filling`).

mod clock;
mod filler_clip;
mod filling;
mod mpegts_file;
mod packet_cut;
mod reading;
mod saved;
mod shape_probe;
mod stream_state;
#[cfg(test)]
mod tests;

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

use self::clock::duration_of;
use self::mpegts_file::MpegtsFile;
use self::packet_cut::PacketCut;
use self::saved::SavedMpegtsTimeline;
use self::shape_probe::ShapeProbe;
use self::stream_state::{MpegtsSnapshot, MpegtsTimeline};
use crate::filler::FillerSource;
use crate::session_options::SessionOptions;
use crate::timeline_engine::{OpenFile, TimelineEngine, TimelineFormat};

/// The stage's `type`.
pub const MPEGTS_TIMELINE_STAGE: &str = "mpegts-timeline";

register_stage!(
    MpegtsTimelineConfig,
    MPEGTS_TIMELINE_STAGE,
    "Joins MPEG-TS files into one continuous transport stream: one clock, continuous counters",
);

/// Joins MPEG-TS files into one continuous transport stream.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MpegtsTimelineConfig {
    #[serde(flatten)]
    pub session: SessionOptions,
}

#[async_trait]
impl StageConfig for MpegtsTimelineConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        self.session.validate()
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(
            MpegtsTimelineStage::default().with_session_options(&self.session, FillerSource::None),
        ))
    }
}

/// The `mpegts-timeline` stage.
pub(crate) type MpegtsTimelineStage = TimelineEngine<MpegtsTimeline>;

impl TimelineFormat for MpegtsTimeline {
    const STAGE: &'static str = MPEGTS_TIMELINE_STAGE;
    const USABLE: &'static str = "usable MPEG-TS";
    type Snapshot = MpegtsSnapshot;
    type Saved = SavedMpegtsTimeline;

    fn begin_file(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<MpegtsFile, StageError> {
        // The stream takes over from any filler, after it.
        self.end_filler();
        if self
            .session
            .ends_before(&fragment.name, duration_of(self.position), output)
        {
            self.push_tables(output);
        }
        if self.probe.is_none() && self.clip.wants_shape() {
            self.probe = Some(ShapeProbe::default());
        }
        Ok(MpegtsFile::default())
    }

    fn end_file(
        &mut self,
        file: OpenFile<MpegtsFile>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        // A file resumed past its last keyframe: from that keyframe.
        if let Some(cut) = self.resume.take() {
            let mut buffer = Vec::new();
            for (media_time, packet) in cut.finish() {
                self.send_packet(media_time, packet, &mut buffer, output);
            }
            output.push_chunk(Bytes::from(buffer));
        }
        let start = self.position;
        let error = file
            .problem_at_end(file.bytes_read())
            .map(|problem| file.error(problem));
        let duration = file.duration();
        self.position += duration;
        match error {
            Some(error) => Err(error),
            None => {
                output.mark_media_span(MediaSpan {
                    start: duration_of(start),
                    end: duration_of(start + duration),
                });
                self.prepare_filler();
                Ok(())
            }
        }
    }

    fn abort_file(&mut self, file: Option<OpenFile<MpegtsFile>>) {
        self.resume = None;
        // What was emitted of the file stays on the timeline.
        if let Some(file) = file {
            self.position += file.duration();
        }
    }

    fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        self.session.end();
        self.restart_filler(output);
        Ok(())
    }

    fn fill(&mut self, until: Duration, output: &mut StageOutput) -> Result<(), StageError> {
        self.fill_until(until, output)
    }

    fn resume_fragment(&mut self, offset: Duration) {
        self.resume = Some(PacketCut::new(offset));
    }

    fn snapshot(&self) -> MpegtsSnapshot {
        MpegtsSnapshot {
            position: self.position,
            continuity: self.continuity.clone(),
            program: self.program.clone(),
        }
    }

    fn rewind_to(&mut self, snapshot: MpegtsSnapshot) {
        self.position = snapshot.position;
        self.continuity = snapshot.continuity;
        self.program = snapshot.program;
        self.filler_run = None;
    }

    fn saved(&self) -> Option<SavedMpegtsTimeline> {
        Some(SavedMpegtsTimeline::of(self))
    }

    fn restore(&mut self, saved: SavedMpegtsTimeline) -> Result<(), StageError> {
        saved.restore_into(self);
        Ok(())
    }
}
