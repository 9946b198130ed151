//! What a stream is, as far as a decoder and a filler that must match it care: picture size
//! and frame rate, audio sample rate, channels and AAC configuration; read from the codecs'
//! own configuration records (an `avcC` or an H.264 sequence parameter set, an
//! AudioSpecificConfig or an ADTS header), whatever the container.

use bytes::Bytes;
use h264_reader::avcc::AvcDecoderConfigurationRecord;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::Nal;
use h264_reader::nal::RefNal;

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
    pub(crate) sample_rate: u64,
    pub(crate) channels: u16,
    /// The AudioSpecificConfig: the filler's must be the same.
    pub(crate) configuration: Bytes,
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
    /// The shape an AudioSpecificConfig gives (the core's rate, for HE-AAC).
    pub(crate) fn from_audio_specific_config(configuration: &[u8]) -> Result<Self, String> {
        let (sample_rate, channels) = aac_rate_and_channels(configuration)?;
        Ok(Self {
            sample_rate,
            channels,
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

/// AAC's sample rates by sampling frequency index (AudioSpecificConfig and ADTS alike).
pub(crate) const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// The sample rate and channel count an AudioSpecificConfig gives (the core's, for HE-AAC).
fn aac_rate_and_channels(configuration: &[u8]) -> Result<(u64, u16), String> {
    let unreadable = || {
        format!(
            "its AudioSpecificConfig ({:02x?}) is unreadable",
            configuration
        )
    };
    let (_, frequency, channels) = aac_essentials(configuration).ok_or_else(unreadable)?;
    let sample_rate = match usize::try_from(frequency)
        .ok()
        .and_then(|index| AAC_SAMPLE_RATES.get(index))
    {
        Some(rate) => u64::from(*rate),
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
        assert_eq!((audio.sample_rate, audio.channels), (44_100, 2));
        // 7.1 is eight channels.
        let audio = AudioShape::from_audio_specific_config(&[0x11, 0xb8]).unwrap();
        assert_eq!(audio.channels, 8);
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
        assert!(AudioShape::from_adts_header(&[0; 7])
            .unwrap_err()
            .contains("not an ADTS header"));
    }
}
