//! What a stream is, as far as a decoder and a filler that must match it care: picture size
//! and frame rate, and the AAC configuration (its rate and channels); read from the codecs'
//! own configuration records (an `avcC` or an H.264 sequence parameter set, an
//! AudioSpecificConfig or an ADTS header), whatever the container.

use bytes::Bytes;
use h264_reader::avcc::AvcDecoderConfigurationRecord;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::Nal;
use h264_reader::nal::RefNal;

use crate::formats::aac::AudioSpecificConfig;

/// What the stream's tracks are: for FLV's `onMetaData` and for a filler that matches it.
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
    /// The AudioSpecificConfig as the stream carries it: the filler's audio goes on with it.
    pub(crate) configuration: Bytes,
    /// What it says.
    pub(crate) config: AudioSpecificConfig,
}

impl VideoShape {
    /// The shape an `avcC` gives (its first sequence parameter set), at `frame_rate`.
    pub(crate) fn from_avcc(avcc: &[u8], frame_rate: (u32, u32)) -> Result<Self, String> {
        let unreadable =
            |error: &dyn std::fmt::Debug| format!("its avcC is unreadable ({error:?})");
        let record = AvcDecoderConfigurationRecord::try_from(avcc).map_err(|e| unreadable(&e))?;
        let context = record.create_context().map_err(|e| unreadable(&e))?;
        let sps = context
            .sps()
            .next()
            .ok_or("its avcC has no sequence parameter set")?;
        Self::of_sps(sps, frame_rate)
    }

    /// The shape an H.264 sequence parameter set NAL unit (its header byte first) gives.
    pub(crate) fn from_sps_unit(unit: &[u8], frame_rate: (u32, u32)) -> Result<Self, String> {
        let sps = SeqParameterSet::from_bits(RefNal::new(unit, &[], true).rbsp_bits())
            .map_err(|error| format!("its sequence parameter set is unreadable ({error:?})"))?;
        Self::of_sps(&sps, frame_rate)
    }

    fn of_sps(sps: &SeqParameterSet, frame_rate: (u32, u32)) -> Result<Self, String> {
        let (width, height) = sps
            .pixel_dimensions()
            .map_err(|error| format!("its picture size is unreadable ({error:?})"))?;
        Ok(Self {
            width: u16::try_from(width).map_err(|_| format!("its width {width} is too large"))?,
            height: u16::try_from(height)
                .map_err(|_| format!("its height {height} is too large"))?,
            frame_rate: (frame_rate.0.max(1), frame_rate.1.max(1)),
        })
    }
}

impl AudioShape {
    /// The shape an AudioSpecificConfig gives.
    pub(crate) fn from_audio_specific_config(configuration: &[u8]) -> Result<Self, String> {
        Ok(Self {
            config: AudioSpecificConfig::parse(configuration)?,
            configuration: Bytes::copy_from_slice(configuration),
        })
    }

    /// The shape an ADTS header gives, with the AudioSpecificConfig it stands for.
    pub(crate) fn from_adts_header(header: &[u8]) -> Result<Self, String> {
        if header.len() < 7 || header[0] != 0xff || header[1] & 0xf0 != 0xf0 {
            return Err(format!(
                "{:02x?} is not an ADTS header",
                &header[..header.len().min(7)]
            ));
        }
        let object_type = (header[2] >> 6) + 1;
        let frequency = (header[2] >> 2) & 0x0f;
        let channels = ((header[2] & 0x01) << 2) | (header[3] >> 6);
        let configuration = [
            (object_type << 3) | (frequency >> 1),
            ((frequency & 0x01) << 7) | (channels << 3),
        ];
        Self::from_audio_specific_config(&configuration)
    }
}

/// The most common of `values`: a stream's frame duration, of all its frames' (the first may be
/// longer, by the audio's priming).
pub(crate) fn most_common<T: Ord + Copy>(values: &mut [T]) -> Option<T> {
    values.sort_unstable();
    values
        .chunk_by(|a, b| a == b)
        .max_by_key(|run| run.len())
        .map(|run| run[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_come_from_the_codecs_configuration_records() {
        // x264's avcC of a 320x180 picture (coded as 320x192, cropped) and AAC-LC 44.1 kHz
        // stereo.
        let avcc = hex::decode(
            "0164000cffe100186764000cacb202833f3e0220000003002000000641e2854901000668ebc3cb22c0fdf8f800",
        )
        .unwrap();
        let video = VideoShape::from_avcc(&avcc, (1000, 40)).unwrap();
        assert_eq!(
            (video.width, video.height, video.frame_rate),
            (320, 180, (1000, 40))
        );
        // The same parameter set as a NAL unit (as MPEG-TS carries it).
        let video = VideoShape::from_sps_unit(&avcc[8..8 + 0x18], (90_000, 3600)).unwrap();
        assert_eq!((video.width, video.height), (320, 180));
        let audio = AudioShape::from_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!(
            (audio.config.sampling_frequency, audio.config.channels()),
            (44_100, Some(2))
        );
        // An ADTS header of AAC-LC (profile 1), 44.1 kHz (index 4), stereo.
        let adts = [0xff, 0xf1, 0x50, 0x80, 0, 0x1f, 0xfc];
        let audio = AudioShape::from_adts_header(&adts).unwrap();
        assert_eq!(audio.configuration.as_ref(), &[0x12, 0x10]);
        assert!(VideoShape::from_avcc(b"not an avcC", (1000, 40))
            .unwrap_err()
            .contains("avcC"));
        assert!(AudioShape::from_audio_specific_config(&[0x10])
            .unwrap_err()
            .contains("AudioSpecificConfig"));
        // ADTS says mono.
        let mono = AudioShape::from_adts_header(&[0xff, 0xf1, 0x4c, 0x40, 0, 0x1f, 0xfc]).unwrap();
        assert_eq!(mono.config.channels(), Some(1));
        assert!(AudioShape::from_adts_header(&[0; 7])
            .unwrap_err()
            .contains("not an ADTS header"));
    }
}
