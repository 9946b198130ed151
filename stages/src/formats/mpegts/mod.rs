//! MPEG transport stream format code shared by the stages: packet headers, the PCR in an
//! adaptation field, PES timestamps, and the program tables (PAT, PMT); [`adts`] for the AAC
//! frames it carries. No plugin lives here.

pub mod adts;

/// Bytes of a transport stream packet.
pub const PACKET_LEN: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// Timestamps (PTS, DTS, the PCR base) count 90 kHz ticks in 33 bits.
pub const TIMESTAMP_MODULUS: u64 = 1 << 33;
/// Ticks per second of PTS, DTS and the PCR base.
pub const TICKS_PER_SECOND: u64 = 90_000;
/// The PMT stream type of AAC in ADTS framing.
pub const STREAM_TYPE_ADTS_AAC: u8 = 0x0f;
/// The PMT stream type of H.264.
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// The PID of the program association table.
pub const PAT_PID: u16 = 0;

/// The fixed 4-byte header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub pid: u16,
    /// A PES packet or a table section begins in this packet's payload.
    pub payload_start: bool,
    pub has_adaptation: bool,
    pub has_payload: bool,
}

impl PacketHeader {
    /// Reads the header of a packet that begins with the sync byte.
    pub fn parse(packet: &[u8; PACKET_LEN]) -> Self {
        Self {
            pid: u16::from_be_bytes([packet[1] & 0x1f, packet[2]]),
            payload_start: packet[1] & 0x40 != 0,
            has_adaptation: packet[3] & 0x20 != 0,
            has_payload: packet[3] & 0x10 != 0,
        }
    }

    /// Where the payload begins, if the packet has one that fits.
    pub fn payload_offset(&self, packet: &[u8; PACKET_LEN]) -> Option<usize> {
        if !self.has_payload {
            return None;
        }
        let offset = if self.has_adaptation {
            5 + usize::from(packet[4])
        } else {
            4
        };
        (offset < PACKET_LEN).then_some(offset)
    }
}

/// Sets a packet's continuity counter.
pub fn set_continuity(packet: &mut [u8; PACKET_LEN], counter: u8) {
    packet[3] = (packet[3] & 0xf0) | (counter & 0x0f);
}

/// Where the PCR base of a packet sits (its 6 bytes begin there), if it carries a PCR.
pub fn pcr_position(header: &PacketHeader, packet: &[u8; PACKET_LEN]) -> Option<usize> {
    let has_pcr = header.has_adaptation && packet[4] >= 7 && packet[5] & 0x10 != 0;
    has_pcr.then_some(6)
}

/// The 33-bit PCR base at `at`.
pub fn read_pcr_base(packet: &[u8], at: usize) -> u64 {
    let bytes = &packet[at..at + 5];
    (u64::from(bytes[0]) << 25)
        | (u64::from(bytes[1]) << 17)
        | (u64::from(bytes[2]) << 9)
        | (u64::from(bytes[3]) << 1)
        | u64::from(bytes[4] >> 7)
}

/// Writes a 33-bit PCR base at `at`, keeping the reserved bits and the extension.
pub fn write_pcr_base(packet: &mut [u8], at: usize, base: u64) {
    let base = base % TIMESTAMP_MODULUS;
    packet[at] = (base >> 25) as u8;
    packet[at + 1] = (base >> 17) as u8;
    packet[at + 2] = (base >> 9) as u8;
    packet[at + 3] = (base >> 1) as u8;
    packet[at + 4] = (packet[at + 4] & 0x7f) | (((base & 1) as u8) << 7);
}

/// Where the elementary stream data of a PES packet that begins at `payload` starts, if its
/// header fits in the packet.
pub fn pes_data_offset(packet: &[u8; PACKET_LEN], payload: usize) -> Option<usize> {
    let start = payload + 9 + usize::from(*packet.get(payload + 8)?);
    (start <= PACKET_LEN).then_some(start)
}

