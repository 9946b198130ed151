//! Reading the continuous fragmented MP4 stream box by box: `moov` and `moof` are collected
//! whole, an `mdat` as slices of the chunks read (its samples become tags), other boxes are
//! skipped.

use streampub_core::plugin::{StageError, StageOutput};

use super::stream_state::Fmp4ToFlv;
use crate::formats::flv::tags::{flv_track, media_tags, needs_enhanced_rtmp, MediaData, Tag};
use crate::formats::flv::MediaKind;
use crate::formats::mp4::samples::{read_samples, Sample};
use crate::formats::mp4::{describe_moov, BoxHeader, FourCc};
use crate::stream_shape::{most_common, StreamShape};
use crate::timeline_engine::{ChunkReader, FileReading, OpenFile};

/// The largest `moov` or `moof` buffered.
const MAX_BOX: u64 = 32 << 20;
/// The largest `mdat` buffered: one fragment of an upstream file.
const MAX_MEDIA_DATA: u64 = 256 << 20;

/// Where the reading of a box is.
#[derive(Debug, Default)]
enum BoxReading {
    /// Collecting a box header (empty: at a box boundary).
    #[default]
    Header,
    Partial(Vec<u8>),
    /// Collecting an `mdat` as slices of the chunks read; `left`: bytes of it still to come.
    MediaData {
        data: MediaData,
        left: u64,
    },
    /// Collecting a box (`moov`, `moof`; `keep`), or skipping one (only its header is in
    /// `data`).
    Box {
        kind: FourCc,
        header_len: usize,
        data: Vec<u8>,
        left: u64,
        keep: bool,
    },
}

/// The state of the fragment being read.
#[derive(Debug, Default)]
pub(crate) struct Fmp4ToFlvFile {
    reading: BoxReading,
    /// The last `moof`: its samples and its size (their offsets count from its first byte).
    moof: Option<(Vec<Sample>, u64)>,
    /// The tags of the last `mdat`, written once the fragment goes on past it.
    pub(super) held: Vec<Tag>,
}

impl Fmp4ToFlvFile {
    /// Whether no box is half read.
    fn is_at_box_boundary(&self) -> bool {
        match &self.reading {
            BoxReading::Header => true,
            BoxReading::Partial(header) => header.is_empty(),
            _ => false,
        }
    }
}

impl FileReading for Fmp4ToFlv {
    type File = Fmp4ToFlvFile;

