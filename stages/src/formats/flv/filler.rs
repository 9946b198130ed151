//! The filler as FLV tags: the clip made as fragmented MP4 and read into tags, looped from
//! keyframe to keyframe on the stream's timeline.

use bytes::Bytes;

use super::tags::{flv_track, media_tags, Configuration, FlvTrack, MediaData, Tag};
use super::MediaKind;
use crate::filler::{check_aac, check_track_kinds, ClipContainer, ClipMaker, FillerSource};
use crate::formats::mp4::samples::read_samples;
use crate::formats::mp4::{describe_moov, BoxHeader};
use crate::stream_shape::StreamShape;

/// The clip as FLV tags from 0 ms (video starting with a keyframe), and how long one loop
/// lasts.
#[derive(Debug)]
pub(crate) struct FillerClip {
    tags: Vec<Tag>,
    period_ns: i128,
}

/// Where the current gap's filler is.
#[derive(Debug)]
struct Run {
    /// Where the first loop began on the timeline, in ms.
    start_ms: i128,
    loop_index: i128,
    /// The next tag of the clip.
    next: usize,
}

impl Run {
    /// Where the current loop began on the timeline, in ms (each loop's start rounded from the
    /// exact period, so loops do not drift).
    fn loop_start(&self, clip: &FillerClip) -> i128 {
        self.start_ms + (self.loop_index * clip.period_ns + 500_000).div_euclid(1_000_000)
    }
}

/// The filler of one FLV stage.
#[derive(Debug)]
pub(crate) struct Filler {
    clip: ClipMaker<FillerClip>,
    run: Option<Run>,
}

impl Default for Filler {
    /// No filler.
    fn default() -> Self {
        Self::new(FillerSource::None, std::path::PathBuf::from("ffmpeg"))
    }
}

impl Filler {
    pub(crate) fn new(source: FillerSource, ffmpeg: std::path::PathBuf) -> Self {
        Self {
            clip: ClipMaker::new(source, ffmpeg),
            run: None,
        }
    }

    /// Whether the clip still has to be made for the stream.
    pub(crate) fn wants_shape(&self) -> bool {
        self.clip.wants_shape()
    }

    /// Starts making the clip for a stream of `shape`, in the background.
    pub(crate) fn prepare(&mut self, shape: StreamShape) {
        self.clip
            .prepare(shape, ClipContainer::FragmentedMp4, read_clip);
    }

    /// The filler tags after the media that ended at `from_ms` (where a new gap begins), up to
    /// but not including `until_ms`; none while the clip is still being made (a later call
    /// then plays the gap from its start).
    pub(crate) fn tags_until(&mut self, from_ms: i128, until_ms: i128) -> Result<Vec<Tag>, String> {
        let Some(clip) = self.clip.ready()? else {
            return Ok(Vec::new());
        };
        let run = self.run.get_or_insert(Run {
            start_ms: from_ms,
            loop_index: 0,
            next: 0,
        });
        let mut tags = Vec::new();
        loop {
            let loop_start = run.loop_start(clip);
            let tag = &clip.tags[run.next];
            if loop_start + tag.decode_ms >= until_ms {
                return Ok(tags);
            }
            tags.push(tag.shifted(loop_start));
            run.next += 1;
            if run.next == clip.tags.len() {
                run.next = 0;
                run.loop_index += 1;
            }
        }
    }

    /// Waits for the clip being made: for tests that fill at once.
    #[cfg(test)]
    pub(crate) fn wait_until_made(&mut self) {
        self.clip.wait_until_made();
    }

    /// The stream is one no clip can match (`problem` says why): each fill fails with it.
    pub(crate) fn cannot_match(&mut self, problem: String) {
        self.clip.cannot_match(problem);
    }

    /// Whether the filler is playing: a gap began and no fragment has come since.
    pub(crate) fn is_playing(&self) -> bool {
        self.run.is_some()
    }

    /// The stream changed: the clip is made again for the new one when its shape is known.
    pub(crate) fn forget_clip(&mut self) {
        self.clip.forget();
        self.run = None;
    }

    /// The decoder configuration per kind (video, audio) of the clip, once it is made.
    pub(crate) fn configurations(&self) -> [Option<Configuration>; 2] {
        let mut configurations = [None, None];
        if let Some(clip) = self.clip.clip() {
            for tag in &clip.tags {
                configurations[tag.kind().index()].get_or_insert_with(|| tag.configuration.clone());
            }
        }
        configurations
    }

