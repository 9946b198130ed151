//! The `fmp4-to-flv` stage: turns the continuous fragmented-MP4 stream of the `fmp4-timeline`
//! stage into FLV tags, so that ffmpeg reads FLV (`-f flv`): its FLV demuxer keeps no index,
//! so its memory stays flat over weeks (its MP4 demuxer grows about 2.5 KB per second of media),
//! and each sample can leave as soon as it is written (the MP4 demuxer waits for the next box).
//!
//! Per session: one FLV file header, the AVC sequence header (the `avcC` box, as it is) and the
//! AAC one (the AudioSpecificConfig from `esds`) before the first sample, then one tag per
//! sample, audio and video interleaved by decode time. A tag's timestamp is the sample's decode
//! time in milliseconds and its composition time the presentation time in milliseconds minus
//! that, both rounded from the exact tick values (never summed from rounded durations, which
//! would drift). Samples are AVCC / raw AAC already and pass unchanged. H.264 and AAC only: FLV
//! without enhanced RTMP carries nothing else.
//!
//! A `moof`'s `mdat` is held whole (one fragment of the upstream file, bounded by
//! [`MAX_MEDIA_DATA`]) to interleave its tracks, as slices of the chunks read: samples are not
//! copied (unless one spans two chunks), and no buffer the size of the box is allocated. Such
//! buffers, allocated and freed for every `moof`, made glibc's allocator hold on to a growing,
//! fragmented heap: streampub's RSS went from 32 to 51 MB over 2,880 fragments; with slices it
//! stays at 11 MB (`scripts/ffmpeg-memory`, BENCHMARKS.md).
//!
//! A fragment sent again after a failure from inside ([`Stage::resume_fragment`]) loses its
//! tags before the last keyframe at or before the confirmed point (see `resume_cut`); the
//! session's headers and sequence headers come before the first tag sent, as always.
//!
//! The tags of an `mdat` are written when the next box begins or the fragment ends, not at
//! once: a fragment cut short has its last `mdat` completed with zeros by `fmp4-timeline` (to
//! keep a byte stream in sync) and then fails; its held tags are dropped, so no zeros reach
//! ffmpeg as samples (a viewer would see corrupt frames until the next keyframe).

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    ComponentContext, ComponentError, FragmentInfo, HumanDuration, Stage, StageConfig, StageError,
    StageOutput,
};
use streampub_core::register_stage;

use crate::filler::{default_ffmpeg, validate_filler, FillerSource};
use crate::flv::filler::Filler;
use crate::flv::tags::{
    flv_track, media_tags, write_tag, FlvTrack, Kind, MediaData, Tag, SCRIPT_TAG,
};
use crate::flv::FILE_HEADER;
use crate::mp4::samples::read_samples;
use crate::mp4::{describe_moov, BoxHeader, FourCc, TrackDescription};
use crate::resume_cut::ResumeCut;
pub use crate::session_limit::MAX_SESSION_LIMIT;
use crate::session_limit::{default_session_limit, planned_new_session, validate_session_limit};
use crate::stream_shape::{most_common, StreamShape};

/// The stage's `type`.
pub const FLV_PACKETIZER_STAGE: &str = "fmp4-to-flv";

register_stage!(
    FlvPacketizerConfig,
    FLV_PACKETIZER_STAGE,
    "Turns the continuous fMP4 of fmp4-timeline into FLV tags (H.264 and AAC)",
);

/// The largest `moov` or `moof` buffered.
const MAX_BOX: u64 = 32 << 20;
/// The largest `mdat` buffered: one fragment of an upstream file.
pub const MAX_MEDIA_DATA: u64 = 256 << 20;

/// Turns fMP4 into FLV; put it after `fmp4-timeline`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlvPacketizerConfig {
    /// A session that has carried this much media ends at the next fragment boundary and a new
    /// one begins (a planned reconnect), before FLV's 32-bit millisecond timestamps wrap. Each
    /// session's timestamps start at 0. At most 24 days (the default).
    #[serde(default = "default_session_limit")]
    pub session_limit: HumanDuration,
    /// The timestamp of the first session's first tag (later sessions start at 0). Only for
    /// trying what happens late in a long run: e.g. `4h39m37s`, where timestamps begin to need
    /// FLV's extended byte (past 16,777,215 ms), or just under `session_limit`.
    #[serde(default)]
    pub start_timestamp: HumanDuration,
    /// What plays while upstream is late, when the sink is paced and asks for filler (see
    /// `filler` on `ffmpeg-rtmp`, which sets it for the stage it adds itself): `generate`,
    /// `none`, or a slate file's path.
    #[serde(default)]
    pub filler: FillerSource,
    /// The ffmpeg program that makes the filler; looked up on `PATH` unless it contains a `/`.
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
}

