//! AAC in ADTS framing, as MPEG-TS carries it: counting the frames of a PES packet as its
//! bytes go by, to tell how long the packet lasts (ffmpeg puts several frames in one PES), and
//! splitting a whole PES payload into its frames.

use crate::formats::aac::AAC_SAMPLE_RATES;

/// Bytes of an ADTS header that say the frame's length and rate.
const HEADER_LEN: usize = 7;
/// Samples per AAC raw data block.
const SAMPLES_PER_BLOCK: u64 = 1024;

/// The ADTS frames of the PES packet being read.
#[derive(Debug, Clone, Default)]
pub struct AdtsFrames {
    /// Bytes left of the current frame after its header.
    skip: usize,
    header: Vec<u8>,
    samples: u64,
    sample_rate: Option<u32>,
    /// Something that is not ADTS was met: the duration is unknown.
    broken: bool,
}

impl AdtsFrames {
    /// A new PES packet begins.
    pub fn start(&mut self) {
        self.skip = 0;
        self.header.clear();
        self.samples = 0;
        self.broken = false;
    }

    /// Takes the next bytes of the PES packet's payload.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.broken {
            if self.skip > 0 {
                let used = self.skip.min(bytes.len());
                self.skip -= used;
                bytes = &bytes[used..];
                continue;
            }
            let used = (HEADER_LEN - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..used]);
            bytes = &bytes[used..];
            if self.header.len() < HEADER_LEN {
                continue;
            }
            let header = std::mem::take(&mut self.header);
            let rate = AAC_SAMPLE_RATES.get(usize::from(header[2] >> 2 & 0x0f));
            let length = (usize::from(header[3] & 0x03) << 11)
                | (usize::from(header[4]) << 3)
                | usize::from(header[5] >> 5);
            match rate {
                Some(rate)
                    if header[0] == 0xff && header[1] & 0xf0 == 0xf0 && length >= HEADER_LEN =>
                {
                    self.sample_rate = Some(*rate);
                    self.samples += SAMPLES_PER_BLOCK * (u64::from(header[6] & 0x03) + 1);
                    self.skip = length - HEADER_LEN;
                }
                _ => self.broken = true,
            }
        }
    }

    /// How long the frames seen last, in 90 kHz ticks; `None` unless they all read as ADTS.
    pub fn duration_ticks(&self) -> Option<u64> {
        let rate = self.sample_rate?;
        (!self.broken && self.samples > 0).then(|| self.samples * 90_000 / u64::from(rate))
    }
}

/// One ADTS frame of a PES payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsFrame<'a> {
    /// Its fixed header (the first 7 bytes), which says the AudioSpecificConfig.
    pub header: &'a [u8],
    /// The raw data block after the header (and its CRC, if it has one).
    pub raw: &'a [u8],
    pub sample_rate: u32,
}

/// The ADTS frames of a whole PES payload, or what is wrong with it.
pub fn split_frames(mut payload: &[u8]) -> Result<Vec<AdtsFrame<'_>>, String> {
    let mut frames = Vec::new();
    while !payload.is_empty() {
        let header = payload
            .get(..HEADER_LEN)
            .filter(|header| header[0] == 0xff && header[1] & 0xf6 == 0xf0)
            .ok_or_else(|| {
                format!(
                    "its AAC is not in ADTS frames (a frame begins with {:02x?})",
                    &payload[..payload.len().min(HEADER_LEN)]
                )
            })?;
        let sample_rate = *AAC_SAMPLE_RATES
            .get(usize::from(header[2] >> 2 & 0x0f))
            .ok_or("an ADTS header gives a reserved sampling frequency index")?;
        let length = (usize::from(header[3] & 0x03) << 11)
            | (usize::from(header[4]) << 3)
            | usize::from(header[5] >> 5);
        // Without `protection_absent`, a 16-bit CRC follows the header.
        let raw_start = if header[1] & 0x01 == 0 {
            HEADER_LEN + 2
        } else {
            HEADER_LEN
        };
        if length < raw_start || length > payload.len() {
            return Err(format!(
                "an ADTS frame says it is {length} bytes long, with {} left in its PES packet",
                payload.len()
            ));
        }
        if header[6] & 0x03 != 0 {
            return Err(
                "an ADTS frame holds several raw data blocks, which FLV cannot carry as one; \
                 encode with one block per frame (every encoder's default)"
                    .to_owned(),
            );
        }
        frames.push(AdtsFrame {
            header,
            raw: &payload[raw_start..length],
            sample_rate,
        });
        payload = &payload[length..];
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(length: usize) -> Vec<u8> {
        // 48 kHz (index 3), one raw data block.
        let mut frame = vec![0xff, 0xf1, 3 << 2, 0, 0, 0, 0];
        frame[3] = (length >> 11) as u8 & 0x03;
        frame[4] = (length >> 3) as u8;
        frame[5] = ((length & 0x07) << 5) as u8;
        frame.resize(length, 0xaa);
        frame
    }

    #[test]
    fn frames_are_counted_across_any_split() {
        let payload = [frame(100), frame(7), frame(300)].concat();
        for split in [1, 5, 64, 1000] {
            let mut frames = AdtsFrames::default();
            frames.start();
            for piece in payload.chunks(split) {
                frames.feed(piece);
            }
            // Three frames of 1024 samples at 48 kHz.
            assert_eq!(frames.duration_ticks(), Some(3 * 1024 * 90_000 / 48_000));
        }
        let mut garbage = AdtsFrames::default();
        garbage.feed(&[0u8; 20]);
        assert_eq!(garbage.duration_ticks(), None);
    }

    #[test]
    fn a_payload_splits_into_its_raw_frames() {
        let payload = [frame(100), frame(7), frame(30)].concat();
        let frames = split_frames(&payload).unwrap();
        let raw: Vec<usize> = frames.iter().map(|frame| frame.raw.len()).collect();
        assert_eq!(raw, [93, 0, 23]);
        assert!(frames.iter().all(|frame| frame.sample_rate == 48_000));
        assert!(split_frames(&payload[..120])
            .unwrap_err()
            .contains("30 bytes"));
        assert!(split_frames(&[0u8; 9]).unwrap_err().contains("not in ADTS"));
    }
}
