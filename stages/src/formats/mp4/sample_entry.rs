//! What a decoder needs from a track's sample description (`stsd`), and nothing else.
//!
//! Two files continue one stream when their decoders would be set up the same way: same codec,
//! same decoder configuration (`avcC`, `hvcC`, `av1C`, `vpcC`, `dOps`, the AudioSpecificConfig
//! in `esds`, …), same picture size, sample rate and channel count. Muxers also write what a
//! decoder ignores and what differs from file to file for the same stream: bitrates (`btrt`,
//! and the average and maximum bitrate in `esds`, which GStreamer's `mp4mux` and ffmpeg set per
//! file), the compressor name, pixel aspect and colour boxes; those never make a new stream.

use std::fmt;

use super::boxes::{children, BoxError, FourCc, Reader};

/// Boxes inside a sample entry that configure the decoder. Any other box is ignored.
const DECODER_CONFIGURATIONS: &[&[u8; 4]] = &[
    b"avcC", b"hvcC", b"av1C", b"vpcC", b"dOps", b"dac3", b"dec3", b"dfLa", b"esds", b"alac",
];

/// One sample entry of a track, reduced to what its decoder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleEntry {
    /// The codec: `avc1`, `hvc1`, `mp4a`, `Opus`, …
    pub format: FourCc,
    pub shape: Shape,
    /// The decoder configuration boxes, in order; `esds` reduced to its object type, stream
    /// type and decoder-specific information (without the bitrates).
    pub configurations: Vec<(FourCc, Vec<u8>)>,
}

/// What the fixed part of a sample entry says that a decoder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Video {
        width: u16,
        height: u16,
    },
    Audio {
        channels: u16,
        sample_size: u16,
        /// In Hz (16.16 fixed point in the entry; QuickTime version 2 entries hold a float).
        sample_rate: u64,
    },
    /// Another kind of track: its whole entry counts.
    Other(Vec<u8>),
}

/// The sample entries of an `stsd` payload of a track with `handler` (`vide`, `soun`, …).
pub fn sample_entries(stsd: &[u8], handler: FourCc) -> Result<Vec<SampleEntry>, BoxError> {
    let mut reader = Reader::new(stsd, "stsd");
    reader.version_flags()?;
    let count = reader.u32()?;
    let mut entries = Vec::new();
    for entry in children(reader.rest()) {
        let (format, body) = entry?;
        entries.push(sample_entry(format, body, handler)?);
    }
    if entries.len() != count as usize {
        return Err(BoxError::new(format!(
            "stsd says {count} sample entries but holds {}",
            entries.len()
        )));
    }
    Ok(entries)
}

fn sample_entry(format: FourCc, body: &[u8], handler: FourCc) -> Result<SampleEntry, BoxError> {
    let mut reader = Reader::new(body, "sample entry");
    // Reserved, then the data reference index.
    reader.skip(8)?;
    let shape = match &handler.0 {
        b"vide" => {
            reader.skip(16)?;
            let (width, height) = (reader.u16()?, reader.u16()?);
            // Resolutions, reserved, frame count, compressor name, depth, pre-defined.
            reader.skip(4 + 4 + 4 + 2 + 32 + 2 + 2)?;
            Shape::Video { width, height }
        }
        b"soun" => {
            let version = reader.u16()?;
            reader.skip(6)?;
            let channels = reader.u16()?;
            let sample_size = reader.u16()?;
            reader.skip(4)?;
            let mut sample_rate = u64::from(reader.u32()? >> 16);
            match version {
                0 => {}
                1 => reader.skip(16)?,
                2 => {
                    reader.skip(4)?;
                    sample_rate = f64::from_bits(reader.u64()?) as u64;
                    reader.skip(4 + 4 + 4 + 4 + 4 + 4)?;
                }
                other => {
                    return Err(BoxError::new(format!(
                        "sound sample entry {format} has unknown version {other}"
                    )))
                }
            }
            Shape::Audio {
                channels,
                sample_size,
                sample_rate,
            }
        }
        _ => {
            return Ok(SampleEntry {
                format,
                shape: Shape::Other(body.to_vec()),
                configurations: Vec::new(),
            })
        }
    };
    let mut configurations = Vec::new();
    for child in children(reader.rest()) {
        let (kind, payload) = child?;
        if !DECODER_CONFIGURATIONS.contains(&&kind.0) {
            continue;
        }
        let configuration = if &kind.0 == b"esds" {
            esds_decoder_setup(payload)?
        } else {
            payload.to_vec()
        };
        configurations.push((kind, configuration));
    }
    Ok(SampleEntry {
        format,
        shape,
        configurations,
    })
}

/// From an `esds` payload: the object type, the stream type and the decoder-specific
/// information (the AudioSpecificConfig of AAC), leaving out buffer size and bitrates.
fn esds_decoder_setup(esds: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut reader = Reader::new(esds, "esds");
    reader.version_flags()?;
    let mut es = descriptor(&mut reader, 0x03)?;
    es.skip(2)?;
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.skip(2)?;
    }
    if flags & 0x40 != 0 {
        let length = es.u8()?;
        es.skip(usize::from(length))?;
    }
    if flags & 0x20 != 0 {
        es.skip(2)?;
    }
    let mut config = descriptor(&mut es, 0x04)?;
    let object_type = config.u8()?;
    let stream_type = config.u8()?;
    // Buffer size, maximum and average bitrate.
    config.skip(3 + 4 + 4)?;
    let mut setup = vec![object_type, stream_type];
    if let Ok(mut specific) = descriptor(&mut config, 0x05) {
        setup.extend_from_slice(specific.rest());
    }
    Ok(setup)
}

