//! FLV's structures: the file header, tag headers, and what a tag's first bytes say it is.

use thiserror::Error;

/// Bytes of the file header of FLV version 1.
pub const FILE_HEADER_LEN: usize = 9;
/// The 9-byte FLV file header of version 1 with an audio and a video stream, as the joined
/// stream's header (`FLV`, version 1, flags, data offset 9).
pub const FILE_HEADER: [u8; FILE_HEADER_LEN] = [b'F', b'L', b'V', 1, 0b101, 0, 0, 0, 9];
/// Bytes of a tag header: type, data size (24 bits), timestamp (24 + 8 bits), stream id.
pub const TAG_HEADER_LEN: usize = 11;
/// Bytes of the `PreviousTagSize` field after the file header and after each tag.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;

/// A tag's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Audio,
    Video,
    /// `onMetaData` and other AMF script data.
    Script,
}

impl TagKind {
    /// The tag type of a tag header.
    pub fn type_byte(self) -> u8 {
        match self {
            Self::Audio => 8,
            Self::Video => 9,
            Self::Script => 18,
        }
    }

    /// The kind a tag type (the low five bits of a tag header's first byte) names.
    pub fn from_type_byte(byte: u8) -> Option<Self> {
        [Self::Audio, Self::Video, Self::Script]
            .into_iter()
            .find(|kind| kind.type_byte() == byte)
    }
}

/// What is wrong with bytes that should be FLV.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    /// A malformed FLV structure, in words.
    #[error("{0}")]
    Malformed(String),
    /// Bytes of a tag stream that are no FLV tag, at `offset` of the stream.
    #[error("byte {offset} of the stream is not an FLV tag (type {type_byte}): the sink needs FLV tags, which the flv-timeline, fmp4-to-flv or mpegts-to-flv stage writes")]
    NotATag { offset: u64, type_byte: u8 },
}

/// Reads an FLV file header; returns the data offset (where the first `PreviousTagSize`
/// begins).
pub fn read_file_header(header: &[u8; FILE_HEADER_LEN]) -> Result<u32, FlvError> {
    if &header[..3] != b"FLV" {
        return Err(FlvError::Malformed(format!(
            "it does not begin with an FLV header (it begins with {:02x?})",
            &header[..3]
        )));
    }
    let offset = u32::from_be_bytes(header[5..9].try_into().unwrap());
    if offset < 9 {
        return Err(FlvError::Malformed(format!(
            "its FLV header gives data offset {offset}"
        )));
    }
    Ok(offset)
}

/// An FLV tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeader {
    pub kind: TagKind,
    pub data_size: u32,
    /// Milliseconds, the extended byte included.
    pub timestamp: u32,
}

impl TagHeader {
    pub fn parse(bytes: &[u8; TAG_HEADER_LEN]) -> Result<Self, FlvError> {
        let type_byte = bytes[0] & 0x1f;
        let kind = TagKind::from_type_byte(type_byte).ok_or_else(|| {
            FlvError::Malformed(format!(
                "tag type {type_byte} is not audio, video or script"
            ))
        })?;
        if bytes[0] & 0x20 != 0 {
            return Err(FlvError::Malformed(
                "an encrypted tag (filter bit set)".into(),
            ));
        }
        let data_size = u32::from_be_bytes([0, bytes[1], bytes[2], bytes[3]]);
        let timestamp = u32::from_be_bytes([bytes[7], bytes[4], bytes[5], bytes[6]]);
        Ok(Self {
            kind,
            data_size,
            timestamp,
        })
    }

    /// The header with `timestamp` instead.
    pub fn with_timestamp(bytes: &[u8; TAG_HEADER_LEN], timestamp: u32) -> [u8; TAG_HEADER_LEN] {
        let mut header = *bytes;
        let [extended, high, middle, low] = timestamp.to_be_bytes();
        header[4..8].copy_from_slice(&[high, middle, low, extended]);
        header
    }
}

/// What the first bytes of an audio or video tag's data say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A decoder configuration (AVC/HEVC sequence header, AAC AudioSpecificConfig, or an
    /// enhanced-FLV sequence start).
    SequenceHeader,
    /// The end of a sequence (AVC end of sequence, enhanced sequence end).
    SequenceEnd,
    /// Media: a frame or audio packet.
    Media,
}

