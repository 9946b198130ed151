//! What the stream is, as FLV carries it (size, frame rate, audio setup), and the
//! `onMetaData` script tag that tells readers so before the first sample.

use bytes::Bytes;
use h264_reader::avcc::AvcDecoderConfigurationRecord;

use super::tags::{FlvTrack, Kind};
use crate::mp4::sample_entry::Shape;
use crate::mp4::TrackDescription;

/// What the stream's tracks are, as FLV carries them: for its `onMetaData` and for a filler
/// that matches it.
#[derive(Debug, Clone)]
pub(crate) struct StreamShape {
    pub(crate) video: Option<VideoShape>,
    pub(crate) audio: Option<AudioShape>,
}

#[derive(Debug, Clone)]
pub(crate) struct VideoShape {
    pub(crate) width: u16,
    pub(crate) height: u16,
    /// Frames per second as a fraction: the track's timescale over a frame's duration.
    pub(crate) frame_rate: (u32, u32),
}

#[derive(Debug, Clone)]
pub(crate) struct AudioShape {
    pub(crate) sample_rate: u64,
    pub(crate) channels: u16,
    /// The AudioSpecificConfig: the filler's must be the same.
    pub(crate) configuration: Bytes,
}

impl StreamShape {
    /// The shape of a stream with `tracks` (described by `descriptions`) whose video frames
    /// last `frame_duration` ticks of the video track's timescale.
    pub(crate) fn of(
        descriptions: &[TrackDescription],
        tracks: &[FlvTrack],
        frame_duration: Option<u32>,
    ) -> Self {
        let mut shape = Self {
            video: None,
            audio: None,
        };
        for (description, track) in descriptions.iter().zip(tracks) {
            match (
                &description.sample_entries.first().map(|entry| &entry.shape),
                track.kind,
            ) {
                (Some(Shape::Video { width, height }), Kind::Video) => {
                    shape.video = Some(VideoShape {
                        width: *width,
                        height: *height,
                        frame_rate: (track.timescale, frame_duration.unwrap_or(1).max(1)),
                    });
                }
                (
                    Some(Shape::Audio {
                        sample_rate,
                        channels,
                        ..
                    }),
                    Kind::Audio,
                ) => {
                    shape.audio = Some(AudioShape {
                        sample_rate: *sample_rate,
                        channels: *channels,
                        configuration: track.configuration.clone(),
                    });
                }
                _ => {}
            }
        }
        shape
    }
}

impl StreamShape {
    /// The shape of an FLV stream from the bodies of its sequence headers (`avcC`, the
    /// AudioSpecificConfig) and its video frames' most common interval in milliseconds.
    /// H.264 and AAC only: the filler is made with those.
    pub(crate) fn of_flv(
        video: Option<&[u8]>,
        audio: Option<&[u8]>,
        frame_interval_ms: Option<u32>,
    ) -> Result<Self, String> {
        let video = video
            .map(|avcc| {
                let (width, height) = avc_dimensions(avcc)?;
                Ok::<_, String>(VideoShape {
                    width,
                    height,
                    frame_rate: (1000, frame_interval_ms.unwrap_or(40).max(1)),
                })
            })
            .transpose()?;
        let audio = audio
            .map(|configuration| {
                let (sample_rate, channels) = aac_rate_and_channels(configuration)?;
                Ok::<_, String>(AudioShape {
                    sample_rate,
                    channels,
                    configuration: Bytes::copy_from_slice(configuration),
                })
            })
            .transpose()?;
        Ok(Self { video, audio })
    }