/// Reads an MPEG-4 descriptor with `tag` (its size in 7-bit groups) and returns a reader over
/// its body.
fn descriptor<'a>(reader: &mut Reader<'a>, tag: u8) -> Result<Reader<'a>, BoxError> {
    let found = reader.u8()?;
    if found != tag {
        return Err(BoxError::new(format!(
            "esds has descriptor tag {found:#04x} where {tag:#04x} belongs"
        )));
    }
    let mut size = 0usize;
    for _ in 0..4 {
        let byte = reader.u8()?;
        size = (size << 7) | usize::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            break;
        }
    }
    Ok(Reader::new(reader.take(size)?, "esds descriptor"))
}

impl fmt::Display for SampleEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shape {
            Shape::Video { width, height } => write!(f, "{} {width}x{height}", self.format),
            Shape::Audio {
                channels,
                sample_rate,
                ..
            } => write!(f, "{} {sample_rate} Hz {channels} ch", self.format),
            Shape::Other(_) => write!(f, "{}", self.format),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::mp4::boxes::write_box;

    fn stsd(entry_kind: &[u8; 4], entry: &[u8]) -> Vec<u8> {
        let mut payload = vec![0, 0, 0, 0, 0, 0, 0, 1];
        write_box(&mut payload, entry_kind, entry);
        payload
    }

    fn avc1(width: u16, compressor: u8, bitrate: u32) -> Vec<u8> {
        let mut entry = vec![0; 8 + 16];
        entry.extend_from_slice(&width.to_be_bytes());
        entry.extend_from_slice(&360u16.to_be_bytes());
        entry.extend_from_slice(&[0; 14]);
        entry.extend_from_slice(&[compressor; 32]);
        entry.extend_from_slice(&[0, 24, 0xff, 0xff]);
        write_box(&mut entry, b"avcC", b"sps-pps");
        write_box(
            &mut entry,
            b"btrt",
            &[
                bitrate.to_be_bytes(),
                bitrate.to_be_bytes(),
                bitrate.to_be_bytes(),
            ]
            .concat(),
        );
        write_box(&mut entry, b"pasp", &[0, 0, 0, 1, 0, 0, 0, 1]);
        entry
    }

    fn mp4a(sample_rate: u16, bitrate: u32) -> Vec<u8> {
        let mut entry = vec![0; 8 + 8];
        entry.extend_from_slice(&[0, 2, 0, 16, 0, 0, 0, 0]);
        entry.extend_from_slice(&sample_rate.to_be_bytes());
        entry.extend_from_slice(&[0, 0]);
        let config = [&[0x05, 2][..], &[0x11, 0x90]].concat();
        let decoder = [
            &[0x04, 13 + config.len() as u8, 0x40, 0x15, 0, 0, 0][..],
            &bitrate.to_be_bytes(),
            &bitrate.to_be_bytes(),
            &config,
        ]
        .concat();
        let es = [&[0x03, 3 + decoder.len() as u8, 0, 1, 0][..], &decoder].concat();
        write_box(&mut entry, b"esds", &[&[0, 0, 0, 0][..], &es].concat());
        entry
    }

    #[test]
    fn bitrates_compressor_and_aspect_boxes_are_not_the_stream() {
        let video = |width, compressor, bitrate| {
            sample_entries(
                &stsd(b"avc1", &avc1(width, compressor, bitrate)),
                FourCc(*b"vide"),
            )
            .unwrap()
        };
        assert_eq!(video(640, b'a', 500_000), video(640, b'b', 900_000));
        assert_ne!(video(640, b'a', 500_000), video(1280, b'a', 500_000));
        assert_eq!(
            video(1280, b'a', 1).last().unwrap().to_string(),
            "avc1 1280x360"
        );

        let audio = |rate, bitrate| {
            sample_entries(&stsd(b"mp4a", &mp4a(rate, bitrate)), FourCc(*b"soun")).unwrap()
        };
        assert_eq!(audio(48000, 128_000), audio(48000, 96_000));
        assert_ne!(audio(48000, 128_000), audio(44100, 128_000));
        assert_eq!(audio(48000, 1)[0].to_string(), "mp4a 48000 Hz 2 ch");
        // The AudioSpecificConfig is kept.
        assert_eq!(
            audio(48000, 1)[0].configurations[0].1,
            [0x40, 0x15, 0x11, 0x90]
        );
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        let entry = avc1(640, b'a', 1);
        for length in 0..entry.len() {
            let _ = sample_entries(&stsd(b"avc1", &entry[..length]), FourCc(*b"vide"));
        }
        let entry = mp4a(48000, 1);
        for length in 0..entry.len() {
            let _ = sample_entries(&stsd(b"mp4a", &entry[..length]), FourCc(*b"soun"));
        }
    }
}
