//! The `mpegts-to-flv` stage: turns the continuous transport stream of the `mpegts-timeline`
//! stage into FLV tags, so that MPEG-TS batches can be published without ffmpeg (the `rtmp`
//! sink puts both stages in front of itself for `input_format: mpegts`).
//!
//! H.264 (stream type 0x1b) and AAC in ADTS frames (0x0f), the first of each in the program;
//! data streams (ID3, SCTE-35, subtitles) are left out, and other video or audio fails the
//! fragment, naming the stream and the way out (MP4 fragments, whose HEVC, AV1, VP9 and Opus
//! go over enhanced RTMP). Each H.264 access unit (one PES packet, as every muxer writes
//! them) becomes one tag, its units from Annex B to 4-byte lengths, its parameter sets in the
//! AVC sequence header (again whenever they change); each ADTS frame one raw AAC tag, its
//! header as the AudioSpecificConfig. A keyframe is an access unit with an IDR slice or one
//! whose packet has the `random_access_indicator` set (where `mpegts-timeline` cuts a
//! fragment sent again from inside).
//!
//! The timeline is `mpegts-timeline`'s: it keeps the clock, plays the filler, ends sessions at
//! `session_limit`, cuts a fragment resumed from inside and marks the media times for pacing;
//! this stage converts what it gets and marks nothing. Each PES is held until it is whole (the
//! next PES start on its PID, the length its header gives, or the end of the file) and tags are
//! held until they can be written in decode order: at most one PES packet per stream and about a
//! second of one kind while the other is silent. A session's timestamps start at 0 with its
//! first tag.
//!
//! Video frames before the stream's first parameter sets cannot be decoded by anyone; they are
//! left out, and the log says how many.

mod conversion;
mod demux;
#[cfg(test)]
mod tests;
mod writing;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    ComponentContext, ComponentError, FragmentInfo, Stage, StageConfig, StageError, StageOutput,
};
use streampub_core::register_stage;

use self::conversion::Conversion;
use self::demux::{Demuxer, Pes};
use self::writing::FlvWriter;

/// The stage's `type`.
pub const MPEGTS_TO_FLV_STAGE: &str = "mpegts-to-flv";

register_stage!(
    MpegtsToFlvConfig,
    MPEGTS_TO_FLV_STAGE,
    "Turns the continuous MPEG-TS of mpegts-timeline into FLV tags (H.264 and AAC)",
);

/// Turns MPEG-TS into FLV; put it after `mpegts-timeline`. It has no options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MpegtsToFlvConfig {}

#[async_trait]
impl StageConfig for MpegtsToFlvConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        Ok(())
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(MpegtsToFlvStage::default()))
    }
}

/// The `mpegts-to-flv` stage.
#[derive(Debug)]
pub struct MpegtsToFlvStage {
    demuxer: Demuxer,
    conversion: Conversion,
    writer: FlvWriter,
    /// The current fragment's name, for errors.
    fragment: String,
    pes: Vec<Pes>,
    /// The video PID the conversion's parameter sets are of.
    video_pid: Option<u16>,
}

impl Default for MpegtsToFlvStage {
    fn default() -> Self {
        Self {
            demuxer: Demuxer::default(),
            conversion: Conversion::default(),
            writer: FlvWriter::new(),
            fragment: String::new(),
            pes: Vec::new(),
            video_pid: None,
        }
    }
}

impl MpegtsToFlvStage {
    fn error(&self, problem: impl std::fmt::Display) -> StageError {
        StageError::new(format!(
            "fragment {} cannot become FLV: {problem}",
            self.fragment
        ))
    }

    /// Converts the PES packets found and writes what can be written.
    fn convert(&mut self, flush: bool, output: &mut StageOutput) -> Result<(), StageError> {
        // Another video stream: its own parameter sets, not the last one's.
        if self.demuxer.video_pid() != self.video_pid {
            self.video_pid = self.demuxer.video_pid();
            self.conversion.forget_video();
        }
        let mut tags = Vec::new();
        for pes in std::mem::take(&mut self.pes) {
            if let Err(problem) = self.conversion.convert(pes, &mut tags) {
                return Err(self.error(problem));
            }
        }
        tags.into_iter().for_each(|tag| self.writer.queue(tag));
        let kinds = self.demuxer.kinds();
        self.writer.write(kinds, &self.conversion, flush, output);
        Ok(())
    }
}

impl Stage for MpegtsToFlvStage {
    fn begin_fragment(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        // What came between files (the filler) is whole and goes out before the file, in the
        // session it belongs to; a file that fails later cannot take it with it.
        self.demuxer.complete(&mut self.pes);
        let written = self.convert(true, output);
        self.fragment.clone_from(&fragment.name);
        written
    }

    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
        if let Err(problem) = self.demuxer.push(&chunk, &mut self.pes) {
            return Err(self.error(problem));
        }
        self.convert(false, output)
    }

    fn end_fragment(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        if let Err(problem) = self.demuxer.finish(&mut self.pes) {
            return Err(self.error(problem));
        }
        self.convert(true, output)?;
        let undecodable = std::mem::take(&mut self.conversion.undecodable_frames);
        if undecodable > 0 {
            tracing::warn!(
                event = "undecodable_frames_left_out",
                fragment = %self.fragment,
                frames = undecodable,
                "{undecodable} H.264 frames of fragment {} came before any sequence and picture \
                 parameter sets, so no decoder could use them; they were left out",
                self.fragment
            );
        }
        Ok(())
    }

    fn start_session(&mut self, _output: &mut StageOutput) -> Result<(), StageError> {
        // Only a program change inside a file leaves something of the old session here.
        self.demuxer.abort();
        self.pes.clear();
        self.writer.start_session();
        Ok(())
    }

    fn abort_fragment(&mut self) {
        self.demuxer.abort();
        self.writer.abort();
        self.pes.clear();
        self.conversion.undecodable_frames = 0;
    }
}