    /// A new session begins in the middle of a gap: the filler goes on from where it got to,
    /// but from the clip's first keyframe (the new session's decoder has nothing to refer to).
    pub(crate) fn restart_at_keyframe(&mut self) {
        let (Some(run), Some(clip)) = (&mut self.run, self.clip.clip()) else {
            return;
        };
        let loop_start = run.loop_start(clip);
        *run = Run {
            start_ms: loop_start + clip.tags[run.next].decode_ms,
            loop_index: 0,
            next: 0,
        };
    }

    /// Content resumed: the next gap starts the clip again from its first keyframe.
    pub(crate) fn stop(&mut self) {
        self.run = None;
    }
}

/// Reads the clip's fragmented MP4 into tags; checks it carries what the stream does.
fn read_clip(file: Bytes, shape: &StreamShape) -> Result<FillerClip, String> {
    let mut tracks: Vec<FlvTrack> = Vec::new();
    let mut descriptions = Vec::new();
    let mut tags = Vec::new();
    let mut moof = None;
    let mut at = 0;
    while at + 8 <= file.len() {
        let header = BoxHeader::parse(&file[at..]).map_err(|error| error.message)?;
        let size = header
            .size
            .map_or(file.len() - at, |size| size as usize)
            .min(file.len() - at);
        let payload = &file[at + header.header_len..at + size];
        match &header.kind.0 {
            b"moov" => {
                descriptions = describe_moov(payload)
                    .map_err(|error| error.message)?
                    .ok_or("it is not fragmented MP4")?;
                tracks = descriptions
                    .iter()
                    .map(flv_track)
                    .collect::<Result<_, _>>()?;
            }
            b"moof" => {
                let samples = read_samples(payload, header.header_len, &descriptions)
                    .map_err(|error| error.message)?;
                moof = Some((samples, size as u64));
            }
            b"mdat" => {
                let (samples, moof_size) = moof.take().ok_or("an mdat without its moof")?;
                let mut mdat = MediaData::new(header.header_len);
                mdat.push(file.slice(at + header.header_len..at + size));
                tags.extend(media_tags(&tracks, &samples, moof_size, &mdat)?);
            }
            _ => {}
        }
        at += size;
    }
    let has = |kind| tracks.iter().any(|track: &FlvTrack| track.kind() == kind);
    check_track_kinds(shape, has(MediaKind::Video), has(MediaKind::Audio))?;
    if let (Some(audio), Some(track)) = (
        &shape.audio,
        tracks.iter().find(|track| track.kind() == MediaKind::Audio),
    ) {
        check_aac(&track.configuration.bytes, &audio.config)?;
        // The same decoder setup (ffmpeg may add an extension saying "no SBR"): the filler's
        // audio goes on with the stream's configuration, so no audio header is sent again.
        for tag in tags.iter_mut().filter(|tag| tag.kind() == MediaKind::Audio) {
            tag.configuration.bytes = audio.configuration.clone();
        }
    }
    // ffmpeg lengthens the first frame by the AAC encoder's priming; the clip is constant
    // frame rate (its `fps` filter, no B-frames) and AAC frames are 1024 samples, so each
    // tag's time is its index times its frame's duration. A loop lasts as long as the video
    // (or, without video, the audio); audio beyond is cut, so that each loop starts again at
    // the first keyframe.
    let frame_ns = |kind| match kind {
        MediaKind::Video => shape.video.as_ref().map(|video| {
            let (rate, duration) = video.frame_rate;
            i128::from(duration) * 1_000_000_000 / i128::from(rate)
        }),
        MediaKind::Audio => shape.audio.as_ref().map(|audio| {
            i128::from(audio.config.frame_length) * 1_000_000_000
                / i128::from(audio.config.sampling_frequency.max(1))
        }),
    };
    let mut counts = [0i128; 2];
    for tag in &mut tags {
        let index = &mut counts[tag.kind().index()];
        let frame = frame_ns(tag.kind()).unwrap_or(0);
        tag.decode_ms = (*index * frame + 500_000) / 1_000_000;
        tag.duration_ms = (frame + 500_000) / 1_000_000;
        *index += 1;
    }
    let timing = if shape.video.is_some() {
        MediaKind::Video
    } else {
        MediaKind::Audio
    };
    let period_ns = counts[timing.index()] * frame_ns(timing).unwrap_or(0);
    tags.sort_by_key(|tag| tag.decode_ms);
    tags.retain(|tag| tag.decode_ms * 1_000_000 < period_ns);
    if tags.is_empty() || period_ns <= 0 {
        return Err("it holds no media".to_owned());
    }
    Ok(FillerClip { tags, period_ns })
}
