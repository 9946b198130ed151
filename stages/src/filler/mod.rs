//! Filler for a paced stream while upstream is late: what plays (`filler: generate | none |
//! PATH`) and the clip made from it with ffmpeg to match the stream (black and silence, or a
//! slate converted once), in the background as soon as the stream is known, so that it is
//! ready long before upstream is first late. The stages play it in their own format
//! ([`crate::flv::filler`] as FLV tags, [`crate::mpegts_timeline`] as transport stream packets).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use streampub_core::plugin::die_with_parent;
use streampub_core::plugin::ComponentError;
pub use streampub_core::plugin::FillerSource;

use crate::aac::{table_frequency, AudioSpecificConfig, AAC_SAMPLE_RATES};
use crate::stream_shape::{AudioShape, StreamShape};

/// The largest slate read: a minute of it is converted.
const SLATE_SECONDS: u32 = 60;

/// How long a fill waits for a clip still being made.
const MAKING_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks that a clip has the kinds of track the stream has (`has_video`, `has_audio`: the
/// clip's).
pub(crate) fn check_track_kinds(
    shape: &StreamShape,
    has_video: bool,
    has_audio: bool,
) -> Result<(), String> {
    for (wanted, has, name) in [
        (shape.video.is_some(), has_video, "video"),
        (shape.audio.is_some(), has_audio, "audio"),
    ] {
        if wanted != has {
            return Err(format!(
                "the stream {} {name} but the filler {}; give a slate with the same kinds of \
                 track",
                if wanted { "has" } else { "has no" },
                if has { "has" } else { "has none" },
            ));
        }
    }
    Ok(())
}

/// Checks that a clip's AAC (its AudioSpecificConfig `clip`) sets a decoder up as the
/// stream's does (`stream`): players cannot switch AAC configurations mid-stream, so the
/// filler's frames play under the stream's configuration.
pub(crate) fn check_aac(clip: &[u8], stream: &AudioSpecificConfig) -> Result<(), String> {
    let clip = AudioSpecificConfig::parse(clip)?.decoder_setup();
    let stream = stream.decoder_setup();
    if clip == stream {
        return Ok(());
    }
    Err(format!(
        "its AAC ({clip}) does not decode as the stream's ({stream}); players cannot switch \
         AAC configurations mid-stream: give a slate whose audio ffmpeg can convert to the \
         stream's, or set `filler: none`"
    ))
}

/// Why no clip can match the stream, if none can: the field that stands in the way and what to
/// do (checked before ffmpeg is asked for one).
fn check_fillable(shape: &StreamShape) -> Result<(), String> {
    match shape
        .audio
        .as_ref()
        .and_then(|audio| audio.config.lc_frames_cannot_play())
    {
        Some(problem) => Err(format!("{problem}, or set `filler: none`")),
        None => Ok(()),
    }
}

/// Checks a `filler` option: a slate must be a readable file.
pub(crate) fn validate_filler(source: &FillerSource) -> Result<(), ComponentError> {
    match source {
        FillerSource::File(path) if !path.is_file() => Err(ComponentError::field(
            "filler",
            format!(
                "{} is not a readable file; give a slate file (e.g. MP4), `generate` or `none`",
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// The default of the timeline stages' `filler`: `ffmpeg-rtmp` sets it for the stages it adds.
pub(crate) fn no_filler() -> FillerSource {
    FillerSource::None
}

/// The default `ffmpeg` of the stages that make a filler: looked up on `PATH`.
pub(crate) fn default_ffmpeg() -> PathBuf {
    PathBuf::from("ffmpeg")
}

/// The container ffmpeg writes the clip in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClipContainer {
    FragmentedMp4,
    MpegTs,
}

#[derive(Debug)]
enum ClipState<T> {
    NotStarted,
    Making(mpsc::Receiver<Result<T, String>>),
    Ready(T),
    Failed(String),
}

/// Makes one stage's clip (of type `T`, the clip as the stage plays it) and keeps it.
#[derive(Debug)]
pub(crate) struct ClipMaker<T> {
    source: FillerSource,
    ffmpeg: PathBuf,
    state: ClipState<T>,
}

impl<T: Send + 'static> ClipMaker<T> {
    pub(crate) fn new(source: FillerSource, ffmpeg: PathBuf) -> Self {
        Self {
            source,
            ffmpeg,
            state: ClipState::NotStarted,
        }
    }

    /// Whether the clip still has to be made for the stream.
    pub(crate) fn wants_shape(&self) -> bool {
        self.source != FillerSource::None && matches!(self.state, ClipState::NotStarted)
    }

    /// Starts making the clip for a stream of `shape` as `container`, read by `read`, in the
    /// background.
    pub(crate) fn prepare(
        &mut self,
        shape: StreamShape,
        container: ClipContainer,
        read: fn(Bytes, &StreamShape) -> Result<T, String>,
    ) {
        if let Err(problem) = check_fillable(&shape) {
            self.state = ClipState::Failed(problem);
            return;
        }
        let (sender, receiver) = mpsc::channel();
        let (source, ffmpeg) = (self.source.clone(), self.ffmpeg.clone());
        std::thread::spawn(move || {
            let _ = sender.send(make_clip(&source, &ffmpeg, &shape, container, read));
        });
        self.state = ClipState::Making(receiver);
    }

    /// The stream is one no clip can match (`problem` says why): each fill fails with it.
    pub(crate) fn cannot_match(&mut self, problem: String) {
        self.state = ClipState::Failed(problem);
    }

    /// The stream changed: the clip is made again for the new one when its shape is known.
    pub(crate) fn forget(&mut self) {
        self.state = ClipState::NotStarted;
    }

    /// The clip, if it is made.
    pub(crate) fn clip(&self) -> Option<&T> {
        match &self.state {
            ClipState::Ready(clip) => Some(clip),
            _ => None,
        }
    }

    /// The clip, waiting for it if it is being made; why there is none otherwise.
    pub(crate) fn ready(&mut self) -> Result<&T, String> {
        if let ClipState::Making(receiver) = &self.state {
            self.state = match receiver.recv_timeout(MAKING_TIMEOUT) {
                Ok(Ok(clip)) => ClipState::Ready(clip),
                Ok(Err(problem)) => ClipState::Failed(problem),
                Err(_) => ClipState::Failed(format!(
                    "making the filler took more than {} s",
                    MAKING_TIMEOUT.as_secs()
                )),
            };
        }
        match &self.state {
            ClipState::Ready(clip) => Ok(clip),
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

/// Makes the clip with ffmpeg as `container` and reads it with `read`.
fn make_clip<T>(
    source: &FillerSource,
    ffmpeg: &Path,
    shape: &StreamShape,
    container: ClipContainer,
    read: fn(Bytes, &StreamShape) -> Result<T, String>,
) -> Result<T, String> {
    let what = match source {
        FillerSource::File(path) => format!("filler {}", path.display()),
        _ => "the generated filler".to_owned(),
    };
    let args = ffmpeg_args(source, shape, container);
    let mut command = Command::new(ffmpeg);
    command.args(&args).stdin(Stdio::null());
    // SAFETY: `die_with_parent` only makes async-signal-safe calls in the child. The thread
    // that forks it waits for it, so ffmpeg dies with streampub and not before.
    unsafe {
        command.pre_exec(die_with_parent());
    }
    let output = command
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
    read(Bytes::from(output.stdout), shape).map_err(|problem| format!("{what}: {problem}"))
}

/// ffmpeg's arguments to make the clip as `container` on stdout: H.264 without B-frames,
/// keyframes at least every two seconds, AAC.
fn ffmpeg_args(
    source: &FillerSource,
    shape: &StreamShape,
    container: ClipContainer,
) -> Vec<String> {
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
                    format!("anullsrc=r={}:cl={}", encoder_rate(audio), layout(audio)),
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
        // The encoder's rate and layout decide its AudioSpecificConfig; a slate is resampled
        // and remixed to them.
        args.extend([
            "-map".to_owned(),
            audio_input.to_owned(),
            "-af".to_owned(),
            format!(
                "aresample={rate},aformat=sample_rates={rate}:channel_layouts={}",
                layout(audio),
                rate = encoder_rate(audio)
            ),
            "-c:a".to_owned(),
            "aac".to_owned(),
        ]);
    }
    let container: &[&str] = match container {
        ClipContainer::FragmentedMp4 => &[
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
        ],
        // In MPEG-TS, libx264 repeats the parameter sets before each keyframe and AAC is ADTS.
        ClipContainer::MpegTs => &["-f", "mpegts"],
    };
    args.extend(container.iter().map(|arg| arg.to_string()));
    args.push("pipe:1".to_owned());
    args
}

/// The rate ffmpeg's AAC encoder runs at: the stream's core rate, or for an explicit rate off
/// the standard ones, the one whose tables the stream's decoder uses (so the frames decode
/// alike; the encoder takes only standard rates).
fn encoder_rate(audio: &AudioShape) -> u32 {
    let rate = audio.config.sampling_frequency;
    if AAC_SAMPLE_RATES.contains(&rate) {
        rate
    } else {
        table_frequency(rate)
    }
}

/// The ffmpeg channel layout for which its AAC encoder writes the stream's channel
/// configuration (checked to be 1-7 before).
fn layout(audio: &AudioShape) -> &'static str {
    match audio.config.channel_configuration {
        1 => "mono",
        2 => "stereo",
        3 => "3.0",
        4 => "4.0",
        5 => "5.0",
        6 => "5.1",
        _ => "7.1",
    }
}
