//! Enhanced RTMP at `connect`: the FourCCs a stream's first tags use, for `fourCcList`, and
//! what the server's answer says of them.

use streampub_core::plugin::SinkError;
use streampub_flv::FlvTag;
use streampub_rtmp::amf0::Value;
use tracing::warn;

/// The enhanced-RTMP FourCCs of `tags` (`hvc1`, `av01`, `vp09`, `Opus`), each once.
pub(super) fn enhanced_codecs<'a>(tags: impl IntoIterator<Item = &'a FlvTag>) -> Vec<String> {
    let mut codecs: Vec<String> = Vec::new();
    for fourcc in tags.into_iter().filter_map(FlvTag::enhanced_fourcc) {
        let fourcc = String::from_utf8_lossy(&fourcc).into_owned();
        if !codecs.contains(&fourcc) {
            codecs.push(fourcc);
        }
    }
    codecs
}

/// Enhanced RTMP's audio FourCCs; every other FourCC names video.
const AUDIO_FOURCCS: &[&str] = &["Opus", "mp4a", "ac-3", "ec-3", "fLaC", ".mp3"];

fn is_audio(fourcc: &str) -> bool {
    AUDIO_FOURCCS.contains(&fourcc)
}

/// An enhanced-RTMP server that lists the video (or audio) codecs it accepts (`fourCcList`, or
/// the FourCC info maps, in its answer to `connect`) and leaves out one of the stream's has
/// refused it: fatal. A server that lists none of that kind may not speak enhanced RTMP for it
/// (nginx-rtmp, SRS before 6 take the stream, and players cannot decode it): said once, as a
/// warning. (ffmpeg, for one, lists only video codecs.)
pub(super) fn check_enhanced_codecs(
    pipeline: &str,
    codecs: &[String],
    properties: &Value,
) -> Result<(), SinkError> {
    let listed = server_codecs(properties);
    let (listed_audio, listed_video): (Vec<&String>, Vec<&String>) =
        listed.iter().partition(|codec| is_audio(codec));
    let (mut refused, mut unconfirmed) = (Vec::new(), Vec::new());
    for codec in codecs {
        let same_kind = if is_audio(codec) {
            &listed_audio
        } else {
            &listed_video
        };
        if same_kind.is_empty() {
            unconfirmed.push(codec.as_str());
        } else if !same_kind
            .iter()
            .any(|listed| *listed == codec || *listed == "*")
        {
            refused.push(codec.as_str());
        }
    }
    if !refused.is_empty() {
        let accepted: Vec<&str> = listed.iter().map(String::as_str).collect();
        return Err(SinkError::fatal(format!(
            "the RTMP server does not accept {} over enhanced RTMP (it accepts {}); transcode \
             upstream to codecs it accepts (H.264 and AAC need no enhanced RTMP), or publish to \
             a server that accepts them",
            refused.join(", "),
            accepted.join(", ")
        )));
    }
    if !unconfirmed.is_empty() {
        warn!(
            event = "enhanced_rtmp_unconfirmed",
            pipeline = %pipeline,
            codecs = %unconfirmed.join(","),
            "The RTMP server did not say that it accepts {} over enhanced RTMP; a server without \
             enhanced RTMP (nginx-rtmp, SRS before 6) takes the stream but players cannot decode \
             it",
            unconfirmed.join(", ")
        );
    }
    Ok(())
}

/// The codecs a server's `connect` answer lists: `fourCcList`, and the keys of
/// `videoFourCcInfoMap` and `audioFourCcInfoMap`.
fn server_codecs(properties: &Value) -> Vec<String> {
    let mut listed = Vec::new();
    if let Some(Value::StrictArray(list)) = properties.get("fourCcList") {
        listed.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    for map in ["videoFourCcInfoMap", "audioFourCcInfoMap"] {
        if let Some(Value::Object(pairs) | Value::EcmaArray(pairs)) = properties.get(map) {
            listed.extend(pairs.iter().map(|(key, _)| key.clone()));
        }
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_lists_codecs_without_the_streams_refuses_it() {
        let settings = "p";
        let hevc = ["hvc1".to_owned()];
        let answer = |pairs: Vec<(&str, Value)>| Value::object(pairs);
        let listing = answer(vec![(
            "fourCcList",
            Value::StrictArray(vec![Value::string("av01")]),
        )]);
        let error = check_enhanced_codecs(settings, &hevc, &listing).unwrap_err();
        assert!(error.to_string().contains("hvc1"), "{error}");
        let map = answer(vec![(
            "videoFourCcInfoMap",
            Value::object([("hvc1", Value::Number(1.0))]),
        )]);
        assert!(check_enhanced_codecs(settings, &hevc, &map).is_ok());
        let any = answer(vec![(
            "fourCcList",
            Value::StrictArray(vec![Value::string("*")]),
        )]);
        assert!(check_enhanced_codecs(settings, &hevc, &any).is_ok());
        // A server that lists only video (as ffmpeg does) says nothing of Opus.
        let video_only = answer(vec![(
            "fourCcList",
            Value::StrictArray(vec![Value::string("hvc1")]),
        )]);
        let hevc_and_opus = ["hvc1".to_owned(), "Opus".to_owned()];
        assert!(check_enhanced_codecs(settings, &hevc_and_opus, &video_only).is_ok());
        let opus_refused = answer(vec![(
            "audioFourCcInfoMap",
            Value::object([("fLaC", Value::Number(1.0))]),
        )]);
        let error = check_enhanced_codecs(settings, &["Opus".to_owned()], &opus_refused);
        assert!(error.unwrap_err().to_string().contains("Opus"));
        // Silent: not refused (only warned).
        assert!(check_enhanced_codecs(settings, &hevc, &answer(vec![])).is_ok());
        assert!(check_enhanced_codecs(settings, &[], &listing).is_ok());
        let tag = |body: &'static [u8]| FlvTag {
            kind: streampub_flv::TagKind::Video,
            timestamp: 0,
            body: bytes::Bytes::from_static(body),
        };
        let tags = [
            tag(&[0x90, b'h', b'v', b'c', b'1']),
            tag(&[0x91, b'h', b'v', b'c', b'1']),
        ];
        assert_eq!(enhanced_codecs(&tags), ["hvc1"]);
    }
}
