//! MP4 samples as FLV tags: what each track becomes, and one tag per sample.
//!
//! H.264 and AAC are FLV's own (codec id 7, sound format 10). HEVC, AV1 and VP9 video and Opus
//! audio are written as enhanced RTMP (veovera's enhanced-rtmp v1 and v2) describes:
//! `IsExHeader` set, the packet type (`SequenceStart`, `CodedFrames`, `CodedFramesX`) in the
//! low nibble and the codec's FourCC after it; the sequence start carries the decoder
//! configuration record as MP4 holds it (`hvcC`, `av1C`, `vpcC` with its version and flags),
//! Opus's the `OpusHead` of RFC 7845 made from MP4's `dOps`. HEVC frames carry a composition
//! time (`CodedFrames`) unless it is 0 (`CodedFramesX`); AV1 and VP9 have none.

use bytes::Bytes;
use streampub_core::plugin::StageOutput;

use crate::formats::flv::{MediaKind, TagHeader, TAG_HEADER_LEN};
use crate::formats::mp4::samples::Sample;
use crate::formats::mp4::TrackDescription;

/// How a track's samples are written in FLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlvCodec {
    /// H.264, FLV's video codec 7.
    Avc,
    /// AAC, FLV's sound format 10.
    Aac,
    /// Enhanced RTMP video by FourCC: `hvc1`, `av01`, `vp09`.
    EnhancedVideo([u8; 4]),
    /// Enhanced RTMP audio by FourCC: `Opus`.
    EnhancedAudio([u8; 4]),
}

/// Enhanced RTMP's packet types (the low nibble after `IsExHeader`).
const SEQUENCE_START: u8 = 0;
const CODED_FRAMES: u8 = 1;
const CODED_FRAMES_X: u8 = 3;
/// `IsExHeader` of a video tag; the sound format that says the same of an audio tag (9).
const VIDEO_EX_HEADER: u8 = 0x80;
const AUDIO_EX_HEADER: u8 = 0x90;

impl FlvCodec {
    pub(crate) fn kind(self) -> MediaKind {
        match self {
            Self::Avc | Self::EnhancedVideo(_) => MediaKind::Video,
            Self::Aac | Self::EnhancedAudio(_) => MediaKind::Audio,
        }
    }

    /// Whether it is FLV's own (H.264, AAC), not enhanced RTMP's.
    pub(crate) fn is_legacy(self) -> bool {
        matches!(self, Self::Avc | Self::Aac)
    }

    /// `onMetaData`'s `videocodecid`/`audiocodecid`: FLV's number, or the FourCC as one.
    pub(crate) fn codec_id(self) -> f64 {
        match self {
            Self::Avc => 7.0,
            Self::Aac => 10.0,
            Self::EnhancedVideo(fourcc) | Self::EnhancedAudio(fourcc) => {
                f64::from(u32::from_be_bytes(fourcc))
            }
        }
    }

    /// The codec bytes before a sequence header's body.
    fn sequence_header_prefix(self) -> Vec<u8> {
        match self {
            Self::Avc => vec![0x17, 0, 0, 0, 0],
            Self::Aac => vec![0xaf, 0],
            Self::EnhancedVideo(fourcc) => {
                ex_header(VIDEO_EX_HEADER | 0x10 | SEQUENCE_START, fourcc)
            }
            Self::EnhancedAudio(fourcc) => ex_header(AUDIO_EX_HEADER | SEQUENCE_START, fourcc),
        }
    }

    /// The codec bytes before a sample: frame type, packet type, composition time (ms,
    /// where the codec has one).
    fn sample_prefix(self, keyframe: bool, composition: u32) -> Vec<u8> {
        let [_, c1, c2, c3] = composition.to_be_bytes();
        let frame_type = if keyframe { 0x10 } else { 0x20 };
        match self {
            Self::Avc => vec![frame_type | 0x07, 1, c1, c2, c3],
            Self::Aac => vec![0xaf, 1],
            Self::EnhancedVideo(fourcc) if &fourcc == b"hvc1" && composition != 0 => {
                let mut prefix = ex_header(VIDEO_EX_HEADER | frame_type | CODED_FRAMES, fourcc);
                prefix.extend_from_slice(&[c1, c2, c3]);
                prefix
            }
            Self::EnhancedVideo(fourcc) if &fourcc == b"hvc1" => {
                ex_header(VIDEO_EX_HEADER | frame_type | CODED_FRAMES_X, fourcc)
            }
            Self::EnhancedVideo(fourcc) => {
                ex_header(VIDEO_EX_HEADER | frame_type | CODED_FRAMES, fourcc)
            }
            Self::EnhancedAudio(fourcc) => ex_header(AUDIO_EX_HEADER | CODED_FRAMES, fourcc),
        }
    }
}

