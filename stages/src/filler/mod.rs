//! Filler for a paced stream while upstream is late: what plays (`filler: generate | none |
//! PATH`) and the clip made from it with ffmpeg to match the stream (black and silence, or a
//! slate converted once), in the background as soon as the stream is known, so that it is
//! ready long before upstream is first late. The stages play it in their own format
//! ([`crate::formats::flv::filler`] as FLV tags, [`crate::mpegts_timeline`] as transport stream packets).

mod clip_arguments;
mod clip_maker;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use streampub_core::plugin::ComponentError;
pub use streampub_core::plugin::FillerSource;

pub(crate) use self::clip_arguments::ClipContainer;
pub(crate) use self::clip_maker::ClipMaker;
use crate::formats::aac::AudioSpecificConfig;
use crate::stream_shape::StreamShape;

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

/// The default `ffmpeg` of the stages that make a filler: looked up on `PATH`.
pub(crate) fn default_ffmpeg() -> PathBuf {
    PathBuf::from("ffmpeg")
}
