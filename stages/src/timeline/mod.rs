//! The `fmp4-timeline` stage: joins fragmented MP4 files into one continuous stream.
//!
//! Each upstream file is a complete fragmented MP4 (`ftyp`, `moov`, then `moof`/`mdat` pairs)
//! whose timestamps start at zero. Written one after another into one ffmpeg, the timestamps
//! restart and the later files collapse. This stage forwards the first init segment
//! (`ftyp`+`moov`), drops every later one that describes the same stream, renumbers `mfhd`
//! strictly increasing, and moves every `tfdt` onto one timeline:
//!
//! `new = old − (first tfdt of that track in this file) + offset × timescale`
//!
//! where `offset` is the sum of the previous files' durations, each the longest of its tracks
//! (sample durations from `trun`, else the `tfhd` default, else `trex`). The offset is an exact
//! fraction, so there is no drift however many files are joined; each conversion to a track's
//! timescale rounds once. `styp`, `sidx` and `mfra` are dropped (their offsets would lie).
//!
//! It streams: only `ftyp`, `moov` and `moof` are buffered (small); `mdat` payloads pass
//! through as slices of the incoming chunks.

mod remux;
mod saved;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use self::saved::SavedTimeline;
use crate::history::FragmentHistory;
use crate::mp4::moof;
use crate::mp4::{describe_change, describe_moov, BoxError, BoxHeader, FourCc, TrackDescription};
use crate::padding::push_zeros;
use streampub_core::plugin::find_program;
use streampub_core::plugin::BodyPreparer;
use streampub_core::plugin::{
    ComponentContext, ComponentError, FragmentInfo, MediaSpan, Stage, StageConfig, StageError,
    StageOutput,
};
use streampub_core::register_stage;

/// The stage's `type`.
pub const TIMELINE_STAGE: &str = "fmp4-timeline";

register_stage!(
    Fmp4TimelineConfig,
    TIMELINE_STAGE,
    "Joins fragmented MP4 files into one continuous stream: one init segment, continuous tfdt",
);

/// The largest `ftyp`, `moov` or `moof` buffered; larger ones are rejected as corrupt.
const MAX_BUFFERED_BOX: u64 = 32 << 20;
/// The most zero bytes written to complete an `mdat` cut short, to keep the stream parseable.
const MAX_PADDING: u64 = 256 << 20;

/// Rewrites fragmented MP4 files into one continuous stream.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fmp4TimelineConfig {
    /// `ffmpeg`: convert a non-fragmented MP4 file (sample tables in `moov`) into fragmented
    /// MP4 first, with ffmpeg from `PATH` (`-c copy`, reading the file). Unset: such a file
    /// fails with an error that names this option.
    #[serde(default)]
    pub remux: Option<Remux>,
}

/// How non-fragmented MP4 is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Remux {
    /// With an ffmpeg child process.
    Ffmpeg,
}

/// The program `remux: ffmpeg` runs.
const FFMPEG: &str = "ffmpeg";

#[async_trait]
impl StageConfig for Fmp4TimelineConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        if self.remux == Some(Remux::Ffmpeg) && find_program(Path::new(FFMPEG)).is_none() {
            return Err(ComponentError::field(
                "remux",
                "ffmpeg not found on PATH; Debian: apt-get install ffmpeg",
            ));
        }
        Ok(())
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(TimelineStage::default()))
    }

    fn body_preparer(&self, _context: &ComponentContext) -> Option<Arc<dyn BodyPreparer>> {
        let remux = self.remux?;
        match remux {
            Remux::Ffmpeg => Some(Arc::new(remux::FfmpegRemux {
                ffmpeg: find_program(Path::new(FFMPEG)).unwrap_or_else(|| FFMPEG.into()),
            })),
        }
    }
}

/// An exact non-negative fraction of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seconds {
    numerator: u128,
    denominator: u128,
}

impl Default for Seconds {
    fn default() -> Self {
        Self {
            numerator: 0,
            denominator: 1,
        }
    }
}

