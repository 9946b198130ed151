//! ffmpeg's command line for a clip that matches the stream: its size, frame rate, AAC rate
//! and channel layout.

use streampub_core::plugin::FillerSource;

use crate::formats::aac::{table_frequency, AAC_SAMPLE_RATES};
use crate::stream_shape::{AudioShape, StreamShape};

/// The largest slate read: a minute of it is converted.
const SLATE_SECONDS: u32 = 60;

/// The container ffmpeg writes the clip in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClipContainer {
    FragmentedMp4,
    MpegTs,
}

/// ffmpeg's arguments to make the clip as `container` on stdout: H.264 without B-frames,
/// keyframes at least every two seconds, AAC.
pub(super) fn ffmpeg_args(
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