#[async_trait]
impl StageConfig for FlvPacketizerConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        validate_session_limit(self.session_limit)?;
        validate_filler(&self.filler)?;
        if self.start_timestamp >= self.session_limit {
            return Err(ComponentError::field(
                "start_timestamp",
                format!(
                    "must be less than session_limit ({}): a session cannot start past its end",
                    self.session_limit
                ),
            ));
        }
        Ok(())
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(
            FlvPacketizerStage::new(self.session_limit.get())
                .starting_at(self.start_timestamp.get())
                .with_filler(self.filler.clone(), self.ffmpeg.clone()),
        ))
    }
}

/// Where the parser is.
#[derive(Debug, Default)]
enum Parse {
    /// At a box boundary.
    #[default]
    Header,
    /// Collecting a box header split across chunks.
    Partial(Vec<u8>),
    /// Collecting an `mdat` as slices of the chunks read.
    MediaData {
        data: MediaData,
        size: usize,
        /// Bytes of the box read so far.
        filled: usize,
    },
    /// Collecting a box (`moov`, `moof`), or skipping one (`keep` false: only its header is in
    /// `data`).
    Box {
        kind: FourCc,
        header_len: usize,
        data: Vec<u8>,
        size: usize,
        /// Bytes of the box read so far.
        filled: usize,
        keep: bool,
    },
}

/// The running stage.
#[derive(Debug)]
pub struct FlvPacketizerStage {
    session_limit: std::time::Duration,
    /// The decode time (ms) that is the session's timestamp 0, once its first tag is written.
    session_zero: Option<i128>,
    /// The timestamp the next session's first tag gets: `start_timestamp`, then 0.
    next_session_timestamp: i128,
    /// The decode time (ms) of the last tag written.
    last_written: i128,
    /// The stream's tracks as its `moov` describes them, and what each becomes in FLV.
    descriptions: Vec<TrackDescription>,
    tracks: Vec<FlvTrack>,
    /// The FLV file header flags (audio, video) of the stream.
    header_flags: u8,
    /// The session still needs its file header and sequence headers.
    headers_due: bool,
    parse: Parse,
    /// The last `moof`: its samples and its size (their offsets count from its first byte).
    moof: Option<(Vec<crate::mp4::samples::Sample>, u64)>,
    /// The fragment being read, for messages.
    name: String,
    /// Why the stream's init segment cannot become FLV (a codec FLV cannot carry): every
    /// fragment of that stream fails with it, until an init segment that can.
    refused: Option<String>,
    /// Per kind (video, audio), the decoder configuration the session got last.
    sent_configurations: [Option<Bytes>; 2],
    /// What the stream is (from its init segment and first media segment), for `onMetaData`
    /// and the filler.
    shape: Option<StreamShape>,
    /// Where the stream's media written so far ends (ms): where filler would begin.
    content_end_ms: Option<i128>,
    filler: Filler,
    /// The tags of the last `mdat`, written once the fragment goes on past it.
    held: Vec<Tag>,
    /// While a fragment sent again from inside is being cut.
    resume: Option<ResumeCut<Tag>>,
}

impl Default for FlvPacketizerStage {
    fn default() -> Self {
        Self::new(MAX_SESSION_LIMIT.get())
    }
}

impl FlvPacketizerStage {
    /// A packetizer that starts a new session once one has carried `session_limit` of media.
    pub fn new(session_limit: std::time::Duration) -> Self {
        Self {
            session_limit,
            session_zero: None,
            next_session_timestamp: 0,
            last_written: 0,
            descriptions: Vec::new(),
            tracks: Vec::new(),
            header_flags: 0,
            headers_due: false,
            parse: Parse::default(),
            moof: None,
            name: String::new(),
            refused: None,
            sent_configurations: [None, None],
            shape: None,
            content_end_ms: None,
            filler: Filler::new(FillerSource::None, default_ffmpeg()),
            held: Vec::new(),
            resume: None,
        }
    }