    fn read(
        &mut self,
        file: &mut OpenFile<Fmp4ToFlvFile>,
        reader: &mut ChunkReader,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        while !reader.is_empty() {
            match &mut file.reading {
                BoxReading::Header => file.reading = BoxReading::Partial(Vec::with_capacity(16)),
                BoxReading::Partial(header) => {
                    let wanted = if header.len() < 8 {
                        8
                    } else {
                        BoxHeader::needed(header)
                    };
                    if reader.fill(header, wanted) && header.len() == BoxHeader::needed(header) {
                        let header = std::mem::take(header);
                        self.start_box(file, header, output)?;
                    }
                }
                BoxReading::MediaData { data, left } => {
                    data.push(reader.take(Some(left)));
                    if *left == 0 {
                        let BoxReading::MediaData { data, .. } = std::mem::take(&mut file.reading)
                        else {
                            unreachable!("matched above");
                        };
                        self.handle_media_data(file, &data, output)?;
                    }
                }
                BoxReading::Box {
                    data, left, keep, ..
                } => {
                    if *keep {
                        let wanted = data.len() + *left as usize;
                        reader.fill(data, wanted);
                        *left = (wanted - data.len()) as u64;
                    } else {
                        reader.skip(Some(left));
                    }
                    if *left == 0 {
                        self.end_box(file)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Fmp4ToFlv {
    /// What was read is all there is: it must end at a box boundary, and the tags of its last
    /// `mdat` go out.
    pub(super) fn finish_boxes(
        &mut self,
        file: &mut OpenFile<Fmp4ToFlvFile>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        if !file.is_at_box_boundary() {
            return Err(file.error("it ends inside a box"));
        }
        self.write_held(file, output);
        Ok(())
    }

    /// Starts a box from its complete header: collects `moov`, `moof` and `mdat`, skips others.
    fn start_box(
        &mut self,
        file: &mut OpenFile<Fmp4ToFlvFile>,
        header: Vec<u8>,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        self.write_held(file, output);
        let parsed = BoxHeader::parse(&header).map_err(|error| file.error(error.message))?;
        let limit = if parsed.kind == FourCc::MDAT {
            MAX_MEDIA_DATA
        } else {
            MAX_BOX
        };
        let size = match parsed.size {
            Some(size) if size <= limit => size,
            _ => return Err(file.error(format!("box {} is too large or open-ended", parsed.kind))),
        };
        let left = size - parsed.header_len as u64;
        if parsed.kind == FourCc::MDAT {
            let data = MediaData::new(parsed.header_len);
            if left == 0 {
                return self.handle_media_data(file, &data, output);
            }
            file.reading = BoxReading::MediaData { data, left };
            return Ok(());
        }
        let keep = matches!(&parsed.kind.0, b"moov" | b"moof");
        let mut data = header;
        if keep {
            data.reserve(left as usize);
        }
        file.reading = BoxReading::Box {
            kind: parsed.kind,
            header_len: parsed.header_len,
            data,
            left,
            keep,
        };
        // A box that is all header is complete at once.
        if left == 0 {
            self.end_box(file)?;
        }
        Ok(())
    }

    /// A collected or skipped box is all read: a `moov` or `moof` is handled.
    fn end_box(&mut self, file: &mut OpenFile<Fmp4ToFlvFile>) -> Result<(), StageError> {
        if let BoxReading::Box {
            kind,
            header_len,
            data,
            keep: true,
            ..
        } = std::mem::take(&mut file.reading)
        {
            self.handle(file, kind, header_len, data)?;
        }
        Ok(())
    }

    /// Handles a complete `moov` or `moof`.
    fn handle(
        &mut self,
        file: &mut OpenFile<Fmp4ToFlvFile>,
        kind: FourCc,
        header_len: usize,
        data: Vec<u8>,
    ) -> Result<(), StageError> {
        if kind == FourCc::MOOV {
            return self.handle_moov(file, &data[header_len..]);
        }
        if let Some(problem) = &self.refused {
            return Err(file.error(problem));
        }
        if self.tracks.is_empty() {
            return Err(file.error("a moof before any moov"));
        }
        let samples = read_samples(&data[header_len..], header_len, &self.descriptions)
            .map_err(|error| file.error(error.message))?;
        if self.shape.is_none() {
            self.learn_shape(&samples);
        }
        file.moof = Some((samples, data.len() as u64));
        Ok(())
    }

    fn handle_moov(
        &mut self,
        file: &OpenFile<Fmp4ToFlvFile>,
        moov: &[u8],
    ) -> Result<(), StageError> {
        let descriptions = describe_moov(moov)
            .map_err(|error| file.error(error.message))?
            .ok_or_else(|| file.error("its moov is not fragmented"))?;
        let enhanced_rtmp = self.enhanced_rtmp;
        let tracks = match descriptions
            .iter()
            .map(|description| {
                let track = flv_track(description)?;
                match needs_enhanced_rtmp(&track) {
                    Some(problem) if !enhanced_rtmp => Err(problem),
                    _ => Ok(track),
                }
            })
            .collect::<Result<Vec<_>, String>>()
        {
            Ok(tracks) => tracks,
            Err(problem) => {
                self.refused = Some(problem.clone());
                return Err(file.error(problem));
            }
        };
        self.refused = None;
        self.header_flags = tracks.iter().fold(0, |flags, track| {
            flags
                | match track.kind() {
                    MediaKind::Audio => 0x04,
                    MediaKind::Video => 0x01,
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
        Ok(())
    }

    /// What the stream is, from its first media segment's `samples`: for `onMetaData`, and
    /// the filler made to match it.
    fn learn_shape(&mut self, samples: &[Sample]) {
        let video = self
            .tracks
            .iter()
            .find(|track| track.kind() == MediaKind::Video);
        // The most common frame duration: encoders lengthen the first frame by the audio's
        // priming, so it is not the first one's.
        let frame_duration = video.and_then(|video| {
            let mut durations: Vec<u32> = samples
                .iter()
                .filter(|sample| sample.track_id == video.track_id)
                .map(|sample| sample.duration)
                .collect();
            most_common(&mut durations)
        });
        let (shape, audio) = StreamShape::of(&self.descriptions, &self.tracks, frame_duration);
        let enhanced = self
            .tracks
            .iter()
            .any(|track| !track.configuration.codec.is_legacy());
        match audio {
            // Filler is H.264 and AAC: switching codecs inside a session breaks players.
            _ if enhanced => self.filler.cannot_match(
                "no filler can be made for this stream: filler is H.264 and AAC, and this \
                 stream's codecs need enhanced RTMP (set `filler: none` to wait for upstream \
                 without one)"
                    .to_owned(),
            ),
            Ok(()) if self.filler.wants_shape() => self.filler.prepare(shape.clone()),
            Ok(()) => {}
            Err(problem) => self.filler.cannot_match(format!(
                "no filler can be made for this stream: its audio's {problem}"
            )),
        }
        self.shape = Some(shape);
    }

    /// Handles a complete `mdat`: the samples of the `moof` before it become tags, held until
    /// the fragment goes on past it.
    fn handle_media_data(
        &mut self,
        file: &mut OpenFile<Fmp4ToFlvFile>,
        mdat: &MediaData,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        let (samples, moof_size) = file
            .moof
            .take()
            .ok_or_else(|| file.error("an mdat without its moof"))?;
        let tags = media_tags(&self.tracks, &samples, moof_size, mdat)
            .map_err(|problem| file.error(problem))?;
        self.write_held(file, output);
        file.held = tags;
        Ok(())
    }
}
