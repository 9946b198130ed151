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

mod filler_clip;
mod filling;
mod packet_cut;
mod reading;
mod saved;
mod shape_probe;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
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

use self::filler_clip::TsClip;
use self::filling::FillerRun;
use self::packet_cut::PacketCut;
use self::reading::MpegtsFile;
use self::saved::SavedMpegtsTimeline;
use self::shape_probe::ShapeProbe;
use crate::filler::{default_ffmpeg, ClipMaker, FillerSource};
use crate::mpegts::{
    set_continuity, PacketHeader, Program, PACKET_LEN, TICKS_PER_SECOND, TIMESTAMP_MODULUS,
};
use crate::session_limit::SessionLimit;
use crate::session_options::{SessionOptions, SessionSettings};
use crate::timeline_engine::{OpenFile, TimelineEngine, TimelineFormat};

/// The stage's `type`.
pub const MPEGTS_TIMELINE_STAGE: &str = "mpegts-timeline";

register_stage!(
    MpegtsTimelineConfig,
    MPEGTS_TIMELINE_STAGE,
    "Joins MPEG-TS files into one continuous transport stream: one clock, continuous counters",
);

/// Where the joined stream's clock starts: 1.4 s, ffmpeg's own start, so that a PCR up to
/// that far ahead of the first frame stays positive.
const START: u64 = 126_000;

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

/// 90 kHz ticks as a duration.
fn duration_of(ticks: u64) -> Duration {
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(TICKS_PER_SECOND);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Ticks from `from` to `to` on the 33-bit clock.
fn ticks_between(from: u64, to: u64) -> u64 {
    (to + TIMESTAMP_MODULUS - from) % TIMESTAMP_MODULUS
}

/// The state at the start of a fragment, for a rewind.
#[derive(Debug, Clone)]
pub(crate) struct MpegtsSnapshot {
    position: u64,
    continuity: HashMap<u16, u8>,
    program: Option<Program>,
}

/// The `mpegts-timeline` stage.
pub(crate) type MpegtsTimelineStage = TimelineEngine<MpegtsTimeline>;

/// The MPEG-TS part of the `mpegts-timeline` stage: the stream's state between files.
#[derive(Debug)]
pub(crate) struct MpegtsTimeline {
    /// Where the next file starts, in 90 kHz ticks since the stream's zero, never wrapped (the
    /// timestamps written are this modulo 2³³; media spans and times for pacing use it as is).
    position: u64,
    /// The last continuity counter written per PID.
    continuity: HashMap<u16, u8>,
    /// The streams of the program (from the first PMT), to tell a changed stream.
    program: Option<Program>,
    /// The stream's last PAT and PMT packets, for a session that begins during a gap.
    tables: Vec<[u8; PACKET_LEN]>,
    clip: ClipMaker<Arc<TsClip>>,
    /// What the stream is, being read while the filler needs it.
    probe: Option<ShapeProbe>,
    filler_run: Option<FillerRun>,
    session: SessionLimit,
    /// While a file sent again from inside is being cut.
    resume: Option<PacketCut>,
}

impl Default for MpegtsTimeline {
    fn default() -> Self {
        Self {
            position: START,
            continuity: HashMap::new(),
            program: None,
            tables: Vec::new(),
            clip: ClipMaker::new(FillerSource::None, default_ffmpeg()),
            probe: None,
            filler_run: None,
            session: SessionLimit::default(),
            resume: None,
        }
    }
}

impl SessionSettings for MpegtsTimeline {
    fn set_session_limit(&mut self, limit: SessionLimit) {
        self.session = limit;
    }

    fn set_filler(&mut self, source: FillerSource, ffmpeg: PathBuf) {
        self.clip = ClipMaker::new(source, ffmpeg);
    }
}

impl MpegtsTimeline {
    /// Writes the stream's last PAT and PMT again, for a session that begins without them.
    fn push_tables(&mut self, output: &mut StageOutput) {
        let mut tables = Vec::with_capacity(self.tables.len() * PACKET_LEN);
        for mut packet in self.tables.clone() {
            let pid = PacketHeader::parse(&packet).pid;
            let counter = self
                .continuity
                .entry(pid)
                .and_modify(|counter| *counter = (*counter + 1) & 0x0f)
                .or_insert(0);
            set_continuity(&mut packet, *counter);
            tables.extend_from_slice(&packet);
        }
        output.push_chunk(Bytes::from(tables));
    }
}

/// Keeps `packet` as the last of its PID's table packets.
fn keep_table(tables: &mut Vec<[u8; PACKET_LEN]>, packet: [u8; PACKET_LEN]) {
    let pid = |packet: &[u8; PACKET_LEN]| PacketHeader::parse(packet).pid;
    match tables.iter_mut().find(|kept| pid(kept) == pid(&packet)) {
        Some(kept) => *kept = packet,
        None => tables.push(packet),
    }
}

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