    /// Fills gaps with `source`, made or converted by the program `ffmpeg`.
    pub fn with_filler(mut self, source: FillerSource, ffmpeg: PathBuf) -> Self {
        self.filler = Filler::new(source, ffmpeg);
        self
    }

    /// The first session's first tag gets `timestamp` instead of 0.
    pub fn starting_at(mut self, timestamp: std::time::Duration) -> Self {
        self.next_session_timestamp = timestamp.as_millis() as i128;
        self
    }

    fn error(&self, message: impl std::fmt::Display) -> StageError {
        StageError::new(format!(
            "fragment {} cannot be turned into FLV: {message}",
            self.name
        ))
    }

    /// Handles a complete `moov` or `moof`.
    fn handle(&mut self, kind: FourCc, header_len: usize, data: Vec<u8>) -> Result<(), StageError> {
        match &kind.0 {
            b"moov" => {
                let descriptions = describe_moov(&data[header_len..])
                    .map_err(|error| self.error(error.message))?
                    .ok_or_else(|| self.error("its moov is not fragmented"))?;
                let tracks = match descriptions
                    .iter()
                    .map(flv_track)
                    .collect::<Result<Vec<_>, String>>()
                {
                    Ok(tracks) => tracks,
                    Err(problem) => {
                        self.refused = Some(problem.clone());
                        return Err(self.error(problem));
                    }
                };
                self.refused = None;
                self.header_flags = tracks.iter().fold(0, |flags, track| {
                    flags
                        | match track.kind {
                            Kind::Audio => 0x04,
                            Kind::Video => 0x01,
                        }
                });
                if descriptions != self.descriptions {
                    // Another stream (or the first): its shape, and a filler made for it.
                    self.shape = None;
                    self.filler.forget_clip();
                }
                self.descriptions = descriptions;
                self.tracks = tracks;
                self.headers_due = true;
            }
            b"moof" => {
                if let Some(problem) = &self.refused {
                    return Err(self.error(problem));
                }
                if self.tracks.is_empty() {
                    return Err(self.error("a moof before any moov"));
                }
                let samples = read_samples(&data[header_len..], header_len, &self.descriptions)
                    .map_err(|error| self.error(error.message))?;
                if self.shape.is_none() {
                    let video = self.tracks.iter().find(|track| track.kind == Kind::Video);
                    // The most common frame duration: encoders lengthen the first frame by
                    // the audio's priming, so it is not the first one's.
                    let frame_duration = video.and_then(|video| {
                        let mut durations: Vec<u32> = samples
                            .iter()
                            .filter(|sample| sample.track_id == video.track_id)
                            .map(|sample| sample.duration)
                            .collect();
                        most_common(&mut durations)
                    });
                    let (shape, audio) =
                        StreamShape::of(&self.descriptions, &self.tracks, frame_duration);
                    match audio {
                        Ok(()) if self.filler.wants_shape() => self.filler.prepare(shape.clone()),
                        Ok(()) => {}
                        Err(problem) => self.filler.cannot_match(format!(
                            "no filler can be made for this stream: its audio's {problem}"
                        )),
                    }
                    self.shape = Some(shape);
                }
                self.moof = Some((samples, data.len() as u64));
            }
            _ => {}
        }
        Ok(())
    }

    /// Handles a complete `mdat`: the samples of the `moof` before it become tags.
    fn handle_media_data(
        &mut self,
        mdat: &MediaData,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let (samples, moof_size) = self
            .moof
            .take()
            .ok_or_else(|| self.error("an mdat without its moof"))?;
        let tags = media_tags(&self.tracks, &samples, moof_size, mdat)
            .map_err(|problem| self.error(problem))?;
        self.write_held(output);
        self.held = tags;
        Ok(())
    }

    /// Writes the tags of the last `mdat`: the fragment went on past it.
    fn write_held(&mut self, output: &mut StageOutput) {
        let tags = std::mem::take(&mut self.held);
        if let Some(end) = tags.iter().map(|tag| tag.decode_ms + tag.duration_ms).max() {
            self.content_end_ms = Some(self.content_end_ms.map_or(end, |known| known.max(end)));
        }
        let tags = self.cut(tags);
        self.write_tags(tags, self.stream_configurations(), output);
    }

    /// Per kind, the stream's decoder configuration.
    fn stream_configurations(&self) -> [Option<Bytes>; 2] {
        let mut configurations = [None, None];
        for track in &self.tracks {
            configurations[track.kind.index()] = Some(track.configuration.clone());
        }
        configurations
    }