fn ex_header(first: u8, fourcc: [u8; 4]) -> Vec<u8> {
    let mut prefix = vec![first];
    prefix.extend_from_slice(&fourcc);
    prefix
}

/// A track's decoder configuration: its codec and the sequence header's body (`avcC`, the
/// AudioSpecificConfig, `hvcC`, `av1C`, `vpcC`, `OpusHead`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Configuration {
    pub(crate) codec: FlvCodec,
    pub(crate) bytes: Bytes,
}

/// What one of the stream's tracks becomes in FLV.
#[derive(Debug, Clone)]
pub(crate) struct FlvTrack {
    pub(crate) track_id: u32,
    pub(crate) timescale: u32,
    pub(crate) configuration: Configuration,
}

impl FlvTrack {
    pub(crate) fn kind(&self) -> MediaKind {
        self.configuration.codec.kind()
    }
}

/// One FLV tag to write: its header fields, the codec bytes and the sample.
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    /// The decoder configuration the sample needs (its track's).
    pub(crate) configuration: Configuration,
    /// The sample's decode time in milliseconds on the stream's timeline.
    pub(crate) decode_ms: i128,
    /// How long it lasts, in milliseconds (rounded from ticks).
    pub(crate) duration_ms: i128,
    prefix: Vec<u8>,
    body: Bytes,
}

impl Tag {
    pub(crate) fn kind(&self) -> MediaKind {
        self.configuration.codec.kind()
    }

    /// The sequence header carrying `configuration`, at `decode_ms`.
    pub(crate) fn sequence_header(configuration: Configuration, decode_ms: i128) -> Self {
        Self {
            body: configuration.bytes.clone(),
            prefix: configuration.codec.sequence_header_prefix(),
            configuration,
            decode_ms,
            duration_ms: 0,
        }
    }

    /// The tag of one frame (`body`, as FLV carries it: AVCC, raw AAC, …) that needs
    /// `configuration`: decoded at `timing.0` ms, lasting `timing.1` ms, presented
    /// `composition_ms` after its decode time.
    pub(crate) fn frame(
        configuration: Configuration,
        timing: (i128, i128),
        keyframe: bool,
        composition_ms: i128,
        body: Bytes,
    ) -> Self {
        // A negative composition time would make ffmpeg doubt the decode times.
        let composition = composition_ms.clamp(0, 0x7f_ffff) as u32;
        Self {
            prefix: configuration.codec.sample_prefix(keyframe, composition),
            configuration,
            decode_ms: timing.0,
            duration_ms: timing.1,
            body,
        }
    }

    /// Whether it is a video keyframe (a decoder can start at it): frame type 1, in FLV's own
    /// video tags and enhanced ones alike.
    pub(crate) fn is_keyframe(&self) -> bool {
        self.kind() == MediaKind::Video
            && self
                .prefix
                .first()
                .is_some_and(|first| (first >> 4) & 0x07 == 1)
    }

    /// Its decode time, for pacing.
    pub(crate) fn media_time(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.decode_ms.max(0) as u64)
    }

    /// The same tag `shift_ms` later.
    pub(crate) fn shifted(&self, shift_ms: i128) -> Self {
        Self {
            decode_ms: self.decode_ms + shift_ms,
            ..self.clone()
        }
    }

    /// Writes the tag, its timestamp counted from the decode time `session_zero` (ms).
    pub(crate) fn write(self, session_zero: i128, output: &mut StageOutput) {
        let timestamp = (self.decode_ms - session_zero).rem_euclid(1 << 32) as u32;
        write_tag(
            self.kind().type_byte(),
            timestamp,
            &self.prefix,
            self.body,
            output,
        );
    }
}

/// FLV's tag type of script data (`onMetaData`).
pub(crate) const SCRIPT_TAG: u8 = 18;

/// Writes one FLV tag: header, `prefix` (the codec bytes) and `body`, then its size.
pub(crate) fn write_tag(
    type_byte: u8,
    timestamp: u32,
    prefix: &[u8],
    body: Bytes,
    output: &mut StageOutput,
) {
    let size = (prefix.len() + body.len()) as u32;
    let [_, s1, s2, s3] = size.to_be_bytes();
    let header =
        TagHeader::with_timestamp(&[type_byte, s1, s2, s3, 0, 0, 0, 0, 0, 0, 0], timestamp);
    let mut head = header.to_vec();
    head.extend_from_slice(prefix);
    output.push_chunk(Bytes::from(head));
    output.push_chunk(body);
    output.push_chunk(Bytes::copy_from_slice(
        &(size + TAG_HEADER_LEN as u32).to_be_bytes(),
    ));
}

