//! The FLV tag stream a publisher sends, read from the chunks a timeline stage writes: each
//! tag's kind, 32-bit timestamp and body (an RTMP audio, video or data message is an FLV tag's
//! body). File headers are skipped wherever they stand, since a stage begins every new session
//! with one. A body that arrives in one chunk is passed on as a slice of it, not copied.

use bytes::{Bytes, BytesMut};

use crate::tag::{
    FlvError, TagHeader, TagKind, FILE_HEADER_LEN, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
};

/// One tag of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub kind: TagKind,
    /// Milliseconds: the 24 bits and the extension byte of the tag header.
    pub timestamp: u32,
    pub body: Bytes,
}

impl FlvTag {
    /// Whether the tag carries a frame (video or audio data), not a sequence header, a sequence
    /// end or metadata: the legacy AVC and AAC packet types and enhanced RTMP's.
    pub fn is_frame(&self) -> bool {
        let (Some(&first), second) = (self.body.first(), self.body.get(1)) else {
            return false;
        };
        match self.kind {
            TagKind::Script => false,
            // Enhanced RTMP: CodedFrames (1) or CodedFramesX (3).
            TagKind::Video if first & 0x80 != 0 => matches!(first & 0x0F, 1 | 3),
            // AVC: packet type 1 is a NALU; other legacy codecs carry frames only.
            TagKind::Video => first & 0x0F != 7 || second == Some(&1),
            // AAC: packet type 1 is raw data.
            TagKind::Audio if first >> 4 == 10 => second == Some(&1),
            // Enhanced audio: CodedFrames (1).
            TagKind::Audio if first >> 4 == 9 => first & 0x0F == 1,
            TagKind::Audio => true,
        }
    }

    /// The enhanced-RTMP FourCC of an audio or video tag with an extended header (`hvc1`,
    /// `av01`, `vp09`, `Opus`, …): what `connect`'s `fourCcList` names.
    pub fn enhanced_fourcc(&self) -> Option<[u8; 4]> {
        let first = *self.body.first()?;
        // Multitrack and ModEx packets (video 6 and 7, audio 5 and 7) carry their FourCCs
        // elsewhere.
        let enhanced = match self.kind {
            TagKind::Video => first & 0x80 != 0 && first & 0x0F <= 5,
            TagKind::Audio => first >> 4 == 9 && first & 0x0F <= 4,
            TagKind::Script => false,
        };
        let fourcc = self.body.get(1..5)?;
        enhanced.then(|| [fourcc[0], fourcc[1], fourcc[2], fourcc[3]])
    }
}

#[derive(Debug)]
enum Reading {
    /// At a boundary: a tag header, or a file header, is being collected.
    Header,
    /// The rest of a file header and its `PreviousTagSize0`.
    SkipFileHeader(usize),
    Body {
        kind: TagKind,
        timestamp: u32,
        left: usize,
    },
    /// The tag's `PreviousTagSize`.
    Trailer(usize),
}

/// Reads tags out of chunks of an FLV stream.
#[derive(Debug)]
pub struct FlvTagReader {
    reading: Reading,
    header: Vec<u8>,
    parts: Vec<Bytes>,
    offset: u64,
}

impl Default for FlvTagReader {
    fn default() -> Self {
        Self {
            reading: Reading::Header,
            header: Vec::with_capacity(TAG_HEADER_LEN),
            parts: Vec::new(),
            offset: 0,
        }
    }
}

