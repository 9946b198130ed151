//! Reading one fragmented MP4 file box by box: `ftyp`, `moov` and `moof` are collected whole
//! (small), `mdat` payloads pass through as slices of the chunks, `styp`, `sidx` and `mfra`
//! are dropped.

use std::collections::HashMap;

use bytes::Bytes;
use streampub_core::plugin::{StageError, StageOutput};

use super::stream_state::{Fmp4Timeline, InitSegment};
use crate::formats::mp4::moof;
use crate::formats::mp4::{describe_change, describe_moov, BoxError, BoxHeader, FourCc};
use crate::padding::push_zeros;
use crate::timeline_engine::{ChunkReader, FileReading, OpenFile};

/// The largest `ftyp`, `moov` or `moof` buffered; larger ones are rejected as corrupt.
const MAX_BUFFERED_BOX: u64 = 32 << 20;
/// The most zero bytes written to complete an `mdat` cut short, to keep the stream parseable.
const MAX_PADDING: u64 = 256 << 20;

/// Where the reading of a file is.
#[derive(Debug)]
enum BoxReading {
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
pub(crate) struct Fmp4File {
    reading: BoxReading,
    /// Where the current box began.
    box_start: u64,
    ftyp: Option<Vec<u8>>,
    /// The first `tfdt` of each track in this file.
    first_decode_time: HashMap<u32, u64>,
    /// Per track, the duration of the `traf`s emitted so far, in its timescale.
    pub(super) emitted: HashMap<u32, u64>,
    /// A `moof` was emitted and its `mdat` has not begun.
    moof_awaits_mdat: bool,
}

impl Default for Fmp4File {
    fn default() -> Self {
        Self {
            reading: BoxReading::Header(Vec::with_capacity(16)),
            box_start: 0,
            ftyp: None,
            first_decode_time: HashMap::new(),
            emitted: HashMap::new(),
            moof_awaits_mdat: false,
        }
    }
}

impl FileReading for Fmp4Timeline {
    type File = Fmp4File;

    fn read(
        &mut self,
        file: &mut OpenFile<Fmp4File>,
        reader: &mut ChunkReader,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        while !reader.is_empty() {
            match &mut file.reading {
                BoxReading::Header(bytes) => {
                    let wanted = if bytes.len() < 8 {
                        8
                    } else {
                        BoxHeader::needed(bytes)
                    };
                    if reader.fill(bytes, wanted) && BoxHeader::needed(bytes) == bytes.len() {
                        let header = std::mem::take(bytes);
                        start_box(file, header, output)?;
                    }
                }
                BoxReading::Collect { data, size, .. } => {
                    reader.fill(data, *size);
                }
                BoxReading::Pass { remaining } => {
                    output.push_chunk(reader.take(remaining.as_mut()))
                }
                BoxReading::Skip { remaining } => reader.skip(remaining.as_mut()),
            }
            self.finish_if_complete(file, reader.position(), output)?;
        }
        Ok(())
    }
}

impl Fmp4Timeline {
    /// Completes a box whose bytes are all in: a collected one is handled, a passed or
    /// skipped one ends; the next box begins at `position`.
    fn finish_if_complete(
        &mut self,
        file: &mut OpenFile<Fmp4File>,
        position: u64,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let complete = match &file.reading {
            BoxReading::Collect { data, size, .. } => data.len() == *size,
            BoxReading::Pass { remaining } | BoxReading::Skip { remaining } => {
                *remaining == Some(0)
            }
            BoxReading::Header(_) => false,
        };
        if !complete {
            return Ok(());
        }
        let reading = std::mem::replace(&mut file.reading, BoxReading::Header(Vec::new()));
        // Handled before the box ends, while `box_start` is still where it began.
        let handled = match reading {
            BoxReading::Collect {
                kind: FourCc::FTYP,
                data,
                ..
            } => {
                file.ftyp = Some(data);
                Ok(())
            }
            BoxReading::Collect {
                kind: FourCc::MOOV,
                data,
                header_len,
                ..
            } => self.handle_moov(file, &data, header_len, output),
            BoxReading::Collect {
                data, header_len, ..
            } => self.handle_moof(file, &data, header_len, output),
            _ => Ok(()),
        };
        file.reading = BoxReading::Header(Vec::with_capacity(16));
        file.box_start = position;
        handled
    }