/// The positions of the PTS and DTS of a PES header that begins at `payload` in the packet:
/// `(pts, dts)`, each the start of its 5 bytes. `None` if it is no PES header or it does not
/// fit in the packet.
pub fn pes_timestamp_positions(
    packet: &[u8; PACKET_LEN],
    payload: usize,
) -> Option<(Option<usize>, Option<usize>)> {
    let pes = &packet[payload..];
    if pes.len() < 9 || pes[..3] != [0, 0, 1] {
        return None;
    }
    // Streams without the optional header (padding, private stream 2, …) carry no timestamps.
    if matches!(
        pes[3],
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return Some((None, None));
    }
    let flags = pes[7] >> 6;
    let header_end = 9 + usize::from(pes[8]);
    let needed = match flags {
        0b10 => 14,
        0b11 => 19,
        _ => 9,
    };
    if needed > header_end || payload + needed > PACKET_LEN {
        return None;
    }
    Some(match flags {
        0b10 => (Some(payload + 9), None),
        0b11 => (Some(payload + 9), Some(payload + 14)),
        _ => (None, None),
    })
}

/// The 33-bit timestamp in the 5 bytes at `at` (PES encoding with marker bits).
pub fn read_timestamp(packet: &[u8], at: usize) -> u64 {
    let bytes = &packet[at..at + 5];
    (u64::from(bytes[0] >> 1 & 0x07) << 30)
        | (u64::from(bytes[1]) << 22)
        | (u64::from(bytes[2] >> 1) << 15)
        | (u64::from(bytes[3]) << 7)
        | u64::from(bytes[4] >> 1)
}

/// Writes a 33-bit timestamp into the 5 bytes at `at`, keeping the 4-bit prefix.
pub fn write_timestamp(packet: &mut [u8], at: usize, value: u64) {
    let value = value % TIMESTAMP_MODULUS;
    packet[at] = (packet[at] & 0xf0) | (((value >> 30) as u8 & 0x07) << 1) | 1;
    packet[at + 1] = (value >> 22) as u8;
    packet[at + 2] = (((value >> 15) as u8) << 1) | 1;
    packet[at + 3] = (value >> 7) as u8;
    packet[at + 4] = ((value as u8) << 1) | 1;
}

/// The table section that begins in a packet's payload (after its pointer field), if it fits.
pub fn section(packet: &[u8; PACKET_LEN], payload: usize) -> Option<&[u8]> {
    let pointer = usize::from(*packet.get(payload)?);
    let start = payload + 1 + pointer;
    let header = packet.get(start..start + 3)?;
    let length = usize::from(u16::from_be_bytes([header[1] & 0x0f, header[2]]));
    packet.get(start..start + 3 + length)
}

/// The PMT PIDs a PAT section lists (program 0, the network PID, left out).
pub fn pat_programs(section: &[u8]) -> Vec<u16> {
    // Table header (8 bytes), then 4-byte entries, then the CRC.
    let Some(entries) = section.get(8..section.len().saturating_sub(4)) else {
        return Vec::new();
    };
    entries
        .chunks_exact(4)
        .filter(|entry| entry[0] != 0 || entry[1] != 0)
        .map(|entry| u16::from_be_bytes([entry[2] & 0x1f, entry[3]]))
        .collect()
}

/// What a PMT section describes: its PCR PID and its streams as (stream type, PID), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub pcr_pid: u16,
    pub streams: Vec<(u8, u16)>,
}

impl Program {
    /// Its first H.264 and first ADTS AAC stream's PIDs (video, audio), or why it has another
    /// kind of video or audio (a filler made with H.264 and AAC cannot stand in for it, nor
    /// does FLV without enhanced RTMP carry it). Streams that are neither (data, subtitles,
    /// SCTE-35) do not count.
    pub fn h264_and_aac_pids(&self) -> Result<(Option<u16>, Option<u16>), String> {
        let mut pids = (None, None);
        for (stream_type, pid) in &self.streams {
            match *stream_type {
                STREAM_TYPE_H264 => {
                    pids.0.get_or_insert(*pid);
                }
                STREAM_TYPE_ADTS_AAC => {
                    pids.1.get_or_insert(*pid);
                }
                // MPEG-1/2 and MPEG-4 part 2 video, HEVC, MP3, LATM AAC, AC-3, E-AC-3.
                0x01 | 0x02 | 0x10 | 0x24 | 0x03 | 0x04 | 0x11 | 0x81 | 0x87 => {
                    return Err(format!(
                        "its stream type {stream_type:#04x} (PID {pid}) is not H.264 or ADTS AAC"
                    ))
                }
                _ => {}
            }
        }
        Ok(pids)
    }

