//! The MPEG-TS timeline's state between files: where the next file starts on the clock, each
//! PID's continuity counter, the program and its tables, and the filler.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use streampub_core::plugin::{FillerSource, StageOutput};

use super::clock::START;
use super::filler_clip::TsClip;
use super::mpegts_file::MpegtsFile;
use super::packet_cut::PacketCut;
use super::shape_probe::ShapeProbe;
use crate::filler::{default_ffmpeg, ClipMaker};
use crate::formats::mpegts::{set_continuity, PacketHeader, Program, PACKET_LEN};
use crate::session_limit::SessionLimit;
use crate::session_options::SessionSettings;
use crate::timeline_engine::OpenFile;

/// The state at the start of a fragment, for a rewind.
#[derive(Debug, Clone)]
pub(crate) struct MpegtsSnapshot {
    pub(super) position: u64,
    pub(super) continuity: HashMap<u16, u8>,
    pub(super) program: Option<Program>,
}

/// The MPEG-TS part of the `mpegts-timeline` stage: the stream's state between files.
#[derive(Debug)]
pub(crate) struct MpegtsTimeline {
    /// Where the next file starts, in 90 kHz ticks since the stream's zero, never wrapped (the
    /// timestamps written are this modulo 2³³; media spans and times for pacing use it as is).
    pub(super) position: u64,
    /// The last continuity counter written per PID.
    pub(super) continuity: HashMap<u16, u8>,
    /// The streams of the program (from the first PMT), to tell a changed stream.
    pub(super) program: Option<Program>,
    /// The stream's last PAT and PMT packets, for a session that begins during a gap.
    pub(super) tables: Vec<[u8; PACKET_LEN]>,
    pub(super) clip: ClipMaker<Arc<TsClip>>,
    /// What the stream is, being read while the filler needs it.
    pub(super) probe: Option<ShapeProbe>,
    pub(super) filler_run: Option<FillerRun>,
    pub(super) session: SessionLimit,
    /// While a file sent again from inside is being cut.
    pub(super) resume: Option<PacketCut>,
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
    pub(super) fn push_tables(&mut self, output: &mut StageOutput) {
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
pub(super) fn keep_table(tables: &mut Vec<[u8; PACKET_LEN]>, packet: [u8; PACKET_LEN]) {
    let pid = |packet: &[u8; PACKET_LEN]| PacketHeader::parse(packet).pid;
    match tables.iter_mut().find(|kept| pid(kept) == pid(&packet)) {
        Some(kept) => *kept = packet,
        None => tables.push(packet),
    }
}
/// Where the current gap's filler is.
#[derive(Debug)]
pub(super) struct FillerRun {
    /// The next packet of the clip.
    pub(super) next: usize,
    /// Where the current loop began, in ticks (the stage's position when it began).
    pub(super) loop_start: u64,
    /// The latest `until` filled to, in ticks: the next file starts there or later.
    pub(super) until: u64,
    /// The loop being played, read as a file whose clock zero is the clip's.
    pub(super) loop_file: Option<OpenFile<MpegtsFile>>,
}

impl FillerRun {
    pub(super) fn new(loop_start: u64, until: u64) -> Self {
        Self {
            next: 0,
            loop_start,
            until,
            loop_file: None,
        }
    }
}