/// How many bytes of a tag's data [`classify`] needs.
pub const CLASSIFY_LEN: usize = 2;

/// Classifies an audio or video tag by its first [`CLASSIFY_LEN`] data bytes (fewer if the
/// tag is that short).
pub fn classify(kind: TagKind, data: &[u8]) -> Payload {
    let (Some(&first), second) = (data.first(), data.get(1).copied()) else {
        return Payload::Media;
    };
    match kind {
        TagKind::Video if first & 0x80 != 0 => match first & 0x0f {
            // Enhanced FLV: the packet type is in the low bits (SequenceStart, or AV1's
            // MPEG2TSSequenceStart).
            0 | 5 => Payload::SequenceHeader,
            2 => Payload::SequenceEnd,
            _ => Payload::Media,
        },
        // Enhanced audio (sound format 9, ExHeader): SequenceStart or MultichannelConfig.
        TagKind::Audio if first >> 4 == 9 => match first & 0x0f {
            0 | 4 => Payload::SequenceHeader,
            2 => Payload::SequenceEnd,
            _ => Payload::Media,
        },
        // AVC (7) and the pre-standard HEVC id (12) carry an AVCPacketType.
        TagKind::Video if matches!(first & 0x0f, 7 | 12) => match second {
            Some(0) => Payload::SequenceHeader,
            Some(2) => Payload::SequenceEnd,
            _ => Payload::Media,
        },
        // AAC (10) carries an AACPacketType.
        TagKind::Audio if first >> 4 == 10 && second == Some(0) => Payload::SequenceHeader,
        _ => Payload::Media,
    }
}

/// Whether a video tag whose data begins with `data` is a keyframe: FLV and enhanced FLV alike
/// keep the frame type (1: keyframe) in bits 4-6 of the first byte.
pub fn is_video_keyframe(data: &[u8]) -> bool {
    data.first().is_some_and(|first| (first >> 4) & 0x07 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_headers_read_and_write_the_extended_timestamp() {
        let bytes = [9, 0, 1, 0, 0x12, 0x34, 0x56, 0x01, 0, 0, 0];
        let header = TagHeader::parse(&bytes).unwrap();
        assert_eq!(header.kind, TagKind::Video);
        assert_eq!(header.data_size, 256);
        assert_eq!(header.timestamp, 0x0112_3456);
        let moved = TagHeader::with_timestamp(&bytes, 0x0200_0001);
        assert_eq!(TagHeader::parse(&moved).unwrap().timestamp, 0x0200_0001);
        assert!(TagHeader::parse(&[7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn sequence_headers_are_recognised() {
        assert_eq!(
            classify(TagKind::Video, &[0x17, 0]),
            Payload::SequenceHeader
        );
        assert_eq!(classify(TagKind::Video, &[0x17, 1]), Payload::Media);
        assert_eq!(classify(TagKind::Video, &[0x17, 2]), Payload::SequenceEnd);
        assert_eq!(
            classify(TagKind::Video, &[0x90, 0]),
            Payload::SequenceHeader
        );
        assert_eq!(
            classify(TagKind::Audio, &[0xaf, 0]),
            Payload::SequenceHeader
        );
        assert_eq!(classify(TagKind::Audio, &[0xaf, 1]), Payload::Media);
        assert_eq!(classify(TagKind::Audio, &[0x2f, 0]), Payload::Media);
        // Enhanced audio (Opus): SequenceStart, CodedFrames, SequenceEnd.
        assert_eq!(
            classify(TagKind::Audio, b"\x90Opus"),
            Payload::SequenceHeader
        );
        assert_eq!(classify(TagKind::Audio, b"\x91Opus"), Payload::Media);
        assert_eq!(classify(TagKind::Audio, b"\x92Opus"), Payload::SequenceEnd);
        assert!(read_file_header(b"FLV\x01\x05\0\0\0\x09").is_ok());
        assert!(read_file_header(b"\0\0\0\x18ftyp\0").is_err());
    }
}
