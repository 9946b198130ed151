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
    ComponentContext, ComponentError, FragmentInfo, HumanDuration, MediaSpan, Stage, StageConfig,
    StageError, StageOutput,
};
use streampub_core::register_stage;

use self::filler_clip::TsClip;
use self::filling::FillerRun;
use self::packet_cut::PacketCut;
use self::shape_probe::ShapeProbe;
use crate::filler::{default_ffmpeg, no_filler, validate_filler, ClipMaker, FillerSource};
use crate::history::FragmentHistory;
use crate::mpegts::adts::AdtsFrames;
use crate::mpegts::{
    is_video_stream_type, pat_programs, pcr_position, pes_data_offset, pes_timestamp_positions,
    pmt_program, random_access, read_pcr_base, read_timestamp, section, set_continuity,
    write_pcr_base, write_timestamp, PacketHeader, Program, PACKET_LEN, PAT_PID,
    STREAM_TYPE_ADTS_AAC, SYNC_BYTE, TICKS_PER_SECOND, TIMESTAMP_MODULUS,
};
use crate::session_limit::{
    default_session_limit, planned_new_session, validate_session_limit, SessionLimit,
};

/// The stage's `type`.
pub const TS_TIMELINE_STAGE: &str = "mpegts-timeline";

register_stage!(
    TsTimelineConfig,
    TS_TIMELINE_STAGE,
    "Joins MPEG-TS files into one continuous transport stream: one clock, continuous counters",
);

/// Where the joined stream's clock starts: 1.4 s, ffmpeg's own start, so that a PCR up to
/// that far ahead of the first frame stays positive.
const START: u64 = 126_000;
/// Packets held before a file's first timestamp; a file without one that soon is refused.
const MAX_HELD_PACKETS: usize = 4096;

/// Joins MPEG-TS files into one continuous transport stream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TsTimelineConfig {
    /// A session that has carried this much media ends at the next file boundary and a new one
    /// begins (a planned reconnect; ffmpeg starts each session's output timestamps at 0),
    /// before RTMP's 32-bit millisecond timestamps wrap. At most 24 days (the default).
    #[serde(default = "default_session_limit")]
    pub session_limit: HumanDuration,
    /// What plays while upstream is late, when the sink is paced and asks for filler:
    /// `generate`, `none` (the default here; `ffmpeg-rtmp` sets it for the stage it adds
    /// itself, see its `filler`), or a slate file's path. H.264 and AAC streams only.
    #[serde(default = "no_filler")]
    pub filler: FillerSource,
    /// The ffmpeg program that makes the filler; looked up on `PATH` unless it contains a `/`.
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
}

impl Default for TsTimelineConfig {
    fn default() -> Self {
        Self {
            session_limit: default_session_limit(),
            filler: no_filler(),
            ffmpeg: default_ffmpeg(),
        }
    }
}

#[async_trait]
impl StageConfig for TsTimelineConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        validate_session_limit(self.session_limit)?;
        validate_filler(&self.filler)
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(
            TsTimelineStage::default()
                .with_session_limit(self.session_limit.get())
                .with_filler(self.filler.clone(), self.ffmpeg.clone()),
        ))
    }
}

/// The last timestamp of one PID in the current file, to tell how long the file lasts.
#[derive(Debug, Clone, Copy)]
struct LastTimestamp {
    value: u64,
    interval: u64,
}

impl LastTimestamp {
    /// Where the stream ends, from `base`: its last PES plus how long that PES lasts if it is
    /// known (`frames`: its counted audio frames), else the interval before it.
    fn end(&self, base: u64, frames: Option<&AdtsFrames>) -> u64 {
        let last = frames
            .and_then(AdtsFrames::duration_ticks)
            .unwrap_or(self.interval);
        ticks_between(base, self.value) + last
    }
}

