//! Reading one FLV file tag by tag: its file header once, script and end-of-sequence tags
//! dropped, sequence headers collected whole, media tags passed as slices of the chunks and
//! sent once whole (a tag cut short is dropped).

use std::time::Duration;

use bytes::Bytes;
use streampub_core::plugin::{StageError, StageOutput};

use super::stream_state::FlvTimeline;
use crate::formats::flv::{
    classify, is_video_keyframe, read_file_header, Payload, TagHeader, TagKind, CLASSIFY_LEN,
    FILE_HEADER, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
};
use crate::timeline_engine::{ChunkReader, FileReading, OpenFile};

/// The largest sequence header or script tag buffered; larger ones are rejected as corrupt.
const MAX_BUFFERED_TAG: u32 = 1 << 20;

/// Where the reading of a file is.
#[derive(Debug)]
enum TagReading {
    /// Collecting the 9-byte file header.
    FileHeader(Vec<u8>),
    /// Dropping the rest of the header (a data offset beyond 9) and `PreviousTagSize0`.
    SkipHeader(u64),
    /// Collecting an 11-byte tag header.
    TagHeader(Vec<u8>),
    /// Collecting the first bytes of an audio or video tag's data, to classify it.
    Classify {
        header: [u8; TAG_HEADER_LEN],
        tag: TagHeader,
        data: Vec<u8>,
    },
    /// Collecting a whole sequence header tag's data and its `PreviousTagSize`.
    Collect { tag: TagHeader, data: Vec<u8> },
    /// Taking the rest of a media tag's data and its `PreviousTagSize` (as slices, written
    /// when the tag is whole).
    Pass(u64),
    /// Dropping the rest of a dropped tag's data and its `PreviousTagSize`.
    Drop(u64),
}

/// The last tag of one stream in the current file, to tell how long the file lasts.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LastTag {
    timestamp: u32,
    interval: u32,
    pub(super) seen: bool,
}

impl LastTag {
    fn observe(&mut self, timestamp: u32) {
        if self.seen {
            self.interval = timestamp.wrapping_sub(self.timestamp);
        }
        self.timestamp = timestamp;
        self.seen = true;
    }

    /// Where this stream ends in the file, relative to `first`.
    fn end(&self, first: u32) -> u64 {
        if !self.seen {
            return 0;
        }
        u64::from(self.timestamp.wrapping_sub(first)) + u64::from(self.interval)
    }
}

/// The state of the file being read.
#[derive(Debug)]
pub(crate) struct FlvFile {
    reading: TagReading,
    /// Where the current tag began, for error messages.
    tag_start: u64,
    first_timestamp: Option<u32>,
    pub(super) video: LastTag,
    pub(super) audio: LastTag,
    /// The intervals between video tags, while the filler needs the stream's frame rate.
    pub(super) video_intervals: Option<Vec<u32>>,
    /// The media tag being passed (slices of the chunks read) and its time on the timeline,
    /// written once it is whole: a tag cut short is dropped, so no partial tag (or padding)
    /// reaches a decoder and the stream stays in sync.
    tag: Vec<Bytes>,
    tag_time: Duration,
    /// Whether a decoder can start at the tag being passed.
    tag_random_access: bool,
}

impl FlvFile {
    pub(super) fn new(video_intervals: Option<Vec<u32>>) -> Self {
        Self {
            reading: TagReading::FileHeader(Vec::with_capacity(9)),
            tag_start: 0,
            first_timestamp: None,
            video: LastTag::default(),
            audio: LastTag::default(),
            video_intervals,
            tag: Vec::new(),
            tag_time: Duration::ZERO,
            tag_random_access: false,
        }
    }

    /// Notes a media tag of `kind` at `timestamp` (the file's own).
    fn observe(&mut self, kind: TagKind, timestamp: u32) {
        match kind {
            TagKind::Video => {
                if let (Some(intervals), true) = (&mut self.video_intervals, self.video.seen) {
                    intervals.push(timestamp.wrapping_sub(self.video.timestamp));
                }
                self.video.observe(timestamp);
            }
            _ => self.audio.observe(timestamp),
        }
    }