impl FlvTagReader {
    /// Reads `chunk`; every tag it completes is appended to `tags`.
    pub fn push(&mut self, mut chunk: Bytes, tags: &mut Vec<FlvTag>) -> Result<(), FlvError> {
        while !chunk.is_empty() {
            match &mut self.reading {
                Reading::Header => {
                    let wanted = TAG_HEADER_LEN - self.header.len();
                    let take = wanted.min(chunk.len());
                    self.header.extend_from_slice(&chunk.split_to(take));
                    self.offset += take as u64;
                    if self.header.starts_with(b"FLV") {
                        // A file header (DataOffset bytes, 9 in FLV 1, then PreviousTagSize0):
                        // skip it whole.
                        if self.header.len() >= FILE_HEADER_LEN {
                            let data_offset = u32::from_be_bytes([
                                self.header[5],
                                self.header[6],
                                self.header[7],
                                self.header[8],
                            ]) as usize;
                            let taken = self.header.len();
                            self.header.clear();
                            self.reading = Reading::SkipFileHeader(
                                (data_offset.max(FILE_HEADER_LEN) + PREVIOUS_TAG_SIZE_LEN)
                                    .saturating_sub(taken),
                            );
                        }
                        continue;
                    }
                    if self.header.len() < TAG_HEADER_LEN {
                        continue;
                    }
                    let header = std::mem::take(&mut self.header);
                    let bytes: &[u8; TAG_HEADER_LEN] =
                        header[..].try_into().expect("a whole tag header");
                    let TagHeader {
                        kind,
                        data_size,
                        timestamp,
                    } = match TagKind::from_type_byte(header[0] & 0x1F) {
                        // A tag the model refuses (an encrypted one) says why.
                        Some(_) => TagHeader::parse(bytes)?,
                        None => {
                            return Err(FlvError::NotATag {
                                offset: self.offset - TAG_HEADER_LEN as u64,
                                type_byte: header[0],
                            })
                        }
                    };
                    let left = data_size as usize;
                    self.header = header;
                    self.header.clear();
                    // A tag without a body is whole at its header, wherever the chunk ends.
                    if left == 0 {
                        tags.push(FlvTag {
                            kind,
                            timestamp,
                            body: Bytes::new(),
                        });
                        self.reading = Reading::Trailer(PREVIOUS_TAG_SIZE_LEN);
                        continue;
                    }
                    self.reading = Reading::Body {
                        kind,
                        timestamp,
                        left,
                    };
                }
                Reading::SkipFileHeader(left) | Reading::Trailer(left) => {
                    let take = (*left).min(chunk.len());
                    let _ = chunk.split_to(take);
                    self.offset += take as u64;
                    *left -= take;
                    if *left == 0 {
                        self.reading = Reading::Header;
                    }
                }
                Reading::Body {
                    kind,
                    timestamp,
                    left,
                } => {
                    let take = (*left).min(chunk.len());
                    self.parts.push(chunk.split_to(take));
                    self.offset += take as u64;
                    *left -= take;
                    if *left == 0 {
                        let body = match self.parts.len() {
                            1 => self.parts.pop().unwrap(),
                            _ => {
                                let mut body = BytesMut::new();
                                for part in self.parts.drain(..) {
                                    body.extend_from_slice(&part);
                                }
                                body.freeze()
                            }
                        };
                        self.parts.clear();
                        tags.push(FlvTag {
                            kind: *kind,
                            timestamp: *timestamp,
                            body,
                        });
                        self.reading = Reading::Trailer(PREVIOUS_TAG_SIZE_LEN);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the reader stands between tags (a fragment that ends elsewhere was cut short).
    pub fn at_boundary(&self) -> bool {
        matches!(self.reading, Reading::Header) && self.header.is_empty()
    }

    /// Forgets a partly read tag (the fragment was aborted).
    pub fn reset(&mut self) {
        self.reading = Reading::Header;
        self.header.clear();
        self.parts.clear();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tag_bytes(type_byte: u8, timestamp: u32, body: &[u8]) -> Vec<u8> {
        let size = body.len() as u32;
        let [_, s1, s2, s3] = size.to_be_bytes();
        let [t3, t0, t1, t2] = timestamp.to_be_bytes();
        let mut bytes = vec![type_byte, s1, s2, s3, t0, t1, t2, t3, 0, 0, 0];
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(&(size + 11).to_be_bytes());
        bytes
    }

    fn file_header() -> Vec<u8> {
        let mut bytes = b"FLV\x01\x05\x00\x00\x00\x09".to_vec();
        bytes.extend_from_slice(&[0; 4]);
        bytes
    }

    #[test]
    fn a_tag_without_a_body_is_read_when_its_header_is() {
        let mut reader = FlvTagReader::default();
        let mut tags = Vec::new();
        let empty = tag_bytes(9, 5, b"");
        reader
            .push(Bytes::copy_from_slice(&empty[..11]), &mut tags)
            .unwrap();
        assert_eq!(tags.len(), 1);
        assert!(tags[0].body.is_empty());
    }

    #[test]
    fn a_file_header_is_skipped_to_its_data_offset() {
        // DataOffset 12: three bytes of header extension before PreviousTagSize0.
        let mut stream = b"FLV\x01\x05\x00\x00\x00\x0cext".to_vec();
        stream.extend_from_slice(&[0; 4]);
        stream.extend(tag_bytes(8, 7, b"\xaf\x01a"));
        for split in [1, 5, stream.len()] {
            let mut reader = FlvTagReader::default();
            let mut tags = Vec::new();
            for piece in stream.chunks(split) {
                reader
                    .push(Bytes::copy_from_slice(piece), &mut tags)
                    .unwrap();
            }
            assert_eq!(tags.len(), 1, "split {split}");
            assert_eq!(
                (tags[0].timestamp, &tags[0].body[..]),
                (7, &b"\xaf\x01a"[..])
            );
        }
    }

    #[test]
    fn a_body_in_one_chunk_is_passed_on_without_a_copy() {
        let mut reader = FlvTagReader::default();
        let mut tags = Vec::new();
        reader.push(Bytes::from(file_header()), &mut tags).unwrap();
        let body = Bytes::from_static(b"\x17\x01video");
        let header = tag_bytes(9, 0x0100_0002, &body);
        reader
            .push(Bytes::copy_from_slice(&header[..11]), &mut tags)
            .unwrap();
        reader.push(body.clone(), &mut tags).unwrap();
        reader
            .push(Bytes::from_static(&[0, 0, 0, 18]), &mut tags)
            .unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].timestamp, 0x0100_0002, "the extension byte counts");
        assert_eq!(tags[0].body.as_ptr(), body.as_ptr());
        assert!(reader.at_boundary());
    }

    #[test]
    fn frames_are_told_from_headers() {
        let tag = |kind, body: &'static [u8]| FlvTag {
            kind,
            timestamp: 0,
            body: Bytes::from_static(body),
        };
        assert!(
            !tag(TagKind::Video, &[0x17, 0, 0, 0, 0]).is_frame(),
            "AVC header"
        );
        assert!(tag(TagKind::Video, &[0x17, 1, 0, 0, 0]).is_frame());
        assert!(
            !tag(TagKind::Video, &[0x90, b'h', b'v', b'c', b'1']).is_frame(),
            "HEVC start"
        );
        assert!(tag(TagKind::Video, &[0xA1, b'h', b'v', b'c', b'1']).is_frame());
        assert!(
            !tag(TagKind::Audio, &[0xAF, 0, 0x12, 0x10]).is_frame(),
            "AAC header"
        );
        assert!(tag(TagKind::Audio, &[0xAF, 1, 0x21]).is_frame());
        assert!(!tag(TagKind::Script, &[2, 0, 10]).is_frame());
        assert_eq!(
            tag(TagKind::Video, &[0x90, b'h', b'v', b'c', b'1']).enhanced_fourcc(),
            Some(*b"hvc1")
        );
        assert_eq!(
            tag(TagKind::Audio, &[0x91, b'O', b'p', b'u', b's']).enhanced_fourcc(),
            Some(*b"Opus")
        );
        assert_eq!(
            tag(TagKind::Video, &[0x17, 0, 0, 0, 0]).enhanced_fourcc(),
            None
        );
        assert_eq!(
            tag(TagKind::Audio, &[0xAF, 0, 0x12, 0x10]).enhanced_fourcc(),
            None
        );
    }

    #[test]
    fn what_is_not_flv_is_named_with_its_offset() {
        let mut reader = FlvTagReader::default();
        let error = reader
            .push(Bytes::from_static(&[0x47; 20]), &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            error,
            FlvError::NotATag {
                offset: 0,
                type_byte: 0x47
            }
        );
    }

    proptest! {
        #[test]
        fn tags_split_anywhere_and_file_headers_anywhere_read_back(
            tags in prop::collection::vec(
                (prop_oneof![Just(8u8), Just(9), Just(18)], any::<u32>(), prop::collection::vec(any::<u8>(), 0..300), any::<bool>()),
                1..30,
            ),
            cuts in prop::collection::vec(1usize..400, 1..10),
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (type_byte, timestamp, body, header_first) in &tags {
                if *header_first {
                    stream.extend_from_slice(&file_header());
                }
                stream.extend_from_slice(&tag_bytes(*type_byte, *timestamp, body));
                let kind = match type_byte { 8 => TagKind::Audio, 9 => TagKind::Video, _ => TagKind::Script };
                expected.push(FlvTag { kind, timestamp: *timestamp, body: Bytes::copy_from_slice(body) });
            }
            let mut reader = FlvTagReader::default();
            let mut read = Vec::new();
            let mut rest = &stream[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*cut).min(rest.len()));
                rest = tail;
                reader.push(Bytes::copy_from_slice(piece), &mut read).unwrap();
            }
            prop_assert_eq!(read, expected);
            prop_assert!(reader.at_boundary());
        }
    }
}