/// The state of the file being read.
#[derive(Debug)]
struct FileState {
    name: String,
    /// The bytes of a packet split across chunks.
    partial: Vec<u8>,
    /// Bytes of the file read so far, for error messages.
    position: u64,
    /// The file's first PES timestamp: its clock's zero.
    base: Option<u64>,
    /// Packets before `base` was known.
    held: Vec<[u8; PACKET_LEN]>,
    /// The PMT PIDs its PAT names.
    pmt_pids: Vec<u16>,
    /// The elementary stream PIDs its first PMT names, and the first timestamp of each, while
    /// the file's clock zero is being found.
    streams: Vec<u16>,
    starts: HashMap<u16, u64>,
    last: HashMap<u16, LastTimestamp>,
    /// The AAC frames of the PES packet being read, per ADTS stream.
    frames: HashMap<u16, AdtsFrames>,
}

impl FileState {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            partial: Vec::with_capacity(PACKET_LEN),
            position: 0,
            base: None,
            held: Vec::new(),
            pmt_pids: Vec::new(),
            streams: Vec::new(),
            starts: HashMap::new(),
            last: HashMap::new(),
            frames: HashMap::new(),
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> StageError {
        StageError::new(format!(
            "fragment {} is not usable MPEG-TS: {message}",
            self.name
        ))
    }

    /// Notes what a packet held before the clock zero says: the PMT PIDs (PAT), the streams
    /// (PMT), a stream's first timestamp (PES).
    fn observe_start(&mut self, packet: &[u8; PACKET_LEN]) {
        let header = PacketHeader::parse(packet);
        let Some(payload) = header
            .payload_offset(packet)
            .filter(|_| header.payload_start)
        else {
            return;
        };
        if header.pid == PAT_PID {
            if let Some(section) = section(packet, payload) {
                self.pmt_pids = pat_programs(section);
            }
        } else if self.pmt_pids.contains(&header.pid) {
            if let Some(program) = section(packet, payload).and_then(pmt_program) {
                self.streams = program.streams.iter().map(|(_, pid)| *pid).collect();
            }
        } else if let Some((pts, dts)) = pes_timestamp_positions(packet, payload) {
            if let Some(at) = dts.or(pts) {
                self.starts
                    .entry(header.pid)
                    .or_insert_with(|| read_timestamp(packet, at));
            }
        }
    }

    /// Whether every stream of the program has shown its first timestamp.
    fn knows_every_start(&self) -> bool {
        !self.streams.is_empty() && self.streams.iter().all(|pid| self.starts.contains_key(pid))
    }

    /// The earliest first timestamp of the streams (on the 33-bit clock, the one the others
    /// follow), the file's clock zero: no stream of the file then starts before the previous
    /// file ends.
    fn earliest_start(&self) -> Option<u64> {
        let reference = *self.starts.values().next()?;
        let behind = self
            .starts
            .values()
            .map(|start| ticks_between(*start, reference))
            .filter(|behind| *behind < TIMESTAMP_MODULUS / 2)
            .max()
            .unwrap_or(0);
        Some((reference + TIMESTAMP_MODULUS - behind) % TIMESTAMP_MODULUS)
    }

    /// How long the file lasts, in 90 kHz ticks: where its last stream ends, each stream's
    /// end being its last PES timestamp plus how long that PES lasts: for AAC (ADTS) its
    /// counted frames (ffmpeg bundles several in one PES), else the interval before it.
    fn duration(&self) -> u64 {
        let Some(base) = self.base else {
            return 0;
        };
        self.last
            .iter()
            .map(|(pid, last)| last.end(base, self.frames.get(pid)))
            .max()
            .unwrap_or(0)
    }
}