    /// How long the file lasts, in milliseconds.
    pub(super) fn duration(&self) -> u64 {
        let Some(first) = self.first_timestamp else {
            return 0;
        };
        self.video.end(first).max(self.audio.end(first))
    }

    /// What is wrong with the file if it ended here.
    pub(super) fn problem_at_end(&self) -> Option<String> {
        let problem = match &self.reading {
            TagReading::TagHeader(bytes) if bytes.is_empty() => None,
            TagReading::FileHeader(_) | TagReading::SkipHeader(_) => {
                Some("it ends inside its file header".to_owned())
            }
            TagReading::TagHeader(_)
            | TagReading::Classify { .. }
            | TagReading::Collect { .. }
            | TagReading::Drop(_) => Some(format!(
                "it ends inside the tag at offset {}",
                self.tag_start
            )),
            TagReading::Pass(left) => Some(format!(
                "it ends {left} bytes before the end of the tag at offset {} (the tag is dropped)",
                self.tag_start
            )),
        };
        problem.or_else(|| {
            self.first_timestamp
                .is_none()
                .then(|| "it has no audio or video tag".to_owned())
        })
    }
}

impl FileReading for FlvTimeline {
    type File = FlvFile;

    fn read(
        &mut self,
        file: &mut OpenFile<FlvFile>,
        reader: &mut ChunkReader,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        while !reader.is_empty() {
            match &mut file.reading {
                TagReading::FileHeader(bytes) => {
                    if reader.fill(bytes, 9) {
                        let header: [u8; 9] = bytes.as_slice().try_into().unwrap();
                        let offset =
                            read_file_header(&header).map_err(|error| file.error(error))?;
                        let rest = u64::from(offset) - 9 + PREVIOUS_TAG_SIZE_LEN as u64;
                        file.reading = TagReading::SkipHeader(rest);
                        if self.header.is_none() {
                            let mut stream_header = FILE_HEADER;
                            stream_header[..5].copy_from_slice(&header[..5]);
                            self.header = Some(stream_header);
                        }
                    }
                }
                TagReading::SkipHeader(left) | TagReading::Drop(left) => {
                    reader.skip(Some(left));
                    if *left == 0 {
                        next_tag(file, reader);
                    }
                }
                TagReading::Pass(left) => {
                    let part = reader.take(Some(left));
                    let whole = *left == 0;
                    file.tag.push(part);
                    if whole {
                        let parts = std::mem::take(&mut file.tag);
                        let (time, random_access) = (file.tag_time, file.tag_random_access);
                        next_tag(file, reader);
                        self.send_media_tag(time, random_access, parts, output);
                    }
                }
                TagReading::TagHeader(bytes) => {
                    if reader.fill(bytes, TAG_HEADER_LEN) {
                        let header: [u8; TAG_HEADER_LEN] = bytes.as_slice().try_into().unwrap();
                        start_tag(file, header)?;
                    }
                }
                TagReading::Classify { tag, data, .. } => {
                    let wanted = (CLASSIFY_LEN as u32).min(tag.data_size) as usize;
                    if reader.fill(data, wanted) {
                        let TagReading::Classify { header, tag, data } =
                            std::mem::replace(&mut file.reading, TagReading::Drop(0))
                        else {
                            unreachable!("matched above");
                        };
                        self.classified(file, header, tag, data, output)?;
                    }
                }
                TagReading::Collect { tag, data } => {
                    let wanted = tag.data_size as usize + PREVIOUS_TAG_SIZE_LEN;
                    if reader.fill(data, wanted) {
                        let (tag, mut data) = (*tag, std::mem::take(data));
                        next_tag(file, reader);
                        data.truncate(tag.data_size as usize);
                        self.sequence_header(file, tag, Bytes::from(data), output);
                    }
                }
            }
        }
        Ok(())
    }
}

impl FlvTimeline {
    /// Where a tag of this file lies on the stream's timeline, unwrapped (for pacing).
    fn media_time(&self, file: &mut FlvFile, timestamp: u32) -> Duration {
        let first = *file.first_timestamp.get_or_insert(timestamp);
        Duration::from_millis(u64::from(timestamp.wrapping_sub(first)) + self.offset)
    }

