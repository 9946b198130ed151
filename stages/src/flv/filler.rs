//! Filler for a paced stream while upstream is late: a short clip that matches the stream
//! (black and silence made by ffmpeg, or a slate file converted once by ffmpeg), looped from
//! keyframe to keyframe on the stream's timeline.
//!
//! The clip is made in the background as soon as the stream is known (its first media
//! segment gives the frame rate), so that it is ready long before upstream is first late.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::stream_shape::{aac_essentials, StreamShape};
use super::tags::{flv_track, media_tags, FlvTrack, Kind, MediaData, Tag};
use crate::mp4::samples::read_samples;
use crate::mp4::{describe_moov, BoxHeader};

/// The largest slate read: a minute of it is converted.
const SLATE_SECONDS: u32 = 60;

/// How long a fill waits for a clip still being made.
const MAKING_TIMEOUT: Duration = Duration::from_secs(30);

/// What plays while upstream is late (`filler`): `generate`, `none`, or the path of a slate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FillerSource {
    /// Black video and silence made by ffmpeg to match the stream.
    #[default]
    Generate,
    /// No filler: the output waits for the next fragment.
    None,
    /// A slate (any file ffmpeg reads, e.g. MP4), converted once to match the stream.
    File(PathBuf),
}

impl fmt::Display for FillerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Generate => f.write_str("generate"),
            Self::None => f.write_str("none"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for FillerSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.as_str() {
            "generate" => Self::Generate,
            "none" => Self::None,
            "" => return Err(de::Error::custom("write generate, none or a file's path")),
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl Serialize for FillerSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for FillerSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FillerSource".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "generate, none, or the path of a slate file",
            "examples": ["generate", "none", "/srv/slate.mp4"]
        })
    }
}

/// The clip as FLV tags from 0 ms (video starting with a keyframe), and how long one loop
/// lasts.
#[derive(Debug)]
pub(crate) struct FillerClip {
    tags: Vec<Tag>,
    period_ns: i128,
}

#[derive(Debug)]
enum ClipState {
    NotStarted,
    Making(mpsc::Receiver<Result<FillerClip, String>>),
    Ready(FillerClip),
    Failed(String),
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

/// The filler of one packetizer.
#[derive(Debug)]
pub(crate) struct Filler {
    source: FillerSource,
    ffmpeg: PathBuf,
    clip: ClipState,
    run: Option<Run>,
}

impl Default for Filler {
    /// No filler.
    fn default() -> Self {
        Self::new(FillerSource::None, PathBuf::from("ffmpeg"))
    }
}

impl Filler {
    pub(crate) fn new(source: FillerSource, ffmpeg: PathBuf) -> Self {
        Self {
            source,
            ffmpeg,
            clip: ClipState::NotStarted,
            run: None,
        }
    }

    /// Whether the clip still has to be made for the stream.
    pub(crate) fn wants_shape(&self) -> bool {
        self.source != FillerSource::None && matches!(self.clip, ClipState::NotStarted)
    }

    /// Starts making the clip for a stream of `shape`, in the background.
    pub(crate) fn prepare(&mut self, shape: StreamShape) {
        let (sender, receiver) = mpsc::channel();
        let (source, ffmpeg) = (self.source.clone(), self.ffmpeg.clone());
        std::thread::spawn(move || {
            let _ = sender.send(make_clip(&source, &ffmpeg, &shape));
        });
        self.clip = ClipState::Making(receiver);
    }

