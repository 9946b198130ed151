//! MP4 samples as FLV tags: what each track becomes, and one tag per sample.

use bytes::Bytes;
use streampub_core::plugin::StageOutput;

use crate::flv::{MediaKind, TagHeader, TAG_HEADER_LEN};
use crate::mp4::samples::Sample;
use crate::mp4::TrackDescription;

/// What one of the stream's tracks becomes in FLV.
#[derive(Debug, Clone)]
pub(crate) struct FlvTrack {
    pub(crate) track_id: u32,
    pub(crate) timescale: u32,
    pub(crate) kind: MediaKind,
    /// The sequence header's body: `avcC`, or the AudioSpecificConfig.
    pub(crate) configuration: Bytes,
}

/// One FLV tag to write: its header fields, the codec bytes and the sample.
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    pub(crate) kind: MediaKind,
    /// The decoder configuration the sample needs (its track's sequence header body).
    pub(crate) configuration: Bytes,
    /// The sample's decode time in milliseconds on the stream's timeline.
    pub(crate) decode_ms: i128,
    /// How long it lasts, in milliseconds (rounded from ticks).
    pub(crate) duration_ms: i128,
    prefix: Vec<u8>,
    body: Bytes,
}

impl Tag {
    /// The sequence header of `kind` carrying `configuration`, at `decode_ms`.
    pub(crate) fn sequence_header(kind: MediaKind, configuration: Bytes, decode_ms: i128) -> Self {
        let prefix: &[u8] = match kind {
            MediaKind::Video => &[0x17, 0, 0, 0, 0],
            MediaKind::Audio => &[0xaf, 0],
        };
        Self {
            kind,
            body: configuration.clone(),
            configuration,
            decode_ms,
            duration_ms: 0,
            prefix: prefix.to_vec(),
        }
    }

    /// Whether it is a video keyframe (a decoder can start at it).
    pub(crate) fn is_keyframe(&self) -> bool {
        self.kind == MediaKind::Video && self.prefix.first() == Some(&0x17)
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
            self.kind.type_byte(),
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
    let timescale = i128::from(timescale);
    (ticks * 1000 + timescale / 2).div_euclid(timescale)
}

/// The tag of a sample: decode time and composition time in milliseconds, each rounded from
/// exact ticks.
pub(crate) fn tag_of(track: &FlvTrack, sample: &Sample, body: Bytes) -> Tag {
    let decode = i128::from(sample.decode_time);
    let decode_ms = milliseconds(decode, track.timescale);
    let prefix = match track.kind {
        MediaKind::Video => {
            let presentation_ms = milliseconds(
                decode + i128::from(sample.composition_offset),
                track.timescale,
            );
            // A negative composition time would make ffmpeg doubt the decode times.
            let composition = (presentation_ms - decode_ms).clamp(0, 0x7f_ffff) as u32;
            let frame = if sample.sync { 0x17 } else { 0x27 };
            let [_, c1, c2, c3] = composition.to_be_bytes();
            vec![frame, 1, c1, c2, c3]
        }
        MediaKind::Audio => vec![0xaf, 1],
    };
    Tag {
        kind: track.kind,
        configuration: track.configuration.clone(),
        decode_ms,
        duration_ms: milliseconds(decode + i128::from(sample.duration), track.timescale)
            - decode_ms,
        prefix,
        body,
    }
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
    let (kind, configuration) = match &entry.format.0 {
        b"avc1" | b"avc3" => (
            MediaKind::Video,
            configuration(b"avcC").ok_or_else(|| "its H.264 track has no avcC".to_owned())?,
        ),
        b"mp4a" => {
            let setup =
                configuration(b"esds").ok_or_else(|| "its AAC track has no esds".to_owned())?;
            // Object type 0x40: MPEG-4 audio (AAC); then the stream type, then the config.
            if setup.first() != Some(&0x40) || setup.len() < 3 {
                return Err("its mp4a track is not AAC".to_owned());
            }
            (MediaKind::Audio, setup[2..].to_vec())
        }
        other => {
            let codec = match other {
                b"hvc1" | b"hev1" => "HEVC (hevc)".to_owned(),
                b"av01" => "AV1".to_owned(),
                b"vp09" => "VP9".to_owned(),
                b"Opus" => "Opus".to_owned(),
                _ => String::from_utf8_lossy(other).into_owned(),
            };
            return Err(format!(
                "track {} is {codec}, which FLV carries only with enhanced RTMP; transcode \
                 upstream to H.264 video and AAC audio, or set `ffmpeg_input: mp4` on the \
                 ffmpeg-rtmp sink so that an ffmpeg with enhanced-RTMP support (6.1 or newer \
                 for HEVC and AV1, 7.1 for Opus) publishes it",
                track.track_id
            ));
        }
    };
    Ok(FlvTrack {
        track_id: track.track_id,
        timescale: track.timescale,
        kind,
        configuration: Bytes::from(configuration),
    })
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
