//! AAC's AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1), read as far as setting up a decoder
//! goes: the object type (with HE-AAC's SBR and PS, signalled explicitly or by the
//! backward-compatible sync extension), the sampling frequency (an index or an explicit rate),
//! the channel configuration and the frame length. Two configurations that agree on what
//! [`AudioSpecificConfig::decoder_setup`] returns decode each other's frames.

use std::fmt;

/// AAC's sample rates by sampling frequency index (AudioSpecificConfig and ADTS alike).
pub(crate) const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Audio object types.
const AAC_LC: u8 = 2;
const SBR: u8 = 5;
const PS: u8 = 29;
const ER_BSAC: u8 = 22;

/// The sync extension that signals SBR, and the one that signals PS after it.
const SBR_SYNC_EXTENSION: u32 = 0x2b7;
const PS_SYNC_EXTENSION: u32 = 0x548;

/// What an AudioSpecificConfig says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AudioSpecificConfig {
    /// The object type of the core coder: for HE-AAC, the one under SBR (normally AAC-LC).
    pub(crate) core_object_type: u8,
    /// The core coder's sampling frequency in Hz (for HE-AAC, half the output's).
    pub(crate) sampling_frequency: u32,
    /// The channel configuration: 1-7 name a layout, 0 leaves it to a program config element.
    pub(crate) channel_configuration: u8,
    /// Samples per frame: 1024, or 960 with `frameLengthFlag`.
    pub(crate) frame_length: u16,
    /// SBR's output sampling frequency when SBR is signalled (HE-AAC).
    pub(crate) sbr_frequency: Option<u32>,
    /// Whether PS is signalled (HE-AAC v2).
    pub(crate) parametric_stereo: bool,
}

/// What a decoder is set up for: a frame made for one setup decodes under a configuration with
/// the same setup. SBR and PS are not part of it: their data rides in extension elements that
/// decoders do without (a plain AAC-LC frame plays under an HE-AAC configuration, its upper band
/// silent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecoderSetup {
    pub(crate) core_object_type: u8,
    /// The sampling frequency whose tables the decoder uses (an explicit rate maps to the nearest
    /// standard one, ISO/IEC 14496-3 table 4.82).
    pub(crate) table_frequency: u32,
    pub(crate) channel_configuration: u8,
    pub(crate) frame_length: u16,
}

