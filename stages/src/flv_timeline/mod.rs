//! The `flv-timeline` stage: joins FLV files into one continuous FLV stream.
//!
//! Each upstream file is a complete FLV file (header, `onMetaData`, sequence headers, then
//! audio and video tags) whose timestamps start at zero. Written one after another into one
//! ffmpeg, the second file header is read as garbage ("Unable to seek to the next packet") and
//! everything after it is lost. This stage writes one file header per session, drops every
//! script tag (`onMetaData` describes one file, not the stream), forwards each decoder
//! configuration (sequence header) once and drops repeats of it, drops end-of-sequence tags,
//! and moves every tag's timestamp onto one timeline:
//!
//! `new = old − (first timestamp of this file) + offset`
//!
//! where `offset` is where the previous file ended: its last tag of each stream plus that
//! stream's last interval between tags, the later of the two. FLV counts milliseconds, so
//! each join is exact to the millisecond; timestamps wrap after 2³² ms (49.7 days), as RTMP's
//! do. A different decoder configuration starts a new session (a new file header and the new
//! configuration follow). It streams: tag data passes through as slices of the incoming
//! chunks, each tag once it is whole (a tag cut short is dropped); only sequence headers and
//! script tags are copied.
//!
//! When the sink is paced and upstream is late, it plays a filler between files (H.264 and AAC
//! streams; see `filling`).
//!
//! A file sent again after a failure from inside ([`Stage::resume_fragment`]) loses its media
//! tags before the last keyframe at or before the confirmed point (see `resume_cut`); the
//! session's file header and sequence headers still come first.

mod filling;
mod saved;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    ComponentContext, ComponentError, FragmentInfo, HumanDuration, MediaSpan, Stage, StageConfig,
    StageError, StageOutput,
};
use streampub_core::register_stage;

use self::saved::SavedFlvTimeline;
use crate::filler::{default_ffmpeg, no_filler, validate_filler, FillerSource};
use crate::flv::filler::Filler;
use crate::flv::tags::Kind;
use crate::flv::{
    classify, is_video_keyframe, read_file_header, Payload, TagHeader, TagKind, CLASSIFY_LEN,
    FILE_HEADER, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
};
use crate::history::FragmentHistory;
use crate::resume_cut::ResumeCut;
use crate::session_limit::{
    default_session_limit, planned_new_session, validate_session_limit, SessionLimit,
};

/// The stage's `type`.
pub const FLV_TIMELINE_STAGE: &str = "flv-timeline";

register_stage!(
    FlvTimelineConfig,
    FLV_TIMELINE_STAGE,
    "Joins FLV files into one continuous FLV stream: one header, continuous timestamps",
);

/// The largest sequence header or script tag buffered; larger ones are rejected as corrupt.
const MAX_BUFFERED_TAG: u32 = 1 << 20;

/// Joins FLV files into one continuous FLV stream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlvTimelineConfig {
    /// A session that has carried this much media ends at the next file boundary and a new one
    /// begins (a planned reconnect; ffmpeg starts each session's output timestamps at 0),
    /// before RTMP's 32-bit millisecond timestamps wrap. At most 24 days (the default).
    #[serde(default = "default_session_limit")]
    pub session_limit: HumanDuration,
    /// What plays while upstream is late, when the sink is paced and asks for filler:
    /// `generate`, `none` (the default here; `ffmpeg-rtmp` sets it for the stage it adds
    /// itself, see its `filler`), or a slate file's path. H.264 and AAC streams only.
    #[serde(default = "no_filler")]
    pub filler: FillerSource,
    /// The ffmpeg program that makes the filler; looked up on `PATH` unless it contains a `/`.
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
}

impl Default for FlvTimelineConfig {
    fn default() -> Self {
        Self {
            session_limit: default_session_limit(),
            filler: no_filler(),
            ffmpeg: default_ffmpeg(),
        }
    }
}

#[async_trait]
impl StageConfig for FlvTimelineConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        validate_session_limit(self.session_limit)?;
        validate_filler(&self.filler)
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(
            FlvTimelineStage::default()
                .with_session_limit(self.session_limit.get())
                .with_filler(self.filler.clone(), self.ffmpeg.clone()),
        ))
    }
}

/// The decoder configurations of the stream: the data of its sequence header tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Configurations {
    video: Option<Bytes>,
    audio: Option<Bytes>,
}

impl Configurations {
    fn get(&self, kind: TagKind) -> Option<&Bytes> {
        match kind {
            TagKind::Video => self.video.as_ref(),
            _ => self.audio.as_ref(),
        }
    }