/// Ticks from `from` to `to` on the 33-bit clock.
/// 90 kHz ticks as a duration.
fn duration_of(ticks: u64) -> Duration {
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(TICKS_PER_SECOND);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn ticks_between(from: u64, to: u64) -> u64 {
    (to + TIMESTAMP_MODULUS - from) % TIMESTAMP_MODULUS
}

/// The state at the start of a fragment, for a rewind.
#[derive(Debug, Clone)]
struct Snapshot {
    position: u64,
    continuity: HashMap<u16, u8>,
    program: Option<Program>,
}

/// The running stage.
#[derive(Debug)]
pub struct TsTimelineStage {
    /// Where the next file starts, in 90 kHz ticks since the stream's zero, never wrapped (the
    /// timestamps written are this modulo 2³³; media spans and times for pacing use it as is).
    position: u64,
    /// The last continuity counter written per PID.
    continuity: HashMap<u16, u8>,
    /// The streams of the program (from the first PMT), to tell a changed stream.
    program: Option<Program>,
    history: FragmentHistory<Snapshot>,
    file: Option<FileState>,
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

impl Default for TsTimelineStage {
    fn default() -> Self {
        Self {
            position: START,
            continuity: HashMap::new(),
            program: None,
            history: FragmentHistory::default(),
            file: None,
            tables: Vec::new(),
            clip: ClipMaker::new(FillerSource::None, default_ffmpeg()),
            probe: None,
            filler_run: None,
            session: SessionLimit::default(),
            resume: None,
        }
    }
}

impl TsTimelineStage {
    /// Ends a session that has carried `limit` of media at the next file boundary.
    pub fn with_session_limit(mut self, limit: Duration) -> Self {
        self.session = SessionLimit::new(limit);
        self
    }

    /// Fills gaps with `source`, made or converted by the program `ffmpeg`.
    pub fn with_filler(mut self, source: FillerSource, ffmpeg: PathBuf) -> Self {
        self.clip = ClipMaker::new(source, ffmpeg);
        self
    }

    fn file(&mut self) -> &mut FileState {
        self.file.get_or_insert_with(|| FileState::new("?"))
    }

    /// Takes one packet of the file: holds it until the file's first timestamp is known, then
    /// rewrites it into `buffer`.
    fn take_packet(
        &mut self,
        packet: [u8; PACKET_LEN],
        buffer: &mut Vec<u8>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let file = self.file();
        if packet[0] != SYNC_BYTE {
            return Err(file.error(format!(
                "the packet at offset {} does not begin with the sync byte 0x47",
                file.position
            )));
        }
        if file.base.is_none() {
            file.held.push(packet);
            file.observe_start(&packet);
            let waited_enough = file.held.len() >= MAX_HELD_PACKETS;
            if !(file.knows_every_start() || waited_enough) {
                return Ok(());
            }
            let Some(base) = file.earliest_start() else {
                return Err(file.error(format!(
                    "its first {MAX_HELD_PACKETS} packets carry no PES timestamp"
                )));
            };
            file.base = Some(base);
            for held in std::mem::take(&mut file.held) {
                self.rewrite(held, buffer, output);
            }
            return Ok(());
        }
        self.rewrite(packet, buffer, output);
        Ok(())
    }

    /// Moves a packet's timestamps onto the stream's clock, continues its PID's continuity
    /// counter, notes its program tables, and appends it to `buffer`.
    fn rewrite(
        &mut self,
        mut packet: [u8; PACKET_LEN],
        buffer: &mut Vec<u8>,
        output: &mut StageOutput,
    ) {
        let (position, offset) = (self.position, self.position % TIMESTAMP_MODULUS);
        let file = self.file.as_mut().expect("a file is being read");
        let base = file
            .base
            .expect("packets are rewritten once the base is known");
        let move_timestamp =
            |value: u64| (value + TIMESTAMP_MODULUS - base + offset) % TIMESTAMP_MODULUS;
        let header = PacketHeader::parse(&packet);
        let payload = header.payload_offset(&packet);
        if let (Some(probe), Some(program)) = (&mut self.probe, &self.program) {
            probe.observe(program, &packet);
        }
        let mut changed_program = None;
        let mut media_time = None;
        let is_aac = self.program.as_ref().is_some_and(|program| {
            program
                .streams
                .contains(&(STREAM_TYPE_ADTS_AAC, header.pid))
        });
        if let (true, Some(payload)) = (is_aac, payload) {
            let frames = file.frames.entry(header.pid).or_default();
            let data = if header.payload_start {
                frames.start();
                pes_data_offset(&packet, payload)
            } else {
                Some(payload)
            };
            if let Some(data) = data {
                frames.feed(&packet[data..]);
            }
        }
        if let (true, Some(payload)) = (header.payload_start, payload) {
            if header.pid == PAT_PID {
                if let Some(section) = section(&packet, payload) {
                    file.pmt_pids = pat_programs(section);
                }
                keep_table(&mut self.tables, packet);
            } else if file.pmt_pids.contains(&header.pid) {
                changed_program = section(&packet, payload).and_then(pmt_program);
                keep_table(&mut self.tables, packet);
            } else if let Some((pts, dts)) = pes_timestamp_positions(&packet, payload) {
                if let Some(at) = dts.or(pts) {
                    let value = read_timestamp(&packet, at);
                    let last = file
                        .last
                        .entry(header.pid)
                        .or_insert(LastTimestamp { value, interval: 0 });
                    let interval = ticks_between(last.value, value);
                    // A step back (or a wrap) is no interval.
                    if interval > 0 && interval < TICKS_PER_SECOND * 10 {
                        last.interval = interval;
                    }
                    last.value = value;
                }
                if let Some(at) = dts.or(pts) {
                    let ticks = position + ticks_between(base, read_timestamp(&packet, at));
                    media_time = Some(duration_of(ticks));
                }
                for at in [pts, dts].into_iter().flatten() {
                    let value = read_timestamp(&packet, at);
                    write_timestamp(&mut packet, at, move_timestamp(value));
                }
            }
        }
        if let Some(at) = pcr_position(&header, &packet) {
            let value = read_pcr_base(&packet, at);
            write_pcr_base(&mut packet, at, move_timestamp(value));
        }
        if let Some(program) = changed_program {
            self.note_program(program, buffer, output);
        }
        let stream_type = self
            .resume
            .as_ref()
            .and(self.program.as_ref())
            .and_then(|program| {
                program
                    .streams
                    .iter()
                    .find(|(_, pid)| *pid == header.pid)
                    .map(|(stream_type, _)| *stream_type)
            });
        match (&mut self.resume, stream_type) {
            // An elementary stream's packet of a file resumed from inside.
            (Some(cut), Some(stream_type)) => {
                // Without video, a decoder can start at any audio PES.
                let has_video = self.program.as_ref().is_some_and(Program::has_video);
                let random_access = if is_video_stream_type(stream_type) {
                    random_access(&packet)
                } else {
                    !has_video
                };
                let mut send = Vec::new();
                let pes_start = media_time.map(|time| (time, random_access));
                cut.take(header.pid, pes_start, packet, &mut send);
                for (media_time, packet) in send {
                    self.send_packet(media_time, packet, buffer, output);
                }
            }
            _ => self.send_packet(media_time, packet, buffer, output),
        }
    }

    /// Continues the packet's PID's continuity counter and appends it to `buffer`; a packet
    /// that begins a PES comes after its decode time (`media_time`), marked for pacing.
    fn send_packet(
        &mut self,
        media_time: Option<Duration>,
        mut packet: [u8; PACKET_LEN],
        buffer: &mut Vec<u8>,
        output: &mut StageOutput,
    ) {
        let header = PacketHeader::parse(&packet);
        if header.has_payload {
            let counter = self
                .continuity
                .entry(header.pid)
                .and_modify(|counter| *counter = (*counter + 1) & 0x0f)
                .or_insert(packet[3] & 0x0f);
            set_continuity(&mut packet, *counter);
        }
        if let Some(time) = media_time {
            output.push_chunk(Bytes::from(std::mem::take(buffer)));
            output.mark_media_time(time);
        }
        buffer.extend_from_slice(&packet);
    }

    /// A PMT: the first one defines the stream; one that describes other streams starts a new
    /// session before the packets that follow.
    fn note_program(&mut self, program: Program, buffer: &mut Vec<u8>, output: &mut StageOutput) {
        match &self.program {
            None => self.program = Some(program),
            Some(current) if *current == program => {}
            Some(current) => {
                let name = self.file.as_ref().map_or("?", |file| file.name.as_str());
                let change = format!(
                    "fragment {name}: the program's streams (stream type, PID) changed from {:?} to {:?}",
                    current.streams, program.streams
                );
                output.push_chunk(Bytes::from(std::mem::take(buffer)));
                output.request_new_session(change);
                self.program = Some(program);
                // Another stream: a filler made for it, once this file has shown what it is.
                self.clip.forget();
                self.probe = self.clip.wants_shape().then(ShapeProbe::default);
            }
        }
    }
}

impl TsTimelineStage {
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

impl Stage for TsTimelineStage {
    fn begin_fragment(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        // The stream takes over from any filler, after it.
        self.end_filler();
        if let Some(reached) = self.session.reached(duration_of(self.position)) {
            output.request_new_session(planned_new_session(&fragment.name, reached));
            self.push_tables(output);
        }
        if self.probe.is_none() && self.clip.wants_shape() {
            self.probe = Some(ShapeProbe::default());
        }
        self.history.record(
            fragment.sequence,
            Snapshot {
                position: self.position,
                continuity: self.continuity.clone(),
                program: self.program.clone(),
            },
        );
        self.file = Some(FileState::new(&fragment.name));
        Ok(())
    }

    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
        let mut buffer = Vec::with_capacity(chunk.len() + PACKET_LEN);
        let mut rest = &chunk[..];
        let result = (|| {
            while !rest.is_empty() {
                let file = self.file();
                let used = (PACKET_LEN - file.partial.len()).min(rest.len());
                file.partial.extend_from_slice(&rest[..used]);
                rest = &rest[used..];
                if file.partial.len() < PACKET_LEN {
                    break;
                }
                let packet: [u8; PACKET_LEN] = file.partial.as_slice().try_into().unwrap();
                file.partial.clear();
                self.take_packet(packet, &mut buffer, output)?;
                self.file().position += PACKET_LEN as u64;
            }
            Ok(())
        })();
        // What was rewritten before an error still goes out: whole packets only.
        output.push_chunk(Bytes::from(buffer));
        result
    }

    fn end_fragment(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        // A file resumed past its last keyframe: from that keyframe.
        if let Some(cut) = self.resume.take() {
            let mut buffer = Vec::new();
            for (media_time, packet) in cut.finish() {
                self.send_packet(media_time, packet, &mut buffer, output);
            }
            output.push_chunk(Bytes::from(buffer));
        }
        let start = self.position;
        let file = self.file();
        let problem = if !file.partial.is_empty() {
            Some(format!(
                "it ends {} bytes into the packet at offset {} (a file holds whole 188-byte packets)",
                file.partial.len(),
                file.position
            ))
        } else if file.base.is_none() {
            Some("it has no PES timestamp".to_owned())
        } else {
            None
        };
        let error = problem.map(|problem| file.error(problem));
        let duration = file.duration();
        self.position += duration;
        self.file = None;
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

    fn abort_fragment(&mut self) {
        self.resume = None;
        // What was emitted of the file stays on the timeline.
        if let Some(file) = self.file.take() {
            self.position += file.duration();
        }
    }

    fn published(&mut self, fragment: &FragmentInfo) {
        self.history.forget_through(fragment.sequence);
    }

    fn rewind(&mut self, fragment: &FragmentInfo) {
        let Some(snapshot) = self.history.rewind_to(fragment.sequence) else {
            return;
        };
        self.position = snapshot.position;
        self.continuity = snapshot.continuity;
        self.program = snapshot.program;
        self.file = None;
        self.filler_run = None;
    }

    fn checkpoint(&self) -> Option<serde_json::Value> {
        let saved = SavedTsTimeline {
            offset_ticks: self.position,
            continuity: self
                .continuity
                .iter()
                .map(|(pid, counter)| (*pid, *counter))
                .collect(),
        };
        Some(serde_json::to_value(saved).expect("plain data"))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), StageError> {
        let saved: SavedTsTimeline = serde_json::from_value(state).map_err(|error| {
            StageError::new(format!(
                "the saved MPEG-TS timeline state is unreadable: {error}"
            ))
        })?;
        self.position = saved.offset_ticks;
        self.continuity = saved.continuity.into_iter().collect();
        Ok(())
    }
}

/// The state the pipeline's checkpoint keeps, for an archive that continues after a restart:
/// where the next file starts and the last continuity counter of each PID.
#[derive(Debug, Serialize, Deserialize)]
struct SavedTsTimeline {
    /// Where the next file starts, in 90 kHz ticks, unwrapped.
    offset_ticks: u64,
    continuity: std::collections::BTreeMap<u16, u8>,
}