impl AudioSpecificConfig {
    /// Reads an AudioSpecificConfig; says what is wrong when it cannot.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        Self::read(&mut BitReader::new(bytes)).ok_or_else(|| {
            format!(
                "AudioSpecificConfig {bytes:02x?} is unreadable (cut short, or a reserved \
                 sampling frequency index)"
            )
        })
    }

    fn read(bits: &mut BitReader<'_>) -> Option<Self> {
        let mut object_type = read_object_type(bits)?;
        let sampling_frequency = read_sampling_frequency(bits)?;
        let channel_configuration = bits.read(4)? as u8;
        let mut sbr_frequency = None;
        let mut parametric_stereo = false;
        // Explicit hierarchical signalling: SBR (or PS) first, then the core's object type.
        if object_type == SBR || object_type == PS {
            parametric_stereo = object_type == PS;
            sbr_frequency = Some(read_sampling_frequency(bits)?);
            object_type = read_object_type(bits)?;
            if object_type == ER_BSAC {
                bits.read(4)?;
            }
        }
        let mut config = Self {
            core_object_type: object_type,
            sampling_frequency,
            channel_configuration,
            frame_length: 1024,
            sbr_frequency,
            parametric_stereo,
        };
        if !is_general_audio(object_type) {
            return Some(config);
        }
        if bits.read(1)? == 1 {
            config.frame_length = 960;
        }
        // A program config element is not read, so nothing after it can be either.
        if channel_configuration == 0 {
            return Some(config);
        }
        // dependsOnCoreCoder (with its delay), extensionFlag and what it adds.
        if bits.read(1)? == 1 {
            bits.read(14)?;
        }
        let extension = bits.read(1)?;
        if matches!(object_type, 6 | 20) {
            bits.read(3)?;
        }
        if extension == 1 {
            match object_type {
                ER_BSAC => {
                    bits.read(16)?;
                }
                17 | 19 | 20 | 23 => {
                    bits.read(3)?;
                }
                _ => {}
            }
            bits.read(1)?;
        }
        if config.sbr_frequency.is_none() {
            config.read_sync_extension(bits);
        }
        Some(config)
    }

    /// The backward-compatible signalling of SBR and PS after the core's config (ffmpeg's AAC
    /// encoder writes one that says "no SBR"); what is missing or unknown is ignored.
    fn read_sync_extension(&mut self, bits: &mut BitReader<'_>) {
        let mut read = || -> Option<()> {
            if bits.read(11)? != SBR_SYNC_EXTENSION || read_object_type(bits)? != SBR {
                return None;
            }
            if bits.read(1)? == 1 {
                self.sbr_frequency = Some(read_sampling_frequency(bits)?);
                if bits.read(11)? == PS_SYNC_EXTENSION && bits.read(1)? == 1 {
                    self.parametric_stereo = true;
                }
            }
            Some(())
        };
        read();
    }

    /// What a decoder of this configuration is set up for.
    pub(crate) fn decoder_setup(&self) -> DecoderSetup {
        DecoderSetup {
            core_object_type: self.core_object_type,
            table_frequency: table_frequency(self.sampling_frequency),
            channel_configuration: self.channel_configuration,
            frame_length: self.frame_length,
        }
    }

    /// How many channels the channel configuration names (`None` for 0 and the reserved ones).
    pub(crate) fn channels(&self) -> Option<u16> {
        match self.channel_configuration {
            1..=6 => Some(u16::from(self.channel_configuration)),
            7 => Some(8),
            _ => None,
        }
    }

    /// The decoder's output rate: SBR's when signalled, else the core's.
    pub(crate) fn output_frequency(&self) -> u32 {
        self.sbr_frequency.unwrap_or(self.sampling_frequency)
    }

    /// Why an AAC-LC encoder's frames cannot play under this configuration, if they cannot: the
    /// field that stands in the way and what to do.
    pub(crate) fn lc_frames_cannot_play(&self) -> Option<String> {
        // ffmpeg's AAC encoder makes AAC-LC only, and a decoder set up for Main or LTP is not
        // one set up for LC.
        if self.core_object_type != AAC_LC {
            return Some(format!(
                "the stream's AAC is audio object type {} ({}), whose decoder setup the \
                 filler's AAC-LC does not match; encode AAC-LC or HE-AAC (v1, v2) upstream",
                self.core_object_type,
                object_type_name(self.core_object_type)
            ));
        }
        if self.frame_length != 1024 {
            return Some(format!(
                "the stream's AAC frames hold {} samples (frameLengthFlag 1) and encoders for \
                 the filler make 1024; encode 1024-sample frames upstream",
                self.frame_length
            ));
        }
        if self.channels().is_none() {
            return Some(format!(
                "the stream's AAC has channel configuration {} ({}); the filler is made for \
                 configurations 1-7 (mono to 7.1); encode one of those layouts upstream",
                self.channel_configuration,
                if self.channel_configuration == 0 {
                    "channels described by a program config element"
                } else {
                    "a layout ffmpeg's AAC encoder does not make"
                }
            ));
        }
        None
    }
}

impl fmt::Display for DecoderSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "object type {} ({}), {} Hz tables, channel configuration {}, {}-sample frames",
            self.core_object_type,
            object_type_name(self.core_object_type),
            self.table_frequency,
            self.channel_configuration,
            self.frame_length
        )
    }
}

/// The standard rate whose tables a decoder uses for `frequency` (ISO/IEC 14496-3 table 4.82).
pub(crate) fn table_frequency(frequency: u32) -> u32 {
    const LOWER_BOUNDS: [u32; 11] = [
        92_017, 75_132, 55_426, 46_009, 37_566, 27_713, 23_004, 18_783, 13_856, 11_502, 9_391,
    ];
    LOWER_BOUNDS
        .iter()
        .position(|bound| frequency >= *bound)
        .map_or(8_000, |index| AAC_SAMPLE_RATES[index])
}

fn is_general_audio(object_type: u8) -> bool {
    matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23)
}

fn object_type_name(object_type: u8) -> &'static str {
    match object_type {
        1 => "AAC Main",
        AAC_LC => "AAC-LC",
        3 => "AAC SSR",
        4 => "AAC LTP",
        SBR => "SBR",
        6 => "AAC Scalable",
        17 => "ER AAC-LC",
        19 => "ER AAC LTP",
        20 => "ER AAC Scalable",
        ER_BSAC => "ER BSAC",
        23 => "ER AAC LD",
        PS => "PS",
        39 => "ER AAC ELD",
        42 => "USAC (xHE-AAC)",
        _ => "not AAC",
    }
}

fn read_object_type(bits: &mut BitReader<'_>) -> Option<u8> {
    match bits.read(5)? {
        31 => Some(32 + bits.read(6)? as u8),
        other => Some(other as u8),
    }
}

fn read_sampling_frequency(bits: &mut BitReader<'_>) -> Option<u32> {
    match bits.read(4)? {
        15 => bits.read(24),
        index => AAC_SAMPLE_RATES.get(index as usize).copied(),
    }
}