    /// Handles an audio or video tag whose first data bytes are known.
    fn classified(
        &mut self,
        file: &mut OpenFile<FlvFile>,
        header: [u8; TAG_HEADER_LEN],
        tag: TagHeader,
        data: Vec<u8>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let rest = u64::from(tag.data_size) - data.len() as u64 + PREVIOUS_TAG_SIZE_LEN as u64;
        file.reading = match classify(tag.kind, &data) {
            Payload::SequenceEnd => TagReading::Drop(rest),
            Payload::SequenceHeader if tag.data_size > MAX_BUFFERED_TAG => {
                return Err(file.error(format!(
                    "the sequence header at offset {} claims {} bytes",
                    file.tag_start, tag.data_size
                )));
            }
            Payload::SequenceHeader => TagReading::Collect { tag, data },
            Payload::Media => {
                let media_time = self.media_time(file, tag.timestamp);
                let timestamp = media_time.as_millis() as u32;
                // Without video, a decoder can start at any audio frame.
                let has_video = self.configurations.video.is_some()
                    || self.header.is_some_and(|header| header[4] & 0x01 != 0);
                file.tag_random_access = match tag.kind {
                    TagKind::Video => is_video_keyframe(&data),
                    _ => !has_video,
                };
                file.observe(tag.kind, tag.timestamp);
                if !self.header_written {
                    self.write_session_start(output);
                }
                // After a filler with another configuration, the stream's again.
                self.send_stream_configuration(tag.kind, timestamp, output);
                file.tag_time = media_time;
                file.tag = vec![
                    Bytes::copy_from_slice(&TagHeader::with_timestamp(&header, timestamp)),
                    Bytes::from(data),
                ];
                TagReading::Pass(rest)
            }
        };
        Ok(())
    }

    /// Handles a complete sequence header tag: forwarded if new, dropped if known, a new
    /// session if it differs from the one in use.
    fn sequence_header(
        &mut self,
        file: &mut OpenFile<FlvFile>,
        tag: TagHeader,
        data: Bytes,
        output: &mut StageOutput,
    ) {
        // A sequence header marks the file's start on its stream's clock, like any tag.
        let timestamp = self.media_time(file, tag.timestamp).as_millis() as u32;
        let known = self.configurations.get(tag.kind).cloned();
        match known {
            Some(known) if known == data => {}
            Some(_) => {
                let stream = match tag.kind {
                    TagKind::Video => "video",
                    _ => "audio",
                };
                // Another stream: a filler made for it, at the end of this file.
                file.video_intervals.get_or_insert_with(Vec::new);
                self.filler.forget_clip();
                output.request_new_session(format!(
                    "fragment {}: the {stream} decoder configuration changed",
                    file.name()
                ));
                *self.configurations.get_mut(tag.kind) = Some(data);
                self.header_written = false;
                self.write_session_start(output);
            }
            None => {
                *self.configurations.get_mut(tag.kind) = Some(data);
                if self.header_written {
                    self.send_stream_configuration(tag.kind, timestamp, output);
                } else {
                    self.write_session_start(output);
                }
            }
        }
    }
}

/// The next tag header begins at the reader's position.
fn next_tag(file: &mut FlvFile, reader: &ChunkReader) {
    file.reading = TagReading::TagHeader(Vec::with_capacity(TAG_HEADER_LEN));
    file.tag_start = reader.position();
}

/// Handles a complete tag header.
fn start_tag(file: &mut OpenFile<FlvFile>, header: [u8; TAG_HEADER_LEN]) -> Result<(), StageError> {
    let tag = TagHeader::parse(&header)
        .map_err(|error| file.error(format!("tag at offset {}: {error}", file.tag_start)))?;
    let rest = u64::from(tag.data_size) + PREVIOUS_TAG_SIZE_LEN as u64;
    file.reading = match tag.kind {
        TagKind::Script => TagReading::Drop(rest),
        _ if tag.data_size == 0 => TagReading::Drop(rest),
        _ => TagReading::Classify {
            header,
            tag,
            data: Vec::with_capacity(CLASSIFY_LEN),
        },
    };
    Ok(())
}