    fn get_mut(&mut self, kind: TagKind) -> &mut Option<Bytes> {
        match kind {
            TagKind::Video => &mut self.video,
            _ => &mut self.audio,
        }
    }
}

/// The state at the start of a fragment, for a rewind.
#[derive(Debug, Clone)]
struct Snapshot {
    offset: u64,
    configurations: Configurations,
    header: Option<[u8; 9]>,
}

/// Where the reading of the current file is.
#[derive(Debug)]
enum Parse {
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
struct LastTag {
    timestamp: u32,
    interval: u32,
    seen: bool,
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
struct FileState {
    name: String,
    parse: Parse,
    /// Bytes of the file read so far, and where the current tag began, for error messages.
    position: u64,
    tag_start: u64,
    first_timestamp: Option<u32>,
    video: LastTag,
    audio: LastTag,
    /// The intervals between video tags, while the filler needs the stream's frame rate.
    video_intervals: Option<Vec<u32>>,
    /// The media tag being passed (slices of the chunks read) and its time on the timeline,
    /// written once it is whole: a tag cut short is dropped, so no partial tag (or padding)
    /// reaches a decoder and the stream stays in sync.
    tag: Vec<Bytes>,
    tag_time: Duration,
    /// Whether a decoder can start at the tag being passed.
    tag_random_access: bool,
}

impl FileState {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            parse: Parse::FileHeader(Vec::with_capacity(9)),
            position: 0,
            tag_start: 0,
            first_timestamp: None,
            video: LastTag::default(),
            audio: LastTag::default(),
            video_intervals: None,
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

    fn error(&self, message: impl std::fmt::Display) -> StageError {
        StageError::new(format!(
            "fragment {} is not usable FLV: {message}",
            self.name
        ))
    }

    /// How long the file lasts, in milliseconds.
    fn duration(&self) -> u64 {
        let Some(first) = self.first_timestamp else {
            return 0;
        };
        self.video.end(first).max(self.audio.end(first))
    }
}

/// The running stage.
#[derive(Debug, Default)]
pub struct FlvTimelineStage {
    /// The file header of the stream (from its first file, data offset 9).
    header: Option<[u8; 9]>,
    /// Whether the current session has had its file header.
    header_written: bool,
    configurations: Configurations,
    /// Where the next file starts, in milliseconds.
    offset: u64,
    history: FragmentHistory<Snapshot>,
    file: Option<FileState>,
    /// Per kind (video, audio), the decoder configuration (sequence header body) the session
    /// got last: the stream's, or the filler's during a gap.
    sent: [Option<Bytes>; 2],
    filler: Filler,
    session: SessionLimit,
    /// While a file sent again from inside is being cut: its tags (time, parts).
    resume: Option<ResumeCut<(Duration, Vec<Bytes>)>>,
}

impl FlvTimelineStage {
    /// Ends a session that has carried `limit` of media at the next file boundary.
    pub fn with_session_limit(mut self, limit: Duration) -> Self {
        self.session = SessionLimit::new(limit);
        self
    }

    /// Fills gaps with `source`, made or converted by the program `ffmpeg`.
    pub fn with_filler(mut self, source: FillerSource, ffmpeg: PathBuf) -> Self {
        self.filler = Filler::new(source, ffmpeg);
        self
    }

    fn file(&mut self) -> &mut FileState {
        self.file.get_or_insert_with(|| FileState::new("?"))
    }

    /// Writes the file header and the known decoder configurations: what a session needs
    /// first. The configurations carry the current offset as their timestamp. A session that
    /// begins during a gap gets the filler's, whose tags come first.
    fn write_session_start(&mut self, output: &mut StageOutput) {
        let Some(header) = self.header else {
            return;
        };
        output.push_chunk(Bytes::copy_from_slice(&header));
        output.push_chunk(Bytes::from_static(&[0; PREVIOUS_TAG_SIZE_LEN]));
        self.sent = [None, None];
        self.header_written = true;
        self.session.begin(Duration::from_millis(self.offset));
        let timestamp = self.offset as u32;
        let filler_configurations = self.filler.configurations();
        for kind in [Kind::Video, Kind::Audio] {
            match &filler_configurations[kind.index()] {
                Some(configuration) if self.filler.is_playing() => {
                    self.send_filler_configuration(kind, configuration, timestamp, output);
                }
                _ => self.send_stream_configuration(kind.into(), timestamp, output),
            }
        }
    }

