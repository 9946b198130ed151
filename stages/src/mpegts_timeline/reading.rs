//! Reading one MPEG-TS file packet by packet: packets are held until the file's clock zero is
//! known (every stream has shown its first timestamp), then each one's PES timestamps and PCR
//! move onto the stream's clock and its PID's continuity counter continues.

use std::time::Duration;

use bytes::Bytes;
use streampub_core::plugin::{StageError, StageOutput};

use super::clock::{duration_of, ticks_between};
use super::mpegts_file::{LastTimestamp, MpegtsFile, MAX_HELD_PACKETS};
use super::stream_state::{keep_table, MpegtsTimeline};
use crate::formats::mpegts::{
    is_video_stream_type, pat_programs, pcr_position, pes_data_offset, pes_timestamp_positions,
    pmt_program, random_access, read_pcr_base, read_timestamp, section, set_continuity,
    write_pcr_base, write_timestamp, PacketHeader, Program, PACKET_LEN, PAT_PID,
    STREAM_TYPE_ADTS_AAC, SYNC_BYTE, TICKS_PER_SECOND, TIMESTAMP_MODULUS,
};
use crate::timeline_engine::{ChunkReader, FileReading, OpenFile};

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
        // The file's media begins at its earliest stream's first timestamp, which need not be
        // the first PES in the file's order: the session's first media time, for a sink that
        // counts its output from there (a file resumed from inside begins at its cut).
        if self.resume.is_none() {
            output.push_chunk(Bytes::from(std::mem::take(buffer)));
            output.mark_media_time(duration_of(self.position));
        }
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