    /// Whether one of its streams is video.
    pub fn has_video(&self) -> bool {
        self.streams
            .iter()
            .any(|(stream_type, _)| is_video_stream_type(*stream_type))
    }
}

/// Whether a PMT stream type is video: MPEG-1/2 video, MPEG-4 part 2, H.264, HEVC, VVC, VC-1.
pub fn is_video_stream_type(stream_type: u8) -> bool {
    matches!(stream_type, 0x01 | 0x02 | 0x10 | 0x1b | 0x24 | 0x33 | 0xea)
}

/// Whether a packet's adaptation field says a decoder can start here (its
/// `random_access_indicator`: a keyframe, as ffmpeg and GStreamer mark them).
pub fn random_access(packet: &[u8]) -> bool {
    packet[3] & 0x20 != 0 && packet[4] > 0 && packet[5] & 0x40 != 0
}

/// Reads a PMT section.
pub fn pmt_program(section: &[u8]) -> Option<Program> {
    let pcr_pid = u16::from_be_bytes([*section.get(8)? & 0x1f, *section.get(9)?]);
    let info_length = usize::from(u16::from_be_bytes([
        *section.get(10)? & 0x0f,
        *section.get(11)?,
    ]));
    let mut at = 12 + info_length;
    let end = section.len().checked_sub(4)?;
    let mut streams = Vec::new();
    while at + 5 <= end {
        let stream_type = section[at];
        let pid = u16::from_be_bytes([section[at + 1] & 0x1f, section[at + 2]]);
        let es_info = usize::from(u16::from_be_bytes([
            section[at + 3] & 0x0f,
            section[at + 4],
        ]));
        streams.push((stream_type, pid));
        at += 5 + es_info;
    }
    Some(Program { pcr_pid, streams })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_their_prefix_and_markers() {
        let mut bytes = [0x31, 0, 0, 0, 0];
        for value in [0, 1, 126_000, (1 << 32) + 12345, TIMESTAMP_MODULUS - 1] {
            write_timestamp(&mut bytes, 0, value);
            assert_eq!(read_timestamp(&bytes, 0), value);
            assert_eq!(bytes[0] & 0xf0, 0x30, "the prefix is kept");
            assert_eq!(bytes[4] & 1, 1, "marker bit");
        }
        let mut pcr = [0, 0, 0, 0, 0x7e, 0x55];
        for value in [0, 27_000, TIMESTAMP_MODULUS - 1] {
            write_pcr_base(&mut pcr, 0, value);
            assert_eq!(read_pcr_base(&pcr, 0), value);
            assert_eq!(pcr[4] & 0x7f, 0x7e, "reserved bits and extension kept");
            assert_eq!(pcr[5], 0x55);
        }
    }

    #[test]
    fn video_and_audio_other_than_h264_and_aac_are_named() {
        let program = Program {
            pcr_pid: 256,
            streams: vec![(0x24, 256), (STREAM_TYPE_ADTS_AAC, 257)],
        };
        assert!(program.h264_and_aac_pids().unwrap_err().contains("0x24"));
        let program = Program {
            pcr_pid: 256,
            streams: vec![
                (STREAM_TYPE_H264, 256),
                (STREAM_TYPE_ADTS_AAC, 257),
                (0x06, 258),
            ],
        };
        assert_eq!(program.h264_and_aac_pids(), Ok((Some(256), Some(257))));
    }
}