    /// The timestamp a tag of this file gets on the stream's timeline.
    fn move_timestamp(&mut self, timestamp: u32) -> u32 {
        self.media_time(timestamp).as_millis() as u32
    }

    /// Where a tag of this file lies on the stream's timeline, unwrapped (for pacing).
    fn media_time(&mut self, timestamp: u32) -> std::time::Duration {
        let offset = self.offset;
        let file = self.file();
        let first = *file.first_timestamp.get_or_insert(timestamp);
        std::time::Duration::from_millis(u64::from(timestamp.wrapping_sub(first)) + offset)
    }

    /// Handles a complete tag header.
    fn start_tag(&mut self, header: [u8; TAG_HEADER_LEN]) -> Result<(), StageError> {
        let file = self.file();
        let tag = TagHeader::parse(&header)
            .map_err(|error| file.error(format!("tag at offset {}: {error}", file.tag_start)))?;
        let rest = u64::from(tag.data_size) + PREVIOUS_TAG_SIZE_LEN as u64;
        file.parse = match tag.kind {
            TagKind::Script => Parse::Drop(rest),
            _ if tag.data_size == 0 => Parse::Drop(rest),
            _ => Parse::Classify {
                header,
                tag,
                data: Vec::with_capacity(CLASSIFY_LEN),
            },
        };
        Ok(())
    }

    /// Handles an audio or video tag whose first data bytes are known.
    fn classified(
        &mut self,
        header: [u8; TAG_HEADER_LEN],
        tag: TagHeader,
        data: Vec<u8>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let rest = u64::from(tag.data_size) - data.len() as u64 + PREVIOUS_TAG_SIZE_LEN as u64;
        let parse = match classify(tag.kind, &data) {
            Payload::SequenceEnd => Parse::Drop(rest),
            Payload::SequenceHeader if tag.data_size > MAX_BUFFERED_TAG => {
                let file = self.file();
                return Err(file.error(format!(
                    "the sequence header at offset {} claims {} bytes",
                    file.tag_start, tag.data_size
                )));
            }
            Payload::SequenceHeader => Parse::Collect { tag, data },
            Payload::Media => {
                let media_time = self.media_time(tag.timestamp);
                let timestamp = media_time.as_millis() as u32;
                // Without video, a decoder can start at any audio frame.
                let has_video = self.configurations.video.is_some()
                    || self.header.is_some_and(|header| header[4] & 0x01 != 0);
                let random_access = match tag.kind {
                    TagKind::Video => is_video_keyframe(&data),
                    _ => !has_video,
                };
                self.file().tag_random_access = random_access;
                self.file().observe(tag.kind, tag.timestamp);
                if !self.header_written {
                    self.write_session_start(output);
                }
                // After a filler with another configuration, the stream's again.
                self.send_stream_configuration(tag.kind, timestamp, output);
                let file = self.file();
                file.tag_time = media_time;
                file.tag = vec![
                    Bytes::copy_from_slice(&TagHeader::with_timestamp(&header, timestamp)),
                    Bytes::from(data),
                ];
                Parse::Pass(rest)
            }
        };
        self.file().parse = parse;
        Ok(())
    }

    /// Sends a whole media tag (its parts, at `time` on the timeline), unless a file resumed
    /// from inside is being cut before it.
    fn send_media_tag(
        &mut self,
        time: Duration,
        random_access: bool,
        parts: Vec<Bytes>,
        output: &mut StageOutput,
    ) {
        let Some(cut) = &mut self.resume else {
            return send_tag(time, parts, output);
        };
        let mut send = Vec::new();
        if cut.take(time, random_access, (time, parts), &mut send) {
            self.resume = None;
        }
        send_tags(send, output);
    }

