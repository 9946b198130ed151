//! The `onMetaData` script tag that tells FLV readers what the stream is before its first
//! sample, and the shape of an MP4 stream made into FLV tags.

use bytes::Bytes;

use super::tags::{Configuration, FlvCodec, FlvTrack};
use super::MediaKind;
use crate::formats::mp4::sample_entry::Shape;
use crate::formats::mp4::TrackDescription;
use crate::stream_shape::{AudioShape, StreamShape, VideoShape};

impl StreamShape {
    /// The shape of a stream with `tracks` (described by `descriptions`) whose video frames
    /// last `frame_duration` ticks of the video track's timescale. The audio's comes from its
    /// AudioSpecificConfig, not from the sample entry, whose channel count muxers write as 2
    /// whatever the stream (ISO/IEC 14496-12 makes it a template field). An AudioSpecificConfig
    /// that does not read leaves the audio out, and is what the `Err` says: no filler can match
    /// such a stream, but it can still be published.
    pub(crate) fn of(
        descriptions: &[TrackDescription],
        tracks: &[FlvTrack],
        frame_duration: Option<u32>,
    ) -> (Self, Result<(), String>) {
        let mut unreadable = Ok(());
        let mut shape = Self {
            video: None,
            audio: None,
        };
        for (description, track) in descriptions.iter().zip(tracks) {
            match (
                &description.sample_entries.first().map(|entry| &entry.shape),
                track.kind(),
            ) {
                (Some(Shape::Video { width, height }), MediaKind::Video) => {
                    shape.video = Some(VideoShape {
                        width: *width,
                        height: *height,
                        frame_rate: (track.timescale, frame_duration.unwrap_or(1).max(1)),
                    });
                }
                (_, MediaKind::Audio) => {
                    match AudioShape::from_audio_specific_config(&track.configuration.bytes) {
                        Ok(audio) => shape.audio = Some(audio),
                        Err(problem) => unreadable = Err(problem),
                    }
                }
                _ => {}
            }
        }
        (shape, unreadable)
    }
}

impl StreamShape {
    /// The body of the `onMetaData` script tag (AMF0): the name, then an ECMA array of what
    /// readers use to set up their decoders before the first sample. `duration` is 0: a live
    /// stream has none.
    /// `configurations`: per kind (video, audio), the decoder configuration of the tags that
    /// follow, for `videocodecid`/`audiocodecid` (H.264 and AAC when not known) and, for Opus,
    /// the audio fields (from its `OpusHead`; the shape's audio is AAC's).
    pub(crate) fn on_metadata(&self, configurations: &[Option<Configuration>; 2]) -> Bytes {
        let [video_codec, audio_codec] = configurations
            .each_ref()
            .map(|configuration| configuration.as_ref().map(|known| known.codec));
        let mut fields: Vec<(&str, Amf)> = vec![("duration", Amf::Number(0.0))];
        if let Some(video) = &self.video {
            let (rate, duration) = video.frame_rate;
            fields.extend([
                ("width", Amf::Number(f64::from(video.width))),
                ("height", Amf::Number(f64::from(video.height))),
                (
                    "framerate",
                    Amf::Number(f64::from(rate) / f64::from(duration)),
                ),
                (
                    "videocodecid",
                    Amf::Number(video_codec.map_or(7.0, FlvCodec::codec_id)),
                ),
            ]);
        }
        if let (None, Some(opus)) = (&self.audio, opus_head(&configurations[1])) {
            // Opus decodes at 48 kHz whatever its input rate; its channel count is byte 9.
            let channels = opus.get(9).copied().unwrap_or(2);
            fields.extend([
                (
                    "audiocodecid",
                    Amf::Number(audio_codec.map_or(10.0, FlvCodec::codec_id)),
                ),
                ("audiosamplerate", Amf::Number(48_000.0)),
                ("audiosamplesize", Amf::Number(16.0)),
                ("stereo", Amf::Boolean(channels != 1)),
            ]);
        }
        if let Some(audio) = &self.audio {
            fields.extend([
                (
                    "audiocodecid",
                    Amf::Number(audio_codec.map_or(10.0, FlvCodec::codec_id)),
                ),
                (
                    "audiosamplerate",
                    Amf::Number(f64::from(audio.config.output_frequency())),
                ),
                ("audiosamplesize", Amf::Number(16.0)),
                (
                    "stereo",
                    Amf::Boolean(
                        audio.config.channels() != Some(1) || audio.config.parametric_stereo,
                    ),
                ),
            ]);
        }
        fields.push(("encoder", Amf::String("streampub")));
        let mut body = Vec::with_capacity(256);
        Amf::String("onMetaData").write(&mut body);
        body.push(0x08);
        body.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        for (name, value) in fields {
            body.extend_from_slice(&(name.len() as u16).to_be_bytes());
            body.extend_from_slice(name.as_bytes());
            value.write(&mut body);
        }
        body.extend_from_slice(&[0, 0, 0x09]);
        Bytes::from(body)
    }
}

/// The `OpusHead` of an Opus decoder configuration.
fn opus_head(configuration: &Option<Configuration>) -> Option<&[u8]> {
    configuration
        .as_ref()
        .filter(|known| known.codec == FlvCodec::EnhancedAudio(*b"Opus"))
        .map(|known| known.bytes.as_ref())
}

/// The AMF0 values `onMetaData` uses.
enum Amf {
    Number(f64),
    Boolean(bool),
    String(&'static str),
}

impl Amf {
    fn write(&self, output: &mut Vec<u8>) {
        match self {
            Self::Number(number) => {
                output.push(0x00);
                output.extend_from_slice(&number.to_be_bytes());
            }
            Self::Boolean(value) => output.extend_from_slice(&[0x01, u8::from(*value)]),
            Self::String(text) => {
                output.push(0x02);
                output.extend_from_slice(&(text.len() as u16).to_be_bytes());
                output.extend_from_slice(text.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AMF0 encoding of `name` followed by the first byte of its value.
    fn field(name: &str, value: &[u8]) -> Vec<u8> {
        let mut bytes = (name.len() as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    fn contains(body: &[u8], part: &[u8]) -> bool {
        body.windows(part.len()).any(|window| window == part)
    }

    #[test]
    fn an_opus_stream_s_metadata_has_its_audio_fields_from_its_opus_head() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        let opus = Configuration {
            codec: FlvCodec::EnhancedAudio(*b"Opus"),
            bytes: Bytes::from(head),
        };
        let shape = StreamShape {
            video: None,
            audio: None,
        };
        let body = shape.on_metadata(&[None, Some(opus)]);
        let opus_id = f64::from(u32::from_be_bytes(*b"Opus")).to_be_bytes();
        assert!(contains(
            &body,
            &field("audiocodecid", &[&[0][..], &opus_id].concat())
        ));
        let rate = 48_000f64.to_be_bytes();
        assert!(contains(
            &body,
            &field("audiosamplerate", &[&[0][..], &rate].concat())
        ));
        assert!(contains(&body, &field("stereo", &[1, 0])), "mono");
        assert!(!contains(&body, b"videocodecid"));
    }
}
