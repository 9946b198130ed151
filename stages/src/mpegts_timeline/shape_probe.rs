//! What a transport stream is, for a filler that must match it: read from its first file's
//! packets as they go by (the H.264 sequence parameter set at the start of the first video PES,
//! the intervals between video DTS values, the first ADTS header).

use crate::mpegts::{
    pes_data_offset, pes_timestamp_positions, read_timestamp, PacketHeader, Program, PACKET_LEN,
    STREAM_TYPE_ADTS_AAC,
};
use crate::stream_shape::{most_common, AudioShape, StreamShape, VideoShape};

/// The MPEG-TS stream type of H.264.
pub(super) const STREAM_TYPE_H264: u8 = 0x1b;
/// Bytes of the first video PES kept to find its sequence parameter set.
const VIDEO_START_LEN: usize = 2048;
/// The H.264 NAL unit type of a sequence parameter set.
const SPS_UNIT_TYPE: u8 = 7;

/// The stream's video and audio PIDs (H.264 and ADTS AAC), or why no filler can match it.
pub(super) fn media_pids(program: &Program) -> Result<(Option<u16>, Option<u16>), String> {
    let mut pids = (None, None);
    for (stream_type, pid) in &program.streams {
        match *stream_type {
            STREAM_TYPE_H264 => {
                pids.0.get_or_insert(*pid);
            }
            STREAM_TYPE_ADTS_AAC => {
                pids.1.get_or_insert(*pid);
            }
            // Video and audio types a filler made with H.264 and AAC cannot stand in for.
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

/// What has been seen of the stream so far.
#[derive(Debug, Default)]
pub(super) struct ShapeProbe {
    /// The stream's video and audio PIDs, once read from its program (`None` inside: no
    /// filler can match it, and nothing is looked at).
    pids: Option<Option<(Option<u16>, Option<u16>)>>,
    /// The start of the first video PES's data.
    video_start: Vec<u8>,
    video_start_done: bool,
    last_video_dts: Option<u64>,
    video_intervals: Vec<u64>,
    adts_header: Vec<u8>,
}

impl ShapeProbe {
    /// Takes a packet of the stream (before its timestamps are moved).
    pub(super) fn observe(&mut self, program: &Program, packet: &[u8; PACKET_LEN]) {
        let Some((video, audio)) = *self.pids.get_or_insert_with(|| media_pids(program).ok())
        else {
            return;
        };
        let header = PacketHeader::parse(packet);
        let Some(payload) = header.payload_offset(packet) else {
            return;
        };
        let data = if header.payload_start {
            pes_data_offset(packet, payload)
        } else {
            Some(payload)
        };
        if Some(header.pid) == video {
            if header.payload_start {
                if let Some(at) =
                    pes_timestamp_positions(packet, payload).and_then(|(pts, dts)| dts.or(pts))
                {
                    let dts = read_timestamp(packet, at);
                    if let Some(last) = self.last_video_dts.replace(dts) {
                        self.video_intervals.push(dts.wrapping_sub(last));
                    }
                }
                self.video_start_done = !self.video_start.is_empty();
            }
            if let (false, Some(data)) = (self.video_start_done, data) {
                let room = VIDEO_START_LEN - self.video_start.len();
                let bytes = &packet[data..];
                self.video_start
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
                self.video_start_done = self.video_start.len() == VIDEO_START_LEN;
            }
        } else if Some(header.pid) == audio && self.adts_header.len() < 7 {
            if let Some(data) =
                data.filter(|_| header.payload_start || !self.adts_header.is_empty())
            {
                let bytes = &packet[data..];
                let wanted = 7 - self.adts_header.len();
                self.adts_header
                    .extend_from_slice(&bytes[..bytes.len().min(wanted)]);
            }
        }
    }

    /// The stream's shape, from what was seen.
    pub(super) fn shape(&self, program: &Program) -> Result<StreamShape, String> {
        let (video, audio) = media_pids(program)?;
        let video = match video {
            None => None,
            Some(_) => {
                let unit = sps_unit(&self.video_start)
                    .ok_or("its first video PES has no sequence parameter set")?;
                let mut intervals = self.video_intervals.clone();
                let interval = most_common(&mut intervals).unwrap_or(3600);
                let interval =
                    u32::try_from(interval).map_err(|_| "its frame rate is unreadable")?;
                Some(VideoShape::from_sps_unit(unit, (90_000, interval))?)
            }
        };
        let audio = match audio {
            None => None,
            Some(_) => Some(AudioShape::from_adts_header(&self.adts_header)?),
        };
        Ok(StreamShape { video, audio })
    }
}

/// The first sequence parameter set NAL unit in Annex B bytes (start codes between units).
fn sps_unit(bytes: &[u8]) -> Option<&[u8]> {
    let starts: Vec<usize> = bytes
        .windows(3)
        .enumerate()
        .filter(|(_, window)| *window == [0, 0, 1])
        .map(|(at, _)| at + 3)
        .collect();
    starts.iter().enumerate().find_map(|(index, &start)| {
        let unit_type = bytes.get(start)? & 0x1f;
        if unit_type != SPS_UNIT_TYPE {
            return None;
        }
        // Up to the next start code (its leading zero byte of a 4-byte code aside).
        let end = starts.get(index + 1).map_or(bytes.len(), |next| next - 3);
        let unit = &bytes[start..end];
        Some(unit.strip_suffix(&[0]).unwrap_or(unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_parameter_set_is_found_between_start_codes() {
        let bytes = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x0c],
            &[0, 0, 1, 0x68, 0xeb],
        ]
        .concat();
        assert_eq!(sps_unit(&bytes), Some(&[0x67, 0x64, 0x00, 0x0c][..]));
        assert_eq!(sps_unit(&[0, 0, 1, 0x65, 1, 2]), None);
    }

    #[test]
    fn streams_no_filler_can_match_are_named() {
        let program = Program {
            pcr_pid: 256,
            streams: vec![(0x24, 256), (STREAM_TYPE_ADTS_AAC, 257)],
        };
        assert!(media_pids(&program).unwrap_err().contains("0x24"));
        let program = Program {
            pcr_pid: 256,
            streams: vec![
                (STREAM_TYPE_H264, 256),
                (STREAM_TYPE_ADTS_AAC, 257),
                (0x06, 258),
            ],
        };
        assert_eq!(media_pids(&program), Ok((Some(256), Some(257))));
    }
}