/// Reads big-endian bit fields. Hand-written: the few fields of a config record do not warrant
/// a bit-reader crate.
struct BitReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// The next `count` bits (at most 32), or `None` past the end.
    fn read(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self.bytes.get(self.position / 8)?;
            value = value << 1 | u32::from(byte >> (7 - self.position % 8) & 1);
            self.position += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(hex: &str) -> AudioSpecificConfig {
        AudioSpecificConfig::parse(&hex::decode(hex).unwrap()).unwrap()
    }

    #[test]
    fn every_channel_configuration_ffmpeg_writes() {
        // ffmpeg's AAC encoder at 48 kHz: mono, stereo, 3.0, 4.0, 5.0, 5.1, 7.1.
        for (hex, configuration, channels) in [
            ("118856e500", 1, 1),
            ("119056e500", 2, 2),
            ("119856e500", 3, 3),
            ("11a056e500", 4, 4),
            ("11a856e500", 5, 5),
            ("11b056e500", 6, 6),
            ("11b856e500", 7, 8),
        ] {
            let config = parse(hex);
            assert_eq!(config.channel_configuration, configuration, "{hex}");
            assert_eq!(config.channels(), Some(channels), "{hex}");
            assert_eq!(config.sampling_frequency, 48_000);
            assert_eq!(config.sbr_frequency, None, "the sync extension says no SBR");
            assert!(config.lc_frames_cannot_play().is_none());
        }
        // 6.1: a program config element (channel configuration 0).
        let pce = parse("118004c848002000c4400d4c61766335392e33372e31303056e500");
        assert_eq!(pce.channels(), None);
        assert!(pce
            .lc_frames_cannot_play()
            .unwrap()
            .contains("channel configuration 0"));
    }

    #[test]
    fn every_sampling_frequency_index_and_explicit_rates() {
        for (index, rate) in AAC_SAMPLE_RATES.iter().enumerate() {
            let bytes = [
                (AAC_LC << 3) | (index as u8 >> 1),
                ((index as u8 & 1) << 7) | 2 << 3,
            ];
            let config = AudioSpecificConfig::parse(&bytes).unwrap();
            assert_eq!(config.sampling_frequency, *rate);
            // 7,350 Hz uses 8,000 Hz's tables.
            assert_eq!(config.decoder_setup().table_frequency, (*rate).max(8_000));
        }
        // Index 15: 48,000 Hz written out is the same setup as index 3.
        let explicit = AudioSpecificConfig::parse(&[0x17, 0x80, 0x5d, 0xc0, 0x10]).unwrap();
        assert_eq!(explicit.sampling_frequency, 48_000);
        assert_eq!(explicit.decoder_setup(), parse("1190").decoder_setup());
        // A rate off the table uses the nearest one's tables.
        assert_eq!(table_frequency(44_000), 44_100);
        assert_eq!(table_frequency(46_009), 48_000);
        assert_eq!(table_frequency(5_000), 8_000);
    }

    #[test]
    fn he_aac_explicit_and_backward_compatible_signalling() {
        // HE-AAC v1, explicit: SBR at 44.1 kHz over AAC-LC at 22.05 kHz, stereo.
        let v1 = parse("2b920800");
        assert_eq!(
            (v1.core_object_type, v1.sampling_frequency, v1.sbr_frequency),
            (AAC_LC, 22_050, Some(44_100))
        );
        // HE-AAC v2, explicit: PS, mono core.
        let v2 = parse("eb8a0800");
        assert!(v2.parametric_stereo);
        assert_eq!((v2.core_object_type, v2.channel_configuration), (AAC_LC, 1));
        // Backward compatible: AAC-LC 24 kHz stereo, then sync extension 0x2b7, SBR 48 kHz.
        let compatible = parse("131056e598");
        assert_eq!(compatible.sbr_frequency, Some(48_000));
        assert_eq!(compatible.output_frequency(), 48_000);
        // All of them take AAC-LC frames of the core's setup.
        assert_eq!(v1.decoder_setup(), parse("1390").decoder_setup());
        assert!(v1.lc_frames_cannot_play().is_none());
    }

    #[test]
    fn what_cannot_take_aac_lc_frames_is_named() {
        // AAC Main: ffmpeg's encoder makes LC only.
        assert!(parse("0990")
            .lc_frames_cannot_play()
            .unwrap()
            .contains("object type 1 (AAC Main)"));
        // ER AAC LD (23), 48 kHz, mono.
        let low_delay = parse("b98c00");
        assert!(low_delay
            .lc_frames_cannot_play()
            .unwrap()
            .contains("object type 23 (ER AAC LD)"));
        // 960-sample frames.
        assert!(parse("1194")
            .lc_frames_cannot_play()
            .unwrap()
            .contains("frameLengthFlag"));
        assert!(AudioSpecificConfig::parse(&[0x11]).is_err());
    }
}