    /// The filler tags after the media that ended at `from_ms` (where a new gap begins), up to
    /// but not including `until_ms`.
    pub(crate) fn tags_until(&mut self, from_ms: i128, until_ms: i128) -> Result<Vec<Tag>, String> {
        self.wait_for_clip()?;
        let ClipState::Ready(clip) = &self.clip else {
            unreachable!("wait_for_clip returns Ok only when the clip is ready");
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

    /// The stream is one no clip can match (`problem` says why): each fill fails with it.
    pub(crate) fn cannot_match(&mut self, problem: String) {
        self.clip = ClipState::Failed(problem);
    }

    /// Whether the filler is playing: a gap began and no fragment has come since.
    pub(crate) fn is_playing(&self) -> bool {
        self.run.is_some()
    }

    /// The stream changed: the clip is made again for the new one when its shape is known.
    pub(crate) fn forget_clip(&mut self) {
        self.clip = ClipState::NotStarted;
        self.run = None;
    }

    /// The decoder configuration per kind (video, audio) of the clip, once it is made.
    pub(crate) fn configurations(&self) -> [Option<Bytes>; 2] {
        let mut configurations = [None, None];
        if let ClipState::Ready(clip) = &self.clip {
            for tag in &clip.tags {
                configurations[tag.kind.index()].get_or_insert_with(|| tag.configuration.clone());
            }
        }
        configurations
    }

    /// A new session begins in the middle of a gap: the filler goes on from where it got to,
    /// but from the clip's first keyframe (the new session's decoder has nothing to refer to).
    pub(crate) fn restart_at_keyframe(&mut self) {
        let (Some(run), ClipState::Ready(clip)) = (&mut self.run, &self.clip) else {
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

    fn wait_for_clip(&mut self) -> Result<(), String> {
        if let ClipState::Making(receiver) = &self.clip {
            self.clip = match receiver.recv_timeout(MAKING_TIMEOUT) {
                Ok(Ok(clip)) => ClipState::Ready(clip),
                Ok(Err(problem)) => ClipState::Failed(problem),
                Err(_) => ClipState::Failed(format!(
                    "making the filler took more than {} s",
                    MAKING_TIMEOUT.as_secs()
                )),
            };
        }
        match &self.clip {
            ClipState::Ready(_) => Ok(()),
            ClipState::Failed(problem) => Err(problem.clone()),
            ClipState::NotStarted if self.source == FillerSource::None => Err(
                "the stage has `filler: none` (a pipeline that lists the stage itself sets \
                     `filler` on it)"
                    .to_owned(),
            ),
            ClipState::NotStarted | ClipState::Making(_) => {
                Err("the stream's shape is not known yet".to_owned())
            }
        }
    }
}

/// Makes the clip with ffmpeg and reads it.
fn make_clip(
    source: &FillerSource,
    ffmpeg: &Path,
    shape: &StreamShape,
) -> Result<FillerClip, String> {
    let what = match source {
        FillerSource::File(path) => format!("filler {}", path.display()),
        _ => "the generated filler".to_owned(),
    };
    let args = ffmpeg_args(source, shape);
    let output = Command::new(ffmpeg)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{what}: cannot run {}: {error}", ffmpeg.display()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{what} could not be made ({}); ffmpeg said: {}",
            output.status,
            said.trim()
        ));
    }
    read_clip(Bytes::from(output.stdout), shape).map_err(|problem| format!("{what}: {problem}"))
}

/// ffmpeg's arguments to make the clip as fragmented MP4 on stdout: H.264 without B-frames,
/// keyframes at least every two seconds, AAC.
fn ffmpeg_args(source: &FillerSource, shape: &StreamShape) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error"]
        .map(String::from)
        .to_vec();
    let (video_input, audio_input, seconds) = match source {
        FillerSource::File(path) => {
            args.extend(["-i".to_owned(), path.display().to_string()]);
            // Optional maps: a slate without a track the stream has is refused when read, with
            // a clearer message than ffmpeg's.
            ("0:v:0?", "0:a:0?", SLATE_SECONDS.to_string())
        }
        _ => {
            if let Some(video) = &shape.video {
                let (rate, duration) = video.frame_rate;
                args.extend([
                    "-f".to_owned(),
                    "lavfi".to_owned(),
                    "-i".to_owned(),
                    format!(
                        "color=c=black:s={}x{}:r={rate}/{duration}",
                        video.width, video.height
                    ),
                ]);
            }
            if let Some(audio) = &shape.audio {
                args.extend([
                    "-f".to_owned(),
                    "lavfi".to_owned(),
                    "-i".to_owned(),
                    format!(
                        "anullsrc=r={}:cl={}",
                        audio.sample_rate,
                        channel_layout(audio.channels)
                    ),
                ]);
            }
            // The audio source is the second input when there is a video one.
            let audio_input = if shape.video.is_some() { "1:a" } else { "0:a" };
            // One second of whole frames.
            let seconds = shape.video.as_ref().map_or("1".to_owned(), |video| {
                let (rate, duration) = video.frame_rate;
                let frames = rate.div_ceil(duration);
                format!(
                    "{:.6}",
                    f64::from(frames) * f64::from(duration) / f64::from(rate)
                )
            });
            ("0:v", audio_input, seconds)
        }
    };
    args.extend(["-t".to_owned(), seconds]);
    if let Some(video) = &shape.video {
        let (rate, duration) = video.frame_rate;
        let (width, height) = (video.width, video.height);
        args.extend(["-map".to_owned(), video_input.to_owned()]);
        args.extend([
            "-vf".to_owned(),
            format!(
                "scale={width}:{height}:force_original_aspect_ratio=decrease,\
                 pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,fps={rate}/{duration},format=yuv420p"
            ),
            "-c:v".to_owned(),
            "libx264".to_owned(),
            "-preset".to_owned(),
            "veryfast".to_owned(),
            "-bf".to_owned(),
            "0".to_owned(),
            "-g".to_owned(),
            (2 * rate.div_ceil(duration)).to_string(),
        ]);
    }
    if let Some(audio) = &shape.audio {
        args.extend([
            "-map".to_owned(),
            audio_input.to_owned(),
            "-af".to_owned(),
            format!("aresample={}", audio.sample_rate),
            "-ac".to_owned(),
            audio.channels.to_string(),
            "-c:a".to_owned(),
            "aac".to_owned(),
        ]);
    }
    args.extend(
        [
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            "pipe:1",
        ]
        .map(String::from),
    );
    args
}

fn channel_layout(channels: u16) -> String {
    match channels {
        1 => "mono".to_owned(),
        2 => "stereo".to_owned(),
        other => format!("{other}c"),
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
    for (kind, wanted, name) in [
        (Kind::Video, shape.video.is_some(), "video"),
        (Kind::Audio, shape.audio.is_some(), "audio"),
    ] {
        let has = tracks.iter().any(|track| track.kind == kind);
        if has != wanted {
            return Err(format!(
                "the stream {} {name} but the filler {}; give a slate with the same kinds of \
                 track",
                if wanted { "has" } else { "has no" },
                if has { "has" } else { "has none" },
            ));
        }
    }
    if let (Some(audio), Some(track)) = (
        &shape.audio,
        tracks.iter().find(|track| track.kind == Kind::Audio),
    ) {
        if aac_essentials(&track.configuration) != aac_essentials(&audio.configuration) {
            return Err(format!(
                "its AAC configuration (AudioSpecificConfig {:02x?}) differs from the stream's \
                 ({:02x?}); players cannot switch AAC configurations mid-stream: use AAC-LC \
                 upstream, or `filler: none`",
                track.configuration.as_ref(),
                audio.configuration.as_ref()
            ));
        }
        // The same decoder setup (ffmpeg may add an extension saying "no SBR"): the filler's
        // audio goes on with the stream's configuration, so no audio header is sent again.
        for tag in tags.iter_mut().filter(|tag| tag.kind == Kind::Audio) {
            tag.configuration = audio.configuration.clone();
        }
    }
    // ffmpeg lengthens the first frame by the AAC encoder's priming; the clip is constant
    // frame rate (its `fps` filter, no B-frames) and AAC frames are 1024 samples, so each
    // tag's time is its index times its frame's duration. A loop lasts as long as the video
    // (or, without video, the audio); audio beyond is cut, so that each loop starts again at
    // the first keyframe.
    let frame_ns = |kind| match kind {
        Kind::Video => shape.video.as_ref().map(|video| {
            let (rate, duration) = video.frame_rate;
            i128::from(duration) * 1_000_000_000 / i128::from(rate)
        }),
        Kind::Audio => shape
            .audio
            .as_ref()
            .map(|audio| 1024 * 1_000_000_000 / i128::from(audio.sample_rate.max(1))),
    };
    let mut counts = [0i128; 2];
    for tag in &mut tags {
        let index = &mut counts[tag.kind.index()];
        let frame = frame_ns(tag.kind).unwrap_or(0);
        tag.decode_ms = (*index * frame + 500_000) / 1_000_000;
        tag.duration_ms = (frame + 500_000) / 1_000_000;
        *index += 1;
    }
    let timing = if shape.video.is_some() {
        Kind::Video
    } else {
        Kind::Audio
    };
    let period_ns = counts[timing.index()] * frame_ns(timing).unwrap_or(0);
    tags.sort_by_key(|tag| tag.decode_ms);
    tags.retain(|tag| tag.decode_ms * 1_000_000 < period_ns);
    if tags.is_empty() || period_ns <= 0 {
        return Err("it holds no media".to_owned());
    }
    Ok(FillerClip { tags, period_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_reads_generate_none_or_a_path() {
        let read = |text: &str| serde_json::from_value::<FillerSource>(text.into());
        assert_eq!(read("generate").unwrap(), FillerSource::Generate);
        assert_eq!(read("none").unwrap(), FillerSource::None);
        assert_eq!(
            read("/srv/slate.mp4").unwrap(),
            FillerSource::File("/srv/slate.mp4".into())
        );
        assert!(read("").is_err());
    }
}
