//! The filler clip as transport stream packets: ffmpeg's MPEG-TS of the clip, read once into
//! its video and audio packets (its own tables dropped: the stream's stay in force), each PES
//! start with its time from the clip's zero, so that a loop can stop at any PES.

use std::sync::Arc;

use bytes::Bytes;

use crate::filler::{check_aac, check_track_kinds};
use crate::formats::mpegts::adts::AdtsFrames;
use crate::formats::mpegts::STREAM_TYPE_H264;
use crate::formats::mpegts::{
    pat_programs, pes_data_offset, pes_timestamp_positions, pmt_program, read_timestamp, section,
    PacketHeader, Program, PACKET_LEN, PAT_PID, STREAM_TYPE_ADTS_AAC, SYNC_BYTE,
};
use crate::stream_shape::{AudioShape, StreamShape};

/// What a clip packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Media {
    Video,
    Audio,
}

/// One packet of the clip.
#[derive(Debug, Clone)]
pub(super) struct ClipPacket {
    pub(super) packet: [u8; PACKET_LEN],
    pub(super) media: Media,
    /// Where the PES this packet begins starts, in 90 kHz ticks from the clip's zero; `None`
    /// for a packet that continues one.
    pub(super) starts_at: Option<u64>,
}

/// The clip's packets, in order; a loop plays them all.
#[derive(Debug)]
pub(super) struct TsClip {
    pub(super) packets: Vec<ClipPacket>,
    /// The clip's earliest PES timestamp, as its packets carry it: its clock's zero.
    pub(super) zero: u64,
}

/// Reads ffmpeg's MPEG-TS of the clip; checks it carries what the stream does.
pub(super) fn read_ts_clip(file: Bytes, shape: &StreamShape) -> Result<Arc<TsClip>, String> {
    let mut pmt_pids = Vec::new();
    let mut program: Option<Program> = None;
    let mut packets = Vec::new();
    let mut adts_header = Vec::new();
    for bytes in file.chunks_exact(PACKET_LEN) {
        let packet: [u8; PACKET_LEN] = bytes.try_into().expect("exact chunks");
        if packet[0] != SYNC_BYTE {
            return Err("ffmpeg's MPEG-TS lost its packet sync".to_owned());
        }
        let header = PacketHeader::parse(&packet);
        let payload = header.payload_offset(&packet);
        if header.pid == PAT_PID {
            if let Some(section) = payload.and_then(|payload| section(&packet, payload)) {
                pmt_pids = pat_programs(section);
            }
            continue;
        }
        if pmt_pids.contains(&header.pid) {
            if let Some(found) = payload
                .and_then(|payload| section(&packet, payload))
                .and_then(pmt_program)
            {
                program.get_or_insert(found);
            }
            continue;
        }
        let Some(program) = &program else {
            continue;
        };
        let media = match program
            .streams
            .iter()
            .find(|(_, pid)| *pid == header.pid)
            .map(|(stream_type, _)| *stream_type)
        {
            Some(STREAM_TYPE_H264) => Media::Video,
            Some(STREAM_TYPE_ADTS_AAC) => Media::Audio,
            _ => continue,
        };
        let mut starts_at = None;
        if let (true, Some(payload)) = (header.payload_start, payload) {
            if let Some(at) =
                pes_timestamp_positions(&packet, payload).and_then(|(pts, dts)| dts.or(pts))
            {
                starts_at = Some(read_timestamp(&packet, at));
            }
            if media == Media::Audio && adts_header.is_empty() {
                if let Some(data) = pes_data_offset(&packet, payload) {
                    adts_header.extend_from_slice(&packet[data..(data + 7).min(PACKET_LEN)]);
                }
            }
        }
        packets.push(ClipPacket {
            packet,
            media,
            starts_at,
        });
    }
    let program = program.ok_or("ffmpeg's MPEG-TS has no program table")?;
    let (video, audio) = program.h264_and_aac_pids()?;
    check_track_kinds(shape, video.is_some(), audio.is_some())?;
    let video_frames = packets
        .iter()
        .filter(|packet| packet.media == Media::Video && packet.starts_at.is_some())
        .count();
    if video.is_some() && video_frames < 2 {
        return Err(format!(
            "it holds {video_frames} video frame(s); a loop needs at least two (for a still \
             image, give a short video of it)"
        ));
    }
    if let Some(stream) = &shape.audio {
        let clip = AudioShape::from_adts_header(&adts_header)?;
        check_aac(&clip.configuration, &stream.config)?;
    }
    trim_audio_to_video(&mut packets);
    let zero = relative_to_zero(&mut packets)?;
    Ok(Arc::new(TsClip { packets, zero }))
}

