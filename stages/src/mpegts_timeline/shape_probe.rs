//! What a transport stream is, for a filler that must match it: read from its first file's
//! packets as they go by (the H.264 sequence parameter set at the start of the first video PES,
//! the intervals between video DTS values, the first ADTS header).

use crate::formats::h264::{annex_b_units, unit_type, SEQUENCE_PARAMETER_SET};
use crate::formats::mpegts::{
    pes_data_offset, pes_timestamp_positions, read_timestamp, PacketHeader, Program, PACKET_LEN,
};
use crate::stream_shape::{most_common, AudioShape, StreamShape, VideoShape};

/// Bytes of the first video PES kept to find its sequence parameter set.
const VIDEO_START_LEN: usize = 2048;

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
        let Some((video, audio)) = *self
            .pids
            .get_or_insert_with(|| program.h264_and_aac_pids().ok())
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
        let (video, audio) = program.h264_and_aac_pids()?;
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
    annex_b_units(bytes).find(|unit| unit_type(unit) == SEQUENCE_PARAMETER_SET)
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
}
