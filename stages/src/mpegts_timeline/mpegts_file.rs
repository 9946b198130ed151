//! One MPEG-TS file as it is read: where each stream's timestamps start and end in it, to tell
//! its clock zero and how long it lasts.

use std::collections::HashMap;

use super::clock::ticks_between;
use crate::formats::mpegts::adts::AdtsFrames;
use crate::formats::mpegts::{
    pat_programs, pes_timestamp_positions, pmt_program, read_timestamp, section, PacketHeader,
    PACKET_LEN, PAT_PID, TIMESTAMP_MODULUS,
};

/// Packets held before a file's first timestamp; a file without one that soon is refused.
pub(super) const MAX_HELD_PACKETS: usize = 4096;

/// The last timestamp of one PID in the current file, to tell how long the file lasts.
#[derive(Debug, Clone, Copy)]
pub(super) struct LastTimestamp {
    pub(super) value: u64,
    pub(super) interval: u64,
}

impl LastTimestamp {
    /// Where the stream ends, from `base`: its last PES plus how long that PES lasts if it is
    /// known (`frames`: its counted audio frames), else the interval before it.
    pub(super) fn end(&self, base: u64, frames: Option<&AdtsFrames>) -> u64 {
        let last = frames
            .and_then(AdtsFrames::duration_ticks)
            .unwrap_or(self.interval);
        ticks_between(base, self.value) + last
    }
}

/// The state of the file being read.
#[derive(Debug, Default)]
pub(crate) struct MpegtsFile {
    /// The bytes of a packet split across chunks.
    pub(super) partial: Vec<u8>,
    /// Where the packet being taken begins in the file, for error messages.
    pub(super) packet_start: u64,
    /// The file's first PES timestamp: its clock's zero.
    pub(super) base: Option<u64>,
    /// Packets before `base` was known.
    pub(super) held: Vec<[u8; PACKET_LEN]>,
    /// The PMT PIDs its PAT names.
    pub(super) pmt_pids: Vec<u16>,
    /// The elementary stream PIDs its first PMT names, and the first timestamp of each, while
    /// the file's clock zero is being found.
    pub(super) streams: Vec<u16>,
    pub(super) starts: HashMap<u16, u64>,
    pub(super) last: HashMap<u16, LastTimestamp>,
    /// The AAC frames of the PES packet being read, per ADTS stream.
    pub(super) frames: HashMap<u16, AdtsFrames>,
}

impl MpegtsFile {
    /// A file whose clock zero is known: a loop of the filler clip.
    pub(super) fn starting_at(base: u64) -> Self {
        Self {
            base: Some(base),
            ..Self::default()
        }
    }

    /// Notes what a packet held before the clock zero says: the PMT PIDs (PAT), the streams
    /// (PMT), a stream's first timestamp (PES).
    pub(super) fn observe_start(&mut self, packet: &[u8; PACKET_LEN]) {
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
    pub(super) fn knows_every_start(&self) -> bool {
        !self.streams.is_empty() && self.streams.iter().all(|pid| self.starts.contains_key(pid))
    }

    /// The earliest first timestamp of the streams (on the 33-bit clock, the one the others
    /// follow), the file's clock zero: no stream of the file then starts before the previous
    /// file ends.
    pub(super) fn earliest_start(&self) -> Option<u64> {
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
    pub(super) fn duration(&self) -> u64 {
        let Some(base) = self.base else {
            return 0;
        };
        self.last
            .iter()
            .map(|(pid, last)| last.end(base, self.frames.get(pid)))
            .max()
            .unwrap_or(0)
    }

    /// What is wrong with the file if it ended after `length` bytes.
    pub(super) fn problem_at_end(&self, length: u64) -> Option<String> {
        if !self.partial.is_empty() {
            Some(format!(
                "it ends {} bytes into the packet at offset {} (a file holds whole 188-byte packets)",
                self.partial.len(),
                length - self.partial.len() as u64
            ))
        } else if self.base.is_none() {
            Some("it has no PES timestamp".to_owned())
        } else {
            None
        }
    }
}