    fn handle_moov(
        &mut self,
        file: &OpenFile<Fmp4File>,
        moov: &[u8],
        header_len: usize,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let tracks = match describe_moov(&moov[header_len..]) {
            Ok(Some(tracks)) => tracks,
            Ok(None) => {
                return Err(file.error(
                    "it is not fragmented (its sample tables are in moov, it has no mvex); set \
                     `remux: ffmpeg` on the fmp4-timeline stage to convert it, or produce fragmented \
                     MP4 upstream (ffmpeg -movflags +frag_keyframe+empty_moov+default_base_moof)",
                ))
            }
            Err(error) => {
                return Err(file.error(format!(
                    "moov at offset {}: {}",
                    file.box_start, error.message
                )))
            }
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
                        fragment = %file.name(),
                        "Fragment {} repeats the stream's init segment with other metadata \
                         (bitrates, names, edit lists); the first one stays",
                        file.name()
                    );
                }
            }
            Some(current) => {
                let change = describe_change(&current.tracks, &init.tracks);
                output.request_new_session(format!("fragment {}: {change}", file.name()));
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
        file: &mut OpenFile<Fmp4File>,
        moof: &[u8],
        header_len: usize,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let box_start = file.box_start;
        let Some(init) = &self.init else {
            return Err(file.error(format!("moof at offset {box_start} before any moov")));
        };
        let located = |error: BoxError| format!("moof at offset {box_start}: {}", error.message);
        let timings = moof::read_timing(&moof[header_len..], &init.tracks)
            .map_err(|error| file.error(located(error)))?;
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
            decode_times.push(relative.saturating_add(self.offset.in_ticks(timescale)));
            file.emitted
                .insert(timing.track_id, position.saturating_add(timing.duration));
        }
        let rewritten = moof::rewrite(
            &moof[header_len..],
            box_start,
            self.next_sequence,
            &decode_times,
        )
        .map_err(|error| file.error(located(error)))?;
        file.moof_awaits_mdat = true;
        self.next_sequence = self.next_sequence.wrapping_add(1).max(1);
        output.push_chunk(Bytes::from(rewritten));
        Ok(())
    }

    /// What is wrong with a file that ended here, if anything; an `mdat` cut short is
    /// completed with zeros.
    pub(super) fn problem_at_end(
        &self,
        file: &OpenFile<Fmp4File>,
        output: &mut StageOutput,
    ) -> Option<String> {
        let problem = match &file.reading {
            BoxReading::Header(bytes) if bytes.is_empty() => None,
            BoxReading::Header(_) => Some(format!(
                "it ends inside a box header at offset {}",
                file.box_start
            )),
            BoxReading::Collect {
                kind, data, size, ..
            } => Some(format!(
                "it ends inside box {kind} at offset {}, after {} of its {size} bytes",
                file.box_start,
                data.len()
            )),
            BoxReading::Pass {
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
            BoxReading::Pass { remaining: None } | BoxReading::Skip { .. } => None,
        };
        problem
            .or_else(|| {
                file.moof_awaits_mdat
                    .then(|| format!("the moof before offset {} has no mdat", file.bytes_read()))
            })
            .or_else(|| self.init.is_none().then(|| "it has no moov".to_owned()))
    }
}

/// Starts the next box from a complete header.
fn start_box(
    file: &mut OpenFile<Fmp4File>,
    header_bytes: Vec<u8>,
    output: &mut StageOutput,
) -> Result<(), StageError> {
    let header = BoxHeader::parse(&header_bytes)
        .map_err(|error| file.error(format!("at offset {}: {}", file.box_start, error.message)))?;
    let payload = header.size.map(|size| size - header.header_len as u64);
    file.reading = match header.kind {
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
            BoxReading::Collect {
                kind: header.kind,
                header_len: header.header_len,
                data,
                size,
            }
        }
        FourCc::STYP | FourCc::SIDX | FourCc::MFRA => BoxReading::Skip { remaining: payload },
        kind => {
            if kind == FourCc::MDAT {
                file.moof_awaits_mdat = false;
            }
            output.push_chunk(Bytes::from(header_bytes));
            BoxReading::Pass { remaining: payload }
        }
    };
    Ok(())
}
