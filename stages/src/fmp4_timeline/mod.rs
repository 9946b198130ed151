//! The `fmp4-timeline` stage: joins fragmented MP4 files into one continuous stream.
//!
//! Each upstream file is a complete fragmented MP4 (`ftyp`, `moov`, then `moof`/`mdat` pairs)
//! whose timestamps start at zero. Written one after another into one ffmpeg, the timestamps
//! restart and the later files collapse. This stage forwards the first init segment
//! (`ftyp`+`moov`), drops every later one that describes the same stream, renumbers `mfhd`
//! strictly increasing, and moves every `tfdt` onto one timeline:
//!
//! `new = old − (first tfdt of that track in this file) + offset × timescale`
//!
//! where `offset` is the sum of the previous files' durations, each the longest of its tracks
//! (sample durations from `trun`, else the `tfhd` default, else `trex`). The offset is an exact
//! fraction, so there is no drift however many files are joined; each conversion to a track's
//! timescale rounds once. `styp`, `sidx` and `mfra` are dropped (their offsets would lie).
//!
//! It streams: only `ftyp`, `moov` and `moof` are buffered (small); `mdat` payloads pass
//! through as slices of the incoming chunks.

mod reading;
mod remux;
mod saved;
mod seconds;
mod stream_state;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    find_program, BodyPreparer, ComponentContext, ComponentError, FragmentInfo, MediaSpan, Stage,
    StageConfig, StageError, StageOutput,
};
use streampub_core::register_stage;

use self::reading::Fmp4File;
use self::saved::SavedTimeline;
use self::seconds::Seconds;
use self::stream_state::Fmp4Timeline;
use crate::timeline_engine::{OpenFile, TimelineEngine, TimelineFormat};

/// The stage's `type`.
pub const FMP4_TIMELINE_STAGE: &str = "fmp4-timeline";

register_stage!(
    Fmp4TimelineConfig,
    FMP4_TIMELINE_STAGE,
    "Joins fragmented MP4 files into one continuous stream: one init segment, continuous tfdt",
);

/// Rewrites fragmented MP4 files into one continuous stream.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fmp4TimelineConfig {
    /// `ffmpeg`: convert a non-fragmented MP4 file (sample tables in `moov`) into fragmented
    /// MP4 first, with ffmpeg from `PATH` (`-c copy`, reading the file). Unset: such a file
    /// fails with an error that names this option.
    #[serde(default)]
    pub remux: Option<Remux>,
}

/// How non-fragmented MP4 is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Remux {
    /// With an ffmpeg child process.
    Ffmpeg,
}

/// The program `remux: ffmpeg` runs.
const FFMPEG: &str = "ffmpeg";

#[async_trait]
impl StageConfig for Fmp4TimelineConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        if self.remux == Some(Remux::Ffmpeg) && find_program(Path::new(FFMPEG)).is_none() {
            return Err(ComponentError::field(
                "remux",
                "ffmpeg not found on PATH; Debian: apt-get install ffmpeg",
            ));
        }
        Ok(())
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(Fmp4TimelineStage::default()))
    }

    fn body_preparer(&self, _context: &ComponentContext) -> Option<Arc<dyn BodyPreparer>> {
        let remux = self.remux?;
        match remux {
            Remux::Ffmpeg => Some(Arc::new(remux::FfmpegRemux {
                ffmpeg: find_program(Path::new(FFMPEG)).unwrap_or_else(|| FFMPEG.into()),
            })),
        }
    }
}

/// The `fmp4-timeline` stage.
pub(crate) type Fmp4TimelineStage = TimelineEngine<Fmp4Timeline>;

impl Fmp4Timeline {
    /// The longest track of what `file` emitted, added to the offset.
    fn advance_offset(&mut self, file: &Fmp4File) {
        let Some(init) = &self.init else {
            return;
        };
        let mut longest = self.offset;
        for (track_id, ticks) in &file.emitted {
            if let Some(track) = init.tracks.iter().find(|track| track.track_id == *track_id) {
                let end = self.offset.add_ticks(*ticks, track.timescale);
                if end.is_after(longest) {
                    longest = end;
                }
            }
        }
        self.offset = longest;
    }
}

impl TimelineFormat for Fmp4Timeline {
    const STAGE: &'static str = FMP4_TIMELINE_STAGE;
    const USABLE: &'static str = "usable fragmented MP4";
    type Snapshot = Self;
    type Saved = SavedTimeline;

    fn begin_file(
        &mut self,
        _fragment: &FragmentInfo,
        _output: &mut StageOutput,
    ) -> Result<Fmp4File, StageError> {
        if self.next_sequence == 0 {
            self.next_sequence = 1;
        }
        Ok(Fmp4File::default())
    }

    fn end_file(
        &mut self,
        file: OpenFile<Fmp4File>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let error = self
            .problem_at_end(&file, output)
            .map(|problem| file.error(problem));
        let start = self.offset;
        self.advance_offset(&file);
        match error {
            Some(error) => Err(error),
            None => {
                output.mark_media_span(MediaSpan {
                    start: start.as_duration(),
                    end: self.offset.as_duration(),
                });
                Ok(())
            }
        }
    }

    fn abort_file(&mut self, file: Option<OpenFile<Fmp4File>>) {
        // What was emitted of the file stays on the timeline.
        if let Some(file) = file {
            self.advance_offset(&file);
        }
    }

    fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        if let Some(init) = &self.init {
            output.push_chunk(init.bytes.clone());
        }
        Ok(())
    }

    fn fill(&mut self, until: Duration, _output: &mut StageOutput) -> Result<(), StageError> {
        // Filler runs between fragments: the next one starts after it.
        let until = Seconds::of_duration(until);
        if until.is_after(self.offset) {
            self.offset = until;
        }
        Ok(())
    }

    fn snapshot(&self) -> Self {
        self.clone()
    }

    fn rewind_to(&mut self, snapshot: Self) {
        *self = snapshot;
    }

    fn saved(&self) -> Option<SavedTimeline> {
        Some(SavedTimeline::of(self))
    }

    fn restore(&mut self, saved: SavedTimeline) -> Result<(), StageError> {
        saved.restore_into(self)
    }
}