    /// What of `tags` is sent: all of them, unless a fragment resumed from inside is being cut.
    fn cut(&mut self, tags: Vec<Tag>) -> Vec<Tag> {
        if self.resume.is_none() {
            return tags;
        }
        let has_video = self.tracks.iter().any(|track| track.kind == Kind::Video);
        let Some(cut) = &mut self.resume else {
            return tags;
        };
        let mut send = Vec::new();
        let mut tags = tags.into_iter();
        let mut done = false;
        for tag in tags.by_ref() {
            // Without video, a decoder can start at any audio frame.
            let random_access = tag.is_keyframe() || !has_video;
            if cut.take(tag.media_time(), random_access, tag, &mut send) {
                done = true;
                break;
            }
        }
        if done {
            self.resume = None;
        }
        send.extend(tags);
        send
    }

    /// The file header, `onMetaData` and the sequence headers of `configurations` (per kind:
    /// those of the tags that follow, the stream's or the filler's): a session begins at the
    /// sample decoded at `decode_ms`.
    fn write_headers(
        &mut self,
        decode_ms: i128,
        configurations: [Option<Bytes>; 2],
        output: &mut StageOutput,
    ) {
        let zero = decode_ms - std::mem::take(&mut self.next_session_timestamp);
        self.session_zero = Some(zero);
        let mut header = FILE_HEADER;
        header[4] = self.header_flags;
        output.push_chunk(Bytes::copy_from_slice(&header));
        output.push_chunk(Bytes::from_static(&[0, 0, 0, 0]));
        if let Some(shape) = &self.shape {
            let timestamp = (decode_ms - zero).rem_euclid(1 << 32) as u32;
            write_tag(SCRIPT_TAG, timestamp, &[], shape.on_metadata(), output);
        }
        for kind in [Kind::Video, Kind::Audio] {
            if let Some(configuration) = &configurations[kind.index()] {
                Tag::sequence_header(kind, configuration.clone(), decode_ms).write(zero, output);
            }
        }
        self.sent_configurations = configurations;
        self.headers_due = false;
    }

    /// Writes tags of the stream or of the filler (whose decoder configurations per kind are
    /// `configurations`): after the session's headers when they are its first, and each after
    /// a sequence header when it needs another decoder configuration than the last one sent
    /// for its kind (a switch between stream and filler).
    fn write_tags(
        &mut self,
        tags: Vec<Tag>,
        configurations: [Option<Bytes>; 2],
        output: &mut StageOutput,
    ) {
        let Some(first) = tags.first() else {
            return;
        };
        if self.headers_due {
            self.write_headers(first.decode_ms, configurations, output);
        }
        for tag in tags {
            let zero = self.session_zero.unwrap_or(tag.decode_ms);
            let sent = &mut self.sent_configurations[tag.kind.index()];
            if sent.as_ref() != Some(&tag.configuration) {
                *sent = Some(tag.configuration.clone());
                Tag::sequence_header(tag.kind, tag.configuration.clone(), tag.decode_ms)
                    .write(zero, output);
            }
            output.mark_media_time(tag.media_time());
            self.last_written = tag.decode_ms;
            tag.write(zero, output);
        }
    }
}