/// Makes PES start times count from the clip's zero, its earliest one, which it returns.
fn relative_to_zero(packets: &mut [ClipPacket]) -> Result<u64, String> {
    let zero = packets
        .iter()
        .filter_map(|packet| packet.starts_at)
        .min()
        .ok_or("ffmpeg's MPEG-TS holds no media")?;
    for packet in packets {
        if let Some(start) = &mut packet.starts_at {
            *start -= zero;
        }
    }
    Ok(zero)
}

/// Drops the audio PES packets that begin before the video's first frame (ffmpeg starts AAC
/// a frame early) or end after its last one does (ffmpeg puts several AAC frames in one PES),
/// so that a loop lasts as long as its video and the next one starts at its first keyframe
/// without a hole in the video.
fn trim_audio_to_video(packets: &mut Vec<ClipPacket>) {
    let video_starts: Vec<u64> = packets
        .iter()
        .filter(|packet| packet.media == Media::Video)
        .filter_map(|packet| packet.starts_at)
        .collect();
    let [first, .., before_last, last] = video_starts[..] else {
        return;
    };
    let video_end = last + (last - before_last);
    // Each audio PES: its first packet's index, its start and the frames it carries.
    let mut audio_pes: Vec<(usize, u64, AdtsFrames)> = Vec::new();
    for (index, packet) in packets.iter().enumerate() {
        if packet.media != Media::Audio {
            continue;
        }
        let header = PacketHeader::parse(&packet.packet);
        let Some(payload) = header.payload_offset(&packet.packet) else {
            continue;
        };
        let data = match packet.starts_at {
            Some(start) => {
                let mut frames = AdtsFrames::default();
                frames.start();
                audio_pes.push((index, start, frames));
                pes_data_offset(&packet.packet, payload)
            }
            None => Some(payload),
        };
        if let (Some((_, _, frames)), Some(data)) = (audio_pes.last_mut(), data) {
            frames.feed(&packet.packet[data..]);
        }
    }
    // The packet index range of the audio PES kept.
    let kept_from = audio_pes
        .iter()
        .find(|(_, start, _)| *start >= first)
        .map_or(usize::MAX, |(index, _, _)| *index);
    let kept_until = audio_pes
        .iter()
        .find(|(_, start, frames)| start + frames.duration_ticks().unwrap_or(0) > video_end)
        .map_or(usize::MAX, |(index, _, _)| *index);
    let mut index = 0;
    packets.retain(|packet| {
        index += 1;
        packet.media != Media::Audio || (kept_from..kept_until).contains(&(index - 1))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage_harness::ffmpeg_media;
    use crate::stream_shape::VideoShape;

    #[test]
    fn a_clip_loops_from_its_first_keyframe_and_one_frame_is_refused() {
        let video_only = StreamShape {
            video: Some(VideoShape {
                width: 320,
                height: 180,
                frame_rate: (25, 1),
            }),
            audio: None,
        };
        let clip =
            read_ts_clip(Bytes::from(ffmpeg_media("mpegts", &["-an"])), &video_only).unwrap();
        assert_eq!(clip.packets[0].starts_at, Some(0));
        assert_eq!(clip.packets[0].media, Media::Video);
        let frames = clip
            .packets
            .iter()
            .filter(|packet| packet.starts_at.is_some())
            .count();
        assert_eq!(frames, 25);
        let one_frame = ffmpeg_media("mpegts", &["-an", "-frames:v", "1"]);
        let error = read_ts_clip(Bytes::from(one_frame), &video_only).unwrap_err();
        assert!(error.contains("at least two"), "{error}");
        // A stream with audio needs a clip with audio.
        let with_audio = StreamShape {
            audio: Some(AudioShape::from_audio_specific_config(&[0x12, 0x10]).unwrap()),
            ..video_only
        };
        let silent = ffmpeg_media("mpegts", &["-an"]);
        let error = read_ts_clip(Bytes::from(silent), &with_audio).unwrap_err();
        assert!(
            error.contains("has audio but the filler has none"),
            "{error}"
        );
    }
}
