//! Reading the continuous transport stream into whole PES packets of its H.264 and AAC
//! streams: packets are collected across chunks, the program tables say which PIDs carry
//! what, and each PID's payload is gathered from one PES start to the next (or to the length
//! its header gives, or to the end of the file).

use crate::formats::flv::MediaKind;
use crate::formats::mpegts::{
    pat_programs, pes_data_offset, pes_timestamp_positions, pmt_program, random_access,
    read_timestamp, section, PacketHeader, Program, PACKET_LEN, PAT_PID, SYNC_BYTE,
};

/// A whole PES packet of the video or the audio stream.
#[derive(Debug)]
pub(super) struct Pes {
    pub(super) kind: MediaKind,
    /// 33-bit 90 kHz timestamps; the decode time is the presentation time when the header
    /// gives no DTS.
    pub(super) pts: u64,
    pub(super) dts: u64,
    /// The elementary stream bytes (Annex B H.264, ADTS AAC).
    pub(super) data: Vec<u8>,
    /// Its first packet's `random_access_indicator`.
    pub(super) random_access: bool,
}

/// A PES packet being collected.
#[derive(Debug)]
struct Collecting {
    pes: Pes,
    /// Its data length when the header gives one (0 there means unbounded, as for video).
    expected: Option<usize>,
}

/// The demultiplexer's state: what it knows of the program, and the PES being collected.
#[derive(Debug, Default)]
pub(super) struct Demuxer {
    /// A packet cut by a chunk boundary.
    partial: Vec<u8>,
    pmt_pids: Vec<u16>,
    program: Option<Program>,
    /// The PIDs of the stream's H.264 and AAC (video, audio).
    pids: [Option<u16>; 2],
    collecting: [Option<Collecting>; 2],
}

impl Demuxer {
    /// Whether the program has a video and an audio stream (video, audio).
    pub(super) fn kinds(&self) -> [bool; 2] {
        self.pids.map(|pid| pid.is_some())
    }