impl Stage for FlvPacketizerStage {
    fn begin_fragment(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        self.name = fragment.name.clone();
        self.parse = Parse::Header;
        self.moof = None;
        // The stream takes over from any filler; a later gap starts the clip afresh.
        self.filler.stop();
        if let Some(zero) = self.session_zero {
            let reached = u64::try_from(self.last_written - zero).unwrap_or(0);
            if std::time::Duration::from_millis(reached) >= self.session_limit {
                output.request_new_session(planned_new_session(
                    &fragment.name,
                    std::time::Duration::from_millis(reached),
                ));
                self.session_zero = None;
                self.headers_due = true;
            }
        }
        Ok(())
    }

    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            match &mut self.parse {
                Parse::Header => self.parse = Parse::Partial(Vec::with_capacity(16)),
                Parse::Partial(header) => {
                    let wanted = if header.len() < 8 {
                        8
                    } else {
                        BoxHeader::needed(header)
                    };
                    let used = (wanted - header.len()).min(rest.len());
                    header.extend_from_slice(&rest[..used]);
                    rest = &rest[used..];
                    let complete = header.len() >= 8 && header.len() == BoxHeader::needed(header);
                    if complete {
                        let header = std::mem::take(header);
                        self.start_box(header, output)?;
                    }
                }
                Parse::MediaData { data, size, filled } => {
                    let used = (*size - *filled).min(rest.len());
                    let at = chunk.len() - rest.len();
                    data.push(chunk.slice(at..at + used));
                    *filled += used;
                    rest = &rest[used..];
                    if *filled == *size {
                        let Parse::MediaData { data, .. } = std::mem::take(&mut self.parse) else {
                            unreachable!("matched above");
                        };
                        self.handle_media_data(&data, output)?;
                    }
                }
                Parse::Box {
                    data,
                    size,
                    filled,
                    keep,
                    ..
                } => {
                    let used = (*size - *filled).min(rest.len());
                    if *keep {
                        data.extend_from_slice(&rest[..used]);
                    }
                    *filled += used;
                    rest = &rest[used..];
                    if *filled == *size {
                        let Parse::Box {
                            kind,
                            header_len,
                            data,
                            keep,
                            ..
                        } = std::mem::take(&mut self.parse)
                        else {
                            unreachable!("matched above");
                        };
                        if keep {
                            self.handle(kind, header_len, data)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn end_fragment(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        match &self.parse {
            Parse::Header => {}
            Parse::Partial(header) if header.is_empty() => {}
            _ => return Err(self.error("it ends inside a box")),
        }
        self.write_held(output);
        if let Some(cut) = self.resume.take() {
            self.write_tags(cut.finish(), self.stream_configurations(), output);
        }
        Ok(())
    }

    fn start_session(&mut self, _output: &mut StageOutput) -> Result<(), StageError> {
        // The new session gets the init segment again (the timeline stage sends it), then its
        // own file header and sequence headers before its first sample, timestamps from 0.
        self.headers_due = true;
        self.session_zero = None;
        self.next_session_timestamp = 0;
        self.filler.restart_at_keyframe();
        Ok(())
    }

    fn abort_fragment(&mut self) {
        self.parse = Parse::Header;
        self.moof = None;
        self.held.clear();
        self.resume = None;
    }

    fn resume_fragment(&mut self, offset: std::time::Duration) {
        self.resume = Some(ResumeCut::new(offset));
    }

    fn fill(
        &mut self,
        until: std::time::Duration,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let from = self
            .content_end_ms
            .ok_or_else(|| StageError::new("filler: no media has been written yet"))?;
        let tags = self
            .filler
            .tags_until(from, until.as_millis() as i128)
            .map_err(|problem| StageError::new(format!("filler: {problem}")))?;
        let configurations = self.filler.configurations();
        self.write_tags(tags, configurations, output);
        Ok(())
    }
}

impl FlvPacketizerStage {
    /// Starts a box from its complete header: collects `moov`, `moof` and `mdat`, skips others.
    fn start_box(&mut self, header: Vec<u8>, output: &mut StageOutput) -> Result<(), StageError> {
        self.write_held(output);
        let parsed = BoxHeader::parse(&header).map_err(|error| self.error(error.message))?;
        let limit = if parsed.kind == FourCc::MDAT {
            MAX_MEDIA_DATA
        } else {
            MAX_BOX
        };
        let size = match parsed.size {
            Some(size) if size <= limit => size as usize,
            _ => return Err(self.error(format!("box {} is too large or open-ended", parsed.kind))),
        };
        if parsed.kind == FourCc::MDAT {
            let data = MediaData::new(parsed.header_len);
            if size == parsed.header_len {
                return self.handle_media_data(&data, output);
            }
            self.parse = Parse::MediaData {
                data,
                size,
                filled: parsed.header_len,
            };
            return Ok(());
        }
        let keep = matches!(&parsed.kind.0, b"moov" | b"moof");
        let mut data = header;
        data.reserve(if keep { size - data.len() } else { 0 });
        self.parse = Parse::Box {
            kind: parsed.kind,
            header_len: parsed.header_len,
            filled: data.len(),
            data,
            size,
            keep,
        };
        // A box that is all header is complete at once.
        if size == parsed.header_len {
            if let Parse::Box {
                kind,
                header_len,
                data,
                keep: true,
                ..
            } = std::mem::take(&mut self.parse)
            {
                self.handle(kind, header_len, data)?;
            }
        }
        Ok(())
    }
}