/// Milliseconds of `ticks` at `timescale`, rounded.
pub(crate) fn milliseconds(ticks: i128, timescale: u32) -> i128 {
    rounded_division(ticks * 1000, i128::from(timescale))
}

/// `value / divisor` rounded to the nearest (halves up), for a positive divisor.
pub(crate) fn rounded_division(value: i128, divisor: i128) -> i128 {
    (value + divisor / 2).div_euclid(divisor)
}

/// The tag of a sample: decode time and composition time in milliseconds, each rounded from
/// exact ticks.
pub(crate) fn tag_of(track: &FlvTrack, sample: &Sample, body: Bytes) -> Tag {
    let decode = i128::from(sample.decode_time);
    let decode_ms = milliseconds(decode, track.timescale);
    let presentation_ms = milliseconds(
        decode + i128::from(sample.composition_offset),
        track.timescale,
    );
    let duration_ms =
        milliseconds(decode + i128::from(sample.duration), track.timescale) - decode_ms;
    Tag::frame(
        track.configuration.clone(),
        (decode_ms, duration_ms),
        sample.sync,
        presentation_ms - decode_ms,
        body,
    )
}

/// An `mdat` box as it was read: its header, then its payload in the pieces it came in (slices
/// of the chunks read: the samples are not copied, and no buffer the size of the box is
/// allocated, which over days would leave the allocator's heap fragmented).
#[derive(Debug, Default)]
pub(crate) struct MediaData {
    header_len: usize,
    parts: Vec<Bytes>,
    /// Where each part starts, counted from the box's first byte.
    starts: Vec<usize>,
    len: usize,
}

impl MediaData {
    /// An empty box whose header is `header_len` bytes.
    pub(crate) fn new(header_len: usize) -> Self {
        Self {
            header_len,
            len: header_len,
            ..Self::default()
        }
    }

    /// Appends a piece of the payload.
    pub(crate) fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.starts.push(self.len);
            self.len += part.len();
            self.parts.push(part);
        }
    }

    /// `len` bytes at `start` (counted from the box's first byte, within its payload): a slice
    /// of one piece, or a copy when they span pieces.
    fn get(&self, start: usize, len: usize) -> Option<Bytes> {
        if start < self.header_len || start.checked_add(len)? > self.len {
            return None;
        }
        let first = self
            .starts
            .partition_point(|part_start| *part_start <= start)
            - 1;
        let offset = start - self.starts[first];
        let part = &self.parts[first];
        if offset + len <= part.len() {
            return Some(part.slice(offset..offset + len));
        }
        let mut joined = Vec::with_capacity(len);
        let mut remaining = len;
        let mut at = offset;
        for part in &self.parts[first..] {
            let take = (part.len() - at).min(remaining);
            joined.extend_from_slice(&part[at..at + take]);
            remaining -= take;
            at = 0;
            if remaining == 0 {
                break;
            }
        }
        Some(Bytes::from(joined))
    }
}

/// The tags of one `moof`'s samples, whose data lies in `mdat` (right after a `moof` of
/// `moof_size` bytes), interleaved by decode time.
pub(crate) fn media_tags(
    tracks: &[FlvTrack],
    samples: &[Sample],
    moof_size: u64,
    mdat: &MediaData,
) -> Result<Vec<Tag>, String> {
    let mut tags = Vec::with_capacity(samples.len());
    for sample in samples {
        let body = sample
            .offset
            .checked_sub(moof_size)
            .and_then(|start| mdat.get(start as usize, sample.size as usize))
            .ok_or_else(|| {
                format!(
                    "a sample of track {} lies outside its mdat",
                    sample.track_id
                )
            })?;
        let track = tracks
            .iter()
            .find(|track| track.track_id == sample.track_id)
            .ok_or_else(|| format!("a sample of unknown track {}", sample.track_id))?;
        tags.push(tag_of(track, sample, body));
    }
    // A stable sort keeps each track's order.
    tags.sort_by_key(|tag| tag.decode_ms);
    Ok(tags)
}