    /// Reads `bytes`, appending the PES packets they complete to `found`.
    pub(super) fn push(&mut self, mut bytes: &[u8], found: &mut Vec<Pes>) -> Result<(), String> {
        if !self.partial.is_empty() {
            let wanted = (PACKET_LEN - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..wanted]);
            bytes = &bytes[wanted..];
            if self.partial.len() < PACKET_LEN {
                return Ok(());
            }
            let packet: [u8; PACKET_LEN] = self.partial.as_slice().try_into().unwrap();
            self.partial.clear();
            self.take_packet(&packet, found)?;
        }
        let mut packets = bytes.chunks_exact(PACKET_LEN);
        for packet in packets.by_ref() {
            self.take_packet(packet.try_into().unwrap(), found)?;
        }
        self.partial.extend_from_slice(packets.remainder());
        Ok(())
    }

    /// The file ended: the PES packets being collected are whole.
    pub(super) fn finish(&mut self, found: &mut Vec<Pes>) -> Result<(), String> {
        if !self.partial.is_empty() {
            let left = self.partial.len();
            self.abort();
            return Err(format!(
                "it ends inside a transport stream packet ({left} of its {PACKET_LEN} bytes)"
            ));
        }
        self.complete(found);
        Ok(())
    }

    /// The PES packets being collected are whole: what follows (a file after the filler)
    /// begins new ones on every PID.
    pub(super) fn complete(&mut self, found: &mut Vec<Pes>) {
        found.extend(
            self.collecting
                .iter_mut()
                .filter_map(Option::take)
                .map(|collecting| collecting.pes),
        );
    }

    /// The PID of the program's H.264, if it has one.
    pub(super) fn video_pid(&self) -> Option<u16> {
        self.pids[0]
    }

    /// The file failed or is sent again: what was collected of it goes.
    pub(super) fn abort(&mut self) {
        self.partial.clear();
        self.collecting = [None, None];
    }

    fn take_packet(
        &mut self,
        packet: &[u8; PACKET_LEN],
        found: &mut Vec<Pes>,
    ) -> Result<(), String> {
        if packet[0] != SYNC_BYTE {
            return Err(format!(
                "a packet does not begin with the sync byte 0x47 (it begins with {:#04x})",
                packet[0]
            ));
        }
        let header = PacketHeader::parse(packet);
        let Some(payload) = header.payload_offset(packet) else {
            return Ok(());
        };
        if header.pid == PAT_PID && header.payload_start {
            if let Some(section) = section(packet, payload) {
                self.pmt_pids = pat_programs(section);
            }
            return Ok(());
        }
        if self.pmt_pids.contains(&header.pid) && header.payload_start {
            if let Some(program) = section(packet, payload).and_then(pmt_program) {
                self.note_program(program, found)?;
            }
            return Ok(());
        }
        let Some(index) = self.pids.iter().position(|pid| *pid == Some(header.pid)) else {
            return Ok(());
        };
        if header.payload_start {
            found.extend(
                self.collecting[index]
                    .take()
                    .map(|collecting| collecting.pes),
            );
            self.collecting[index] = Some(pes_start(packet, payload, index, header.pid)?);
        } else if let Some(collecting) = &mut self.collecting[index] {
            collecting.pes.data.extend_from_slice(&packet[payload..]);
        }
        let complete = self.collecting[index].as_ref().and_then(|collecting| {
            collecting
                .expected
                .filter(|expected| collecting.pes.data.len() >= *expected)
        });
        if let Some(expected) = complete {
            let mut pes = self.collecting[index].take().unwrap().pes;
            // What follows the data in its last packet is stuffing.
            pes.data.truncate(expected);
            found.push(pes);
        }
        Ok(())
    }

    /// A PMT: the PIDs of its H.264 and AAC. A program with video or audio FLV cannot carry
    /// is refused; what was collected on PIDs that change is whole.
    fn note_program(&mut self, program: Program, found: &mut Vec<Pes>) -> Result<(), String> {
        if self.program.as_ref() == Some(&program) {
            return Ok(());
        }
        let (video, audio) = program.h264_and_aac_pids().map_err(|problem| {
            format!(
                "{problem}: FLV carries H.264 and AAC from MPEG-TS; publish other codecs as \
                 MP4 fragments (input_format: mp4), where HEVC, AV1, VP9 and Opus go over \
                 enhanced RTMP"
            )
        })?;
        for (index, pid) in [video, audio].into_iter().enumerate() {
            if self.pids[index] != pid {
                found.extend(
                    self.collecting[index]
                        .take()
                        .map(|collecting| collecting.pes),
                );
                self.pids[index] = pid;
            }
        }
        self.program = Some(program);
        Ok(())
    }
}

/// The PES packet that begins in `packet` (of the stream at `index`: video, audio).
fn pes_start(
    packet: &[u8; PACKET_LEN],
    payload: usize,
    index: usize,
    pid: u16,
) -> Result<Collecting, String> {
    let unreadable =
        || format!("a PES header on PID {pid} is unreadable or does not fit its packet");
    let (pts, dts) = pes_timestamp_positions(packet, payload).ok_or_else(unreadable)?;
    let pts = pts
        .map(|at| read_timestamp(packet, at))
        .ok_or_else(|| format!("a PES packet on PID {pid} has no presentation time (PTS)"))?;
    let dts = dts.map_or(pts, |at| read_timestamp(packet, at));
    let data = pes_data_offset(packet, payload).ok_or_else(unreadable)?;
    let length = usize::from(u16::from_be_bytes([
        packet[payload + 4],
        packet[payload + 5],
    ]));
    // The length counts the bytes after itself: three of flags and header length, the rest
    // of the header, then the data.
    let header_rest = data - (payload + 6);
    let expected = (length != 0).then(|| length.saturating_sub(header_rest));
    Ok(Collecting {
        pes: Pes {
            kind: [MediaKind::Video, MediaKind::Audio][index],
            pts,
            dts,
            data: packet[data..].to_vec(),
            random_access: random_access(packet),
        },
        expected,
    })
}