impl Seconds {
    fn add_ticks(self, ticks: u64, timescale: u32) -> Self {
        let timescale = u128::from(timescale);
        let numerator = self.numerator * timescale + u128::from(ticks) * self.denominator;
        let denominator = self.denominator * timescale;
        let divisor = gcd(numerator, denominator);
        Self {
            numerator: numerator / divisor,
            denominator: denominator / divisor,
        }
    }

    /// `duration` exactly.
    fn of_duration(duration: std::time::Duration) -> Self {
        Self::default().add_ticks(
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            1_000_000_000,
        )
    }

    /// As a duration, rounded down to the nanosecond.
    fn as_duration(self) -> std::time::Duration {
        let nanos = self.numerator * 1_000_000_000 / self.denominator;
        std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// In a track's timescale, rounded to the nearest tick.
    fn in_ticks(self, timescale: u32) -> u64 {
        let scaled = self.numerator * u128::from(timescale);
        u64::try_from((scaled + self.denominator / 2) / self.denominator).unwrap_or(u64::MAX)
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// The current init segment: its bytes and what it describes.
#[derive(Debug, Clone)]
struct InitSegment {
    bytes: Bytes,
    tracks: Vec<TrackDescription>,
}

/// What the stream looks like when a fragment begins; restored to send it again.
#[derive(Debug, Clone)]
struct Snapshot {
    init: Option<InitSegment>,
    next_sequence: u32,
    offset: Seconds,
}

/// Where the parser is within the current file.
#[derive(Debug)]
enum Parse {
    /// Reading a box header.
    Header(Vec<u8>),
    /// Buffering a whole `ftyp`, `moov` or `moof` (header included).
    Collect {
        kind: FourCc,
        header_len: usize,
        data: Vec<u8>,
        size: usize,
    },
    /// Passing a box's payload through; `None`: to the end of the file.
    Pass { remaining: Option<u64> },
    /// Dropping a box's payload.
    Skip { remaining: Option<u64> },
}

/// The state of the file being read.
#[derive(Debug)]
struct FileState {
    name: String,
    parse: Parse,
    /// Bytes of the file read so far, for error messages.
    position: u64,
    /// Where the current box began.
    box_start: u64,
    ftyp: Option<Vec<u8>>,
    /// The first `tfdt` of each track in this file.
    first_decode_time: HashMap<u32, u64>,
    /// Per track, the duration of the `traf`s emitted so far, in its timescale.
    emitted: HashMap<u32, u64>,
    /// A `moof` was emitted and its `mdat` has not begun.
    moof_awaits_mdat: bool,
}

impl FileState {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            parse: Parse::Header(Vec::with_capacity(16)),
            position: 0,
            box_start: 0,
            ftyp: None,
            first_decode_time: HashMap::new(),
            emitted: HashMap::new(),
            moof_awaits_mdat: false,
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> StageError {
        StageError::new(format!(
            "fragment {} is not usable fragmented MP4: {message}",
            self.name
        ))
    }
}

/// The running stage.
#[derive(Debug, Default)]
pub struct TimelineStage {
    init: Option<InitSegment>,
    /// The next `mfhd` sequence number.
    next_sequence: u32,
    /// Where the next file starts on the output timeline.
    offset: Seconds,
    history: FragmentHistory<Snapshot>,
    file: Option<FileState>,
}

impl TimelineStage {
    fn file(&mut self) -> &mut FileState {
        self.file.get_or_insert_with(|| FileState::new("?"))
    }

    /// The longest track of what this file emitted, added to the offset.
    fn advance_offset(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        let Some(init) = &self.init else {
            return;
        };
        let mut longest = self.offset;
        for (track_id, ticks) in &file.emitted {
            if let Some(track) = init.tracks.iter().find(|track| track.track_id == *track_id) {
                let end = self.offset.add_ticks(*ticks, track.timescale);
                // Compare a/b with c/d as a·d with c·b.
                if end.numerator * longest.denominator > longest.numerator * end.denominator {
                    longest = end;
                }
            }
        }
        self.offset = longest;
    }

    fn handle_box(
        &mut self,
        kind: FourCc,
        data: Vec<u8>,
        header_len: usize,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        match kind {
            FourCc::FTYP => self.file().ftyp = Some(data),
            FourCc::MOOV => self.handle_moov(&data, header_len, output)?,
            FourCc::MOOF => self.handle_moof(&data, header_len, output)?,
            _ => unreachable!("only ftyp, moov and moof are collected"),
        }
        Ok(())
    }

    fn handle_moov(
        &mut self,
        moov: &[u8],
        header_len: usize,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let file = self.file.as_ref().expect("a file is being read");
        let tracks = match describe_moov(&moov[header_len..]) {
            Ok(Some(tracks)) => tracks,
            Ok(None) => {
                return Err(file.error(
                    "it is not fragmented (its sample tables are in moov, it has no mvex); set \
                     `remux: ffmpeg` on the fmp4-timeline stage to convert it, or produce fragmented \
                     MP4 upstream (ffmpeg -movflags +frag_keyframe+empty_moov+default_base_moof)",
                ))
            }
            Err(error) => return Err(file.error(format!("moov at offset {}: {}", file.box_start, error.message))),
        };
        let mut bytes = file.ftyp.clone().unwrap_or_default();
        bytes.extend_from_slice(moov);
        let init = InitSegment {
            bytes: Bytes::from(bytes),
            tracks,
        };
        match &self.init {
            Some(current) if current.tracks == init.tracks => {
                if current.bytes != init.bytes {
                    tracing::debug!(
                        fragment = %file.name,
                        "Fragment {} repeats the stream's init segment with other metadata \
                         (bitrates, names, edit lists); the first one stays",
                        file.name
                    );
                }
            }
            Some(current) => {
                let change = describe_change(&current.tracks, &init.tracks);
                output.request_new_session(format!("fragment {}: {change}", file.name));
                output.push_chunk(init.bytes.clone());
                self.init = Some(init);
            }
            None => {
                output.push_chunk(init.bytes.clone());
                self.init = Some(init);
            }
        }
        Ok(())
    }

    fn handle_moof(
        &mut self,
        moof: &[u8],
        header_len: usize,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let offset = self.offset;
        let sequence = self.next_sequence;
        let Some(init) = &self.init else {
            let file = self.file.as_ref().expect("a file is being read");
            return Err(file.error(format!("moof at offset {} before any moov", file.box_start)));
        };
        let file = self.file.as_mut().expect("a file is being read");
        let box_start = file.box_start;
        let located = |error: BoxError| format!("moof at offset {box_start}: {}", error.message);
        let timings = match moof::read_timing(&moof[header_len..], &init.tracks) {
            Ok(timings) => timings,
            Err(error) => return Err(file.error(located(error))),
        };
        let mut decode_times = Vec::with_capacity(timings.len());
        for timing in &timings {
            let timescale = init
                .tracks
                .iter()
                .find(|track| track.track_id == timing.track_id)
                .map(|track| track.timescale)
                .expect("read_timing checks the track");
            let position = file.emitted.get(&timing.track_id).copied().unwrap_or(0);
            let relative = match timing.decode_time {
                Some(decode_time) => {
                    // The first tfdt of a track marks where it stands in this file (after any
                    // earlier trafs of it that had no tfdt).
                    let first = *file
                        .first_decode_time
                        .entry(timing.track_id)
                        .or_insert(decode_time.saturating_sub(position));
                    decode_time.saturating_sub(first)
                }
                None => position,
            };
            decode_times.push(relative.saturating_add(offset.in_ticks(timescale)));
            file.emitted
                .insert(timing.track_id, position.saturating_add(timing.duration));
        }
        let rewritten = match moof::rewrite(&moof[header_len..], box_start, sequence, &decode_times)
        {
            Ok(rewritten) => rewritten,
            Err(error) => return Err(file.error(located(error))),
        };
        file.moof_awaits_mdat = true;
        self.next_sequence = sequence.wrapping_add(1).max(1);
        output.push_chunk(Bytes::from(rewritten));
        Ok(())
    }

    /// Starts the next box from a complete header.
    fn start_box(
        &mut self,
        header_bytes: Vec<u8>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let file = self.file.as_mut().expect("a file is being read");
        let header = BoxHeader::parse(&header_bytes).map_err(|error| {
            file.error(format!("at offset {}: {}", file.box_start, error.message))
        })?;
        let payload = header.size.map(|size| size - header.header_len as u64);
        file.parse = match header.kind {
            FourCc::FTYP | FourCc::MOOV | FourCc::MOOF => {
                let size = match header.size {
                    Some(size) if size <= MAX_BUFFERED_BOX => size as usize,
                    _ => {
                        return Err(file.error(format!(
                            "box {} at offset {} claims {} bytes",
                            header.kind,
                            file.box_start,
                            header
                                .size
                                .map_or("all remaining".to_owned(), |size| size.to_string())
                        )))
                    }
                };
                if header.kind == FourCc::MOOF && file.moof_awaits_mdat {
                    return Err(file.error(format!(
                        "moof at offset {} follows a moof without mdat",
                        file.box_start
                    )));
                }
                let mut data = header_bytes;
                data.reserve(size - data.len());
                Parse::Collect {
                    kind: header.kind,
                    header_len: header.header_len,
                    data,
                    size,
                }
            }
            FourCc::STYP | FourCc::SIDX | FourCc::MFRA => Parse::Skip { remaining: payload },
            kind => {
                if kind == FourCc::MDAT {
                    file.moof_awaits_mdat = false;
                }
                output.push_chunk(Bytes::from(header_bytes));
                Parse::Pass { remaining: payload }
            }
        };
        Ok(())
    }

    /// Ends a box whose payload has been passed or collected.
    fn end_box(&mut self) {
        let file = self.file.as_mut().expect("a file is being read");
        file.parse = Parse::Header(Vec::with_capacity(16));
        file.box_start = file.position;
    }
}

impl Stage for TimelineStage {
    fn begin_fragment(
        &mut self,
        fragment: &FragmentInfo,
        _output: &mut StageOutput,
    ) -> Result<(), StageError> {
        self.history.record(
            fragment.sequence,
            Snapshot {
                init: self.init.clone(),
                next_sequence: self.next_sequence,
                offset: self.offset,
            },
        );
        if self.next_sequence == 0 {
            self.next_sequence = 1;
        }
        self.file = Some(FileState::new(&fragment.name));
        Ok(())
    }

    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
        let mut at = 0;
        while at < chunk.len() {
            let available = chunk.len() - at;
            let file = self.file();
            let used = match &mut file.parse {
                Parse::Header(bytes) => {
                    let wanted = if bytes.len() < 8 {
                        8
                    } else {
                        BoxHeader::needed(bytes)
                    };
                    let used = (wanted - bytes.len()).min(available);
                    bytes.extend_from_slice(&chunk[at..at + used]);
                    if bytes.len() == BoxHeader::needed(bytes) && bytes.len() >= 8 {
                        let header = std::mem::take(bytes);
                        file.position += used as u64;
                        self.start_box(header, output)?;
                        at += used;
                        self.finish_if_empty(output)?;
                        continue;
                    }
                    used
                }
                Parse::Collect { data, size, .. } => {
                    let used = (*size - data.len()).min(available);
                    data.extend_from_slice(&chunk[at..at + used]);
                    used
                }
                Parse::Pass { remaining } => {
                    let used =
                        remaining.map_or(available, |left| left.min(available as u64) as usize);
                    output.push_chunk(chunk.slice(at..at + used));
                    if let Some(left) = remaining {
                        *left -= used as u64;
                    }
                    used
                }
                Parse::Skip { remaining } => {
                    let used =
                        remaining.map_or(available, |left| left.min(available as u64) as usize);
                    if let Some(left) = remaining {
                        *left -= used as u64;
                    }
                    used
                }
            };
            self.file().position += used as u64;
            at += used;
            self.finish_if_empty(output)?;
        }
        Ok(())
    }

    fn end_fragment(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        let has_init = self.init.is_some();
        let file = self.file();
        let problem = match &file.parse {
            Parse::Header(bytes) if bytes.is_empty() => None,
            Parse::Header(_) => Some(format!(
                "it ends inside a box header at offset {}",
                file.box_start
            )),
            Parse::Collect {
                kind, data, size, ..
            } => Some(format!(
                "it ends inside box {kind} at offset {}, after {} of its {size} bytes",
                file.box_start,
                data.len()
            )),
            Parse::Pass {
                remaining: Some(left),
            } => {
                let left = *left;
                let padding = left <= MAX_PADDING;
                if padding {
                    // The box header promised more: complete it with zeros so that what comes
                    // next is still read as boxes downstream.
                    push_zeros(left, output);
                }
                Some(format!(
                    "it ends {left} bytes before the end of the box at offset {}{}",
                    file.box_start,
                    if padding {
                        " (completed with zeros to keep the stream in sync)"
                    } else {
                        ""
                    }
                ))
            }
            Parse::Pass { remaining: None } | Parse::Skip { .. } => None,
        };
        let problem = problem
            .or_else(|| {
                file.moof_awaits_mdat
                    .then(|| format!("the moof before offset {} has no mdat", file.position))
            })
            .or_else(|| (!has_init).then(|| "it has no moov".to_owned()));
        let error = problem.map(|problem| file.error(problem));
        let start = self.offset;
        self.advance_offset();
        match error {
            Some(error) => Err(error),
            None => {
                output.mark_media_span(MediaSpan {
                    start: start.as_duration(),
                    end: self.offset.as_duration(),
                });
                Ok(())
            }
        }
    }

    fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        if let Some(init) = &self.init {
            output.push_chunk(init.bytes.clone());
        }
        Ok(())
    }

    fn abort_fragment(&mut self) {
        // What was emitted of the file stays on the timeline.
        self.advance_offset();
    }

    fn fill(
        &mut self,
        until: std::time::Duration,
        _output: &mut StageOutput,
    ) -> Result<(), StageError> {
        // Filler runs between fragments: the next one starts after it.
        let until = Seconds::of_duration(until);
        if until.numerator * self.offset.denominator > self.offset.numerator * until.denominator {
            self.offset = until;
        }
        Ok(())
    }

    fn checkpoint(&self) -> Option<serde_json::Value> {
        Some(serde_json::to_value(SavedTimeline::of(self)).expect("plain data"))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), StageError> {
        let saved: SavedTimeline = serde_json::from_value(state).map_err(|error| {
            StageError::new(format!("the saved timeline state is unreadable: {error}"))
        })?;
        saved.restore_into(self)
    }

    fn published(&mut self, fragment: &FragmentInfo) {
        self.history.forget_through(fragment.sequence);
    }

    fn rewind(&mut self, fragment: &FragmentInfo) {
        let Some(snapshot) = self.history.rewind_to(fragment.sequence) else {
            return;
        };
        self.init = snapshot.init;
        self.next_sequence = snapshot.next_sequence;
        self.offset = snapshot.offset;
        self.file = None;
    }
}

impl TimelineStage {
    /// Completes a box whose bytes are all in: a collected one is handled, a passed or
    /// skipped one ends.
    fn finish_if_empty(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        let file = self.file();
        let complete = match &file.parse {
            Parse::Collect { data, size, .. } => data.len() == *size,
            Parse::Pass { remaining } | Parse::Skip { remaining } => *remaining == Some(0),
            Parse::Header(_) => false,
        };
        if !complete {
            return Ok(());
        }
        let parse = std::mem::replace(&mut file.parse, Parse::Header(Vec::new()));
        // Handled before the box ends, while `box_start` is still where it began.
        let handled = match parse {
            Parse::Collect {
                kind,
                header_len,
                data,
                ..
            } => self.handle_box(kind, data, header_len, output),
            _ => Ok(()),
        };
        self.end_box();
        handled
    }
}