    /// Handles a complete sequence header tag: forwarded if new, dropped if known, a new
    /// session if it differs from the one in use.
    fn sequence_header(&mut self, tag: TagHeader, data: Bytes, output: &mut StageOutput) {
        // A sequence header marks the file's start on its stream's clock, like any tag.
        let timestamp = self.move_timestamp(tag.timestamp);
        let known = self.configurations.get(tag.kind).cloned();
        match known {
            Some(known) if known == data => {}
            Some(_) => {
                let stream = match tag.kind {
                    TagKind::Video => "video",
                    _ => "audio",
                };
                let file = self.file();
                let name = file.name.clone();
                // Another stream: a filler made for it, at the end of this file.
                file.video_intervals.get_or_insert_with(Vec::new);
                self.filler.forget_clip();
                output.request_new_session(format!(
                    "fragment {name}: the {stream} decoder configuration changed"
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

/// Emits a whole media tag (its parts), marked with its time.
fn send_tag(time: Duration, parts: Vec<Bytes>, output: &mut StageOutput) {
    output.mark_media_time(time);
    for part in parts {
        output.push_chunk(part);
    }
}

/// Emits whole media tags.
fn send_tags(tags: Vec<(Duration, Vec<Bytes>)>, output: &mut StageOutput) {
    for (time, parts) in tags {
        send_tag(time, parts, output);
    }
}

/// Emits one tag: header, data, `PreviousTagSize`.
fn push_tag(kind: TagKind, timestamp: u32, data: &Bytes, output: &mut StageOutput) {
    let type_byte = match kind {
        TagKind::Audio => 8,
        TagKind::Video => 9,
        TagKind::Script => 18,
    };
    let size = data.len() as u32;
    let [_, s1, s2, s3] = size.to_be_bytes();
    let mut header = [type_byte, s1, s2, s3, 0, 0, 0, 0, 0, 0, 0];
    header = TagHeader::with_timestamp(&header, timestamp);
    output.push_chunk(Bytes::copy_from_slice(&header));
    output.push_chunk(data.clone());
    output.push_chunk(Bytes::copy_from_slice(
        &(size + TAG_HEADER_LEN as u32).to_be_bytes(),
    ));
}

impl Stage for FlvTimelineStage {
    fn begin_fragment(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        if self.header_written {
            if let Some(reached) = self.session.reached(Duration::from_millis(self.offset)) {
                output.request_new_session(planned_new_session(&fragment.name, reached));
                self.header_written = false;
            }
        }
        self.history.record(
            fragment.sequence,
            Snapshot {
                offset: self.offset,
                configurations: self.configurations.clone(),
                header: self.header,
            },
        );
        let mut file = FileState::new(&fragment.name);
        if self.filler.wants_shape() {
            file.video_intervals = Some(Vec::new());
        }
        self.file = Some(file);
        // The stream takes over from any filler; a later gap starts the clip afresh.
        self.filler.stop();
        Ok(())
    }

    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
        let mut at = 0;
        while at < chunk.len() {
            let available = &chunk[at..];
            let mut whole_tag = None;
            let file = self.file();
            let used = match &mut file.parse {
                Parse::FileHeader(bytes) => {
                    let used = (9 - bytes.len()).min(available.len());
                    bytes.extend_from_slice(&available[..used]);
                    if bytes.len() == 9 {
                        let header: [u8; 9] = bytes.as_slice().try_into().unwrap();
                        let offset =
                            read_file_header(&header).map_err(|error| file.error(error))?;
                        file.parse =
                            Parse::SkipHeader(u64::from(offset) - 9 + PREVIOUS_TAG_SIZE_LEN as u64);
                        if self.header.is_none() {
                            let mut stream_header = FILE_HEADER;
                            stream_header[..5].copy_from_slice(&header[..5]);
                            self.header = Some(stream_header);
                        }
                    }
                    used
                }
                Parse::SkipHeader(left) | Parse::Drop(left) | Parse::Pass(left) => {
                    let used = (*left).min(available.len() as u64) as usize;
                    *left -= used as u64;
                    if matches!(file.parse, Parse::Pass(_)) {
                        file.tag.push(chunk.slice(at..at + used));
                    }
                    if matches!(file.parse, Parse::Pass(0)) {
                        whole_tag = Some((
                            file.tag_time,
                            file.tag_random_access,
                            std::mem::take(&mut file.tag),
                        ));
                    }
                    if matches!(
                        file.parse,
                        Parse::SkipHeader(0) | Parse::Drop(0) | Parse::Pass(0)
                    ) {
                        file.parse = Parse::TagHeader(Vec::with_capacity(TAG_HEADER_LEN));
                        file.tag_start = file.position + used as u64;
                    }
                    used
                }
                Parse::TagHeader(bytes) => {
                    let used = (TAG_HEADER_LEN - bytes.len()).min(available.len());
                    bytes.extend_from_slice(&available[..used]);
                    if bytes.len() == TAG_HEADER_LEN {
                        let header: [u8; TAG_HEADER_LEN] = bytes.as_slice().try_into().unwrap();
                        file.position += used as u64;
                        at += used;
                        self.start_tag(header)?;
                        continue;
                    }
                    used
                }
                Parse::Classify { tag, data, .. } => {
                    let wanted = (CLASSIFY_LEN as u32).min(tag.data_size) as usize;
                    let used = (wanted - data.len()).min(available.len());
                    data.extend_from_slice(&available[..used]);
                    if data.len() == wanted {
                        let Parse::Classify { header, tag, data } =
                            std::mem::replace(&mut file.parse, Parse::Drop(0))
                        else {
                            unreachable!("matched above");
                        };
                        file.position += used as u64;
                        at += used;
                        self.classified(header, tag, data, output)?;
                        continue;
                    }
                    used
                }
                Parse::Collect { tag, data, .. } => {
                    let wanted = tag.data_size as usize + PREVIOUS_TAG_SIZE_LEN;
                    let used = (wanted - data.len()).min(available.len());
                    data.extend_from_slice(&available[..used]);
                    if data.len() == wanted {
                        let Parse::Collect { tag, mut data, .. } = std::mem::replace(
                            &mut file.parse,
                            Parse::TagHeader(Vec::with_capacity(TAG_HEADER_LEN)),
                        ) else {
                            unreachable!("matched above");
                        };
                        file.position += used as u64;
                        file.tag_start = file.position;
                        at += used;
                        data.truncate(tag.data_size as usize);
                        self.sequence_header(tag, Bytes::from(data), output);
                        continue;
                    }
                    used
                }
            };
            self.file().position += used as u64;
            at += used;
            if let Some((time, random_access, parts)) = whole_tag {
                self.send_media_tag(time, random_access, parts, output);
            }
        }
        Ok(())
    }

    fn end_fragment(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        // A file resumed past its last keyframe: from that keyframe.
        if let Some(cut) = self.resume.take() {
            send_tags(cut.finish(), output);
        }
        let start = self.offset;
        let file = self.file();
        let problem = match &file.parse {
            Parse::TagHeader(bytes) if bytes.is_empty() => None,
            Parse::FileHeader(_) | Parse::SkipHeader(_) => {
                Some("it ends inside its file header".to_owned())
            }
            Parse::TagHeader(_)
            | Parse::Classify { .. }
            | Parse::Collect { .. }
            | Parse::Drop(_) => Some(format!(
                "it ends inside the tag at offset {}",
                file.tag_start
            )),
            Parse::Pass(left) => Some(format!(
                "it ends {left} bytes before the end of the tag at offset {} (the tag is dropped)",
                file.tag_start
            )),
        };
        let problem = problem.or_else(|| {
            file.first_timestamp
                .is_none()
                .then(|| "it has no audio or video tag".to_owned())
        });
        let error = problem.map(|problem| file.error(problem));
        self.offset += file.duration();
        let file = self.file.take().expect("read above");
        match error {
            Some(error) => Err(error),
            None => {
                self.prepare_filler(&file);
                output.mark_media_span(MediaSpan {
                    start: Duration::from_millis(start),
                    end: Duration::from_millis(self.offset),
                });
                Ok(())
            }
        }
    }

    fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        // In a gap, the new session's decoder has nothing to refer to: the filler goes on
        // from its keyframe.
        self.filler.restart_at_keyframe();
        self.header_written = false;
        self.write_session_start(output);
        Ok(())
    }

    fn fill(&mut self, until: Duration, output: &mut StageOutput) -> Result<(), StageError> {
        self.fill_until(until, output)
    }

    fn resume_fragment(&mut self, offset: Duration) {
        self.resume = Some(ResumeCut::new(offset));
    }

    fn abort_fragment(&mut self) {
        self.resume = None;
        // What was emitted of the file stays on the timeline.
        if let Some(file) = self.file.take() {
            self.offset += file.duration();
        }
    }

    fn published(&mut self, fragment: &FragmentInfo) {
        self.history.forget_through(fragment.sequence);
    }

    fn rewind(&mut self, fragment: &FragmentInfo) {
        let Some(snapshot) = self.history.rewind_to(fragment.sequence) else {
            return;
        };
        self.offset = snapshot.offset;
        self.configurations = snapshot.configurations;
        self.header = snapshot.header;
        self.file = None;
    }

    fn checkpoint(&self) -> Option<serde_json::Value> {
        Some(serde_json::to_value(SavedFlvTimeline::of(self)).expect("plain data"))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), StageError> {
        let saved: SavedFlvTimeline = serde_json::from_value(state).map_err(|error| {
            StageError::new(format!(
                "the saved FLV timeline state is unreadable: {error}"
            ))
        })?;
        saved.restore_into(self)
    }
}
