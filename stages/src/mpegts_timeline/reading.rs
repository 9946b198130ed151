//! Reading one MPEG-TS file packet by packet: packets are held until the file's clock zero is
//! known (every stream has shown its first timestamp), then each one's PES timestamps and PCR
//! move onto the stream's clock and its PID's continuity counter continues.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use streampub_core::plugin::{StageError, StageOutput};

use super::{duration_of, keep_table, ticks_between, MpegtsTimeline};
use crate::mpegts::adts::AdtsFrames;
use crate::mpegts::{
    is_video_stream_type, pat_programs, pcr_position, pes_data_offset, pes_timestamp_positions,
    pmt_program, random_access, read_pcr_base, read_timestamp, section, set_continuity,
    write_pcr_base, write_timestamp, PacketHeader, Program, PACKET_LEN, PAT_PID,
    STREAM_TYPE_ADTS_AAC, SYNC_BYTE, TICKS_PER_SECOND, TIMESTAMP_MODULUS,
};
use crate::timeline_engine::{ChunkReader, FileReading, OpenFile};

/// Packets held before a file's first timestamp; a file without one that soon is refused.
const MAX_HELD_PACKETS: usize = 4096;

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
#[derive(Debug, Default)]
pub(crate) struct MpegtsFile {
    /// The bytes of a packet split across chunks.
    partial: Vec<u8>,
    /// Where the packet being taken begins in the file, for error messages.
    packet_start: u64,
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

impl FileReading for MpegtsTimeline {
    type File = MpegtsFile;

    /// Rewrites the whole packets `reader` completes; what was rewritten goes out, also
    /// before an error.
    fn read(
        &mut self,
        file: &mut OpenFile<MpegtsFile>,
        reader: &mut ChunkReader,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let mut buffer = Vec::with_capacity(reader.rest().len() + PACKET_LEN);
        let mut result = Ok(());
        while result.is_ok() && reader.fill(&mut file.partial, PACKET_LEN) {
            let packet: [u8; PACKET_LEN] = file.partial.as_slice().try_into().unwrap();
            file.partial.clear();
            file.packet_start = reader.position() - PACKET_LEN as u64;
            result = self.take_packet(file, packet, &mut buffer, output);
        }
        output.push_chunk(Bytes::from(buffer));
        result
    }
}

impl MpegtsTimeline {
    /// Takes one packet of the file: holds it until the file's first timestamp is known, then
    /// rewrites it into `buffer`.
    pub(super) fn take_packet(
        &mut self,
        file: &mut OpenFile<MpegtsFile>,
        packet: [u8; PACKET_LEN],
        buffer: &mut Vec<u8>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        if packet[0] != SYNC_BYTE {
            return Err(file.error(format!(
                "the packet at offset {} does not begin with the sync byte 0x47",
                file.packet_start
            )));
        }
        if file.base.is_some() {
            self.rewrite(file, packet, buffer, output);
            return Ok(());
        }
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
            self.rewrite(file, held, buffer, output);
        }
        Ok(())
    }

    /// Moves a packet's timestamps onto the stream's clock, continues its PID's continuity
    /// counter, notes its program tables, and appends it to `buffer`.
    fn rewrite(
        &mut self,
        file: &mut OpenFile<MpegtsFile>,
        mut packet: [u8; PACKET_LEN],
        buffer: &mut Vec<u8>,
        output: &mut StageOutput,
    ) {
        let (position, offset) = (self.position, self.position % TIMESTAMP_MODULUS);
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
                    let ticks = position + ticks_between(base, value);
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
            self.note_program(file.name(), program, buffer, output);
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
    pub(super) fn send_packet(
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
    fn note_program(
        &mut self,
        name: &str,
        program: Program,
        buffer: &mut Vec<u8>,
        output: &mut StageOutput,
    ) {
        match &self.program {
            None => self.program = Some(program),
            Some(current) if *current == program => {}
            Some(current) => {
                let change = format!(
                    "fragment {name}: the program's streams (stream type, PID) changed from {:?} to {:?}",
                    current.streams, program.streams
                );
                output.push_chunk(Bytes::from(std::mem::take(buffer)));
                output.request_new_session(change);
                self.program = Some(program);
                // Another stream: a filler made for it, once this file has shown what it is.
                self.clip.forget();
                self.probe = self.clip.wants_shape().then(Default::default);
            }
        }
    }
}