    /// The body of the `onMetaData` script tag (AMF0): the name, then an ECMA array of what
    /// readers use to set up their decoders before the first sample. `duration` is 0: a live
    /// stream has none.
    pub(crate) fn on_metadata(&self) -> Bytes {
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
                ("videocodecid", Amf::Number(7.0)),
            ]);
        }
        if let Some(audio) = &self.audio {
            fields.extend([
                ("audiocodecid", Amf::Number(10.0)),
                ("audiosamplerate", Amf::Number(audio.sample_rate as f64)),
                ("audiosamplesize", Amf::Number(16.0)),
                ("stereo", Amf::Boolean(audio.channels == 2)),
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

/// The picture size an `avcC`'s first sequence parameter set gives (cropping applied).
fn avc_dimensions(avcc: &[u8]) -> Result<(u16, u16), String> {
    let unreadable = |error: &dyn std::fmt::Debug| format!("its avcC is unreadable ({error:?})");
    let record = AvcDecoderConfigurationRecord::try_from(avcc).map_err(|e| unreadable(&e))?;
    let context = record.create_context().map_err(|e| unreadable(&e))?;
    let sps = context
        .sps()
        .next()
        .ok_or("its avcC has no sequence parameter set")?;
    let (width, height) = sps.pixel_dimensions().map_err(|e| unreadable(&e))?;
    Ok((
        u16::try_from(width).map_err(|_| format!("its width {width} is too large"))?,
        u16::try_from(height).map_err(|_| format!("its height {height} is too large"))?,
    ))
}

/// The sample rate and channel count an AudioSpecificConfig gives (the core's, for HE-AAC).
fn aac_rate_and_channels(configuration: &[u8]) -> Result<(u64, u16), String> {
    const RATES: [u64; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let unreadable = || {
        format!(
            "its AudioSpecificConfig ({:02x?}) is unreadable",
            configuration
        )
    };
    let (_, frequency, channels) = aac_essentials(configuration).ok_or_else(unreadable)?;
    let sample_rate = match usize::try_from(frequency)
        .ok()
        .and_then(|index| RATES.get(index))
    {
        Some(rate) => *rate,
        None if frequency > 12 => u64::from(frequency),
        None => return Err(unreadable()),
    };
    // Channel configuration 7 is 7.1 (8 channels); 0 means "in the program config element".
    let channels = match channels {
        0 => return Err(unreadable()),
        7 => 8,
        other => other as u16,
    };
    Ok((sample_rate, channels))
}

/// What an AudioSpecificConfig says a decoder must be set up for: object type, sampling
/// frequency (index, or the explicit rate) and channel configuration; extensions aside.
pub(crate) fn aac_essentials(configuration: &[u8]) -> Option<(u32, u32, u32)> {
    let mut bits = configuration
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |bit| u32::from((byte >> bit) & 1)));
    let mut read = |count: u32| -> Option<u32> {
        (0..count).try_fold(0, |value, _| Some(value << 1 | bits.next()?))
    };
    let mut object_type = read(5)?;
    if object_type == 31 {
        object_type = 32 + read(6)?;
    }
    let mut frequency = read(4)?;
    if frequency == 15 {
        frequency = read(24)?;
    }
    Some((object_type, frequency, read(4)?))
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

    #[test]
    fn aac_configurations_compare_by_what_the_decoder_needs() {
        // AAC-LC, 48 kHz, stereo; ffmpeg's encoder adds a sync extension saying "no SBR".
        assert_eq!(aac_essentials(&[0x11, 0x90]), Some((2, 3, 2)));
        assert_eq!(
            aac_essentials(&[0x11, 0x90, 0x56, 0xe5, 0x00]),
            aac_essentials(&[0x11, 0x90])
        );
        // HE-AAC (object type 5), 22.05 kHz core.
        assert_eq!(aac_essentials(&[0x2b, 0x92, 0x08, 0x00]), Some((5, 7, 2)));
        assert_eq!(aac_essentials(&[0x11]), None);
    }

    #[test]
    fn an_flv_stream_s_shape_comes_from_its_sequence_headers() {
        // x264's avcC of a 320x180 picture (coded as 320x192, cropped) and AAC-LC 44.1 kHz
        // stereo.
        let avcc = hex::decode(
            "0164000cffe100186764000cacb202833f3e0220000003002000000641e2854901000668ebc3cb22c0fdf8f800",
        )
        .unwrap();
        let shape = StreamShape::of_flv(Some(&avcc), Some(&[0x12, 0x10]), Some(40)).unwrap();
        let video = shape.video.unwrap();
        assert_eq!(
            (video.width, video.height, video.frame_rate),
            (320, 180, (1000, 40))
        );
        let audio = shape.audio.unwrap();
        assert_eq!((audio.sample_rate, audio.channels), (44_100, 2));
        // Audio alone; 7.1 is eight channels.
        let shape = StreamShape::of_flv(None, Some(&[0x11, 0xb8]), None).unwrap();
        assert!(shape.video.is_none());
        assert_eq!(shape.audio.unwrap().channels, 8);
        assert!(StreamShape::of_flv(Some(b"not an avcC"), None, Some(40))
            .unwrap_err()
            .contains("avcC"));
        assert!(StreamShape::of_flv(None, Some(&[0x10]), None)
            .unwrap_err()
            .contains("AudioSpecificConfig"));
    }
}