/// What `track` becomes in FLV, or why FLV cannot carry it.
pub(crate) fn flv_track(track: &TrackDescription) -> Result<FlvTrack, String> {
    let entry = track
        .sample_entries
        .first()
        .ok_or_else(|| format!("track {} has no sample entry", track.track_id))?;
    let configuration = |kind: &[u8; 4]| {
        entry
            .configurations
            .iter()
            .find(|(box_kind, _)| &box_kind.0 == kind)
            .map(|(_, payload)| payload.clone())
    };
    let needed = |name: &str, kind: &[u8; 4]| {
        configuration(kind).ok_or_else(|| {
            format!(
                "its {name} track has no {} box",
                String::from_utf8_lossy(kind)
            )
        })
    };
    let (codec, bytes) = match &entry.format.0 {
        b"avc1" | b"avc3" => (FlvCodec::Avc, needed("H.264", b"avcC")?),
        b"mp4a" => {
            let setup = needed("AAC", b"esds")?;
            // Object type 0x40: MPEG-4 audio (AAC); then the stream type, then the config.
            if setup.first() != Some(&0x40) || setup.len() < 3 {
                return Err("its mp4a track is not AAC".to_owned());
            }
            (FlvCodec::Aac, setup[2..].to_vec())
        }
        // Both sample entries of HEVC carry an hvcC; enhanced RTMP names the codec `hvc1`.
        b"hvc1" | b"hev1" => (FlvCodec::EnhancedVideo(*b"hvc1"), needed("HEVC", b"hvcC")?),
        b"av01" => (FlvCodec::EnhancedVideo(*b"av01"), needed("AV1", b"av1C")?),
        b"vp09" => (FlvCodec::EnhancedVideo(*b"vp09"), needed("VP9", b"vpcC")?),
        b"Opus" => (
            FlvCodec::EnhancedAudio(*b"Opus"),
            opus_head(&needed("Opus", b"dOps")?)?,
        ),
        other => {
            return Err(format!(
                "track {} is {}, which FLV cannot carry, not even with enhanced RTMP; \
                 transcode upstream to H.264, HEVC, AV1 or VP9 video and AAC or Opus audio",
                track.track_id,
                String::from_utf8_lossy(other)
            ));
        }
    };
    Ok(FlvTrack {
        track_id: track.track_id,
        timescale: track.timescale,
        configuration: Configuration {
            codec,
            bytes: Bytes::from(bytes),
        },
    })
}

/// Why a track cannot go to a reader without enhanced RTMP (ffmpeg's FLV demuxer before 6.1),
/// and the ways out.
pub(crate) fn needs_enhanced_rtmp(track: &FlvTrack) -> Option<String> {
    let codec = match track.configuration.codec {
        FlvCodec::Avc | FlvCodec::Aac => return None,
        FlvCodec::EnhancedVideo(fourcc) if &fourcc == b"hvc1" => "HEVC (hevc)",
        FlvCodec::EnhancedVideo(fourcc) if &fourcc == b"av01" => "AV1",
        FlvCodec::EnhancedVideo(_) => "VP9",
        FlvCodec::EnhancedAudio(_) => "Opus",
    };
    Some(format!(
        "track {} is {codec}, which FLV carries only with enhanced RTMP; publish with the `rtmp` \
         sink (it speaks enhanced RTMP), transcode upstream to H.264 video and AAC audio, or set \
         `ffmpeg_input: mp4` on the ffmpeg-rtmp sink so that an ffmpeg with enhanced-RTMP \
         support (6.1 or newer for HEVC and AV1, 7.1 for Opus) publishes it",
        track.track_id
    ))
}

/// RFC 7845's `OpusHead` from MP4's `dOps` (the same fields, big-endian there and
/// little-endian here, after the magic; version 1).
pub(crate) fn opus_head(dops: &[u8]) -> Result<Vec<u8>, String> {
    if dops.len() < 11 || dops[0] != 0 {
        return Err("its Opus track's dOps box is not version 0 or too short".to_owned());
    }
    let channels = dops[1];
    let pre_skip = u16::from_be_bytes([dops[2], dops[3]]);
    let input_rate = u32::from_be_bytes([dops[4], dops[5], dops[6], dops[7]]);
    let gain = i16::from_be_bytes([dops[8], dops[9]]);
    let mapping_family = dops[10];
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, channels]);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&gain.to_le_bytes());
    head.push(mapping_family);
    // A mapping family other than 0: stream count, coupled count and the mapping, as they are.
    if mapping_family != 0 {
        let table = dops
            .get(11..13 + usize::from(channels))
            .ok_or_else(|| "its Opus track's dOps box has no channel mapping".to_owned())?;
        head.extend_from_slice(table);
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_slices_of_one_piece_or_copies_across_pieces() {
        let mut mdat = MediaData::new(8);
        for part in [&b"abcd"[..], b"", b"efg", b"hijklm"] {
            mdat.push(Bytes::copy_from_slice(part));
        }
        let get = |start, len| mdat.get(start, len).map(|bytes| bytes.to_vec());
        assert_eq!(get(8, 4), Some(b"abcd".to_vec()));
        assert_eq!(get(9, 2), Some(b"bc".to_vec()));
        assert_eq!(get(10, 6), Some(b"cdefgh".to_vec()));
        assert_eq!(get(8, 13), Some(b"abcdefghijklm".to_vec()));
        assert_eq!(get(20, 1), Some(b"m".to_vec()));
        assert_eq!(get(20, 2), None, "past the end");
        assert_eq!(get(7, 1), None, "in the header");
    }
}
