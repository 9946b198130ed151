//! H.264 as MPEG-TS carries it (Annex B: NAL units after start codes) and as FLV and MP4 carry
//! it (AVCC: each unit after its 4-byte length, the parameter sets in an
//! AVCDecoderConfigurationRecord). Hand-written: a PES packet is whole in memory, so splitting
//! it at its start codes is a short loop, and `h264-reader` reads `avcC` records but does not
//! write them.

/// NAL unit types that matter here.
pub(crate) const IDR_SLICE: u8 = 5;
pub(crate) const SEQUENCE_PARAMETER_SET: u8 = 7;
pub(crate) const PICTURE_PARAMETER_SET: u8 = 8;
pub(crate) const ACCESS_UNIT_DELIMITER: u8 = 9;
const FILLER_DATA: u8 = 12;

/// A NAL unit's type, from its header byte.
pub(crate) fn unit_type(unit: &[u8]) -> u8 {
    unit.first().map_or(0, |header| header & 0x1f)
}

/// The NAL units of Annex B bytes, in order: what lies between start codes (`00 00 01`, or
/// `00 00 00 01`), trailing zero bytes left out.
pub(crate) fn annex_b_units(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = next_start_code(bytes, 0).map(|(_, end)| end);
    std::iter::from_fn(move || loop {
        let start = at?;
        let (end, next) = match next_start_code(bytes, start) {
            Some((code, after)) => (code, Some(after)),
            None => (bytes.len(), None),
        };
        at = next;
        let mut unit = &bytes[start..end];
        while let [rest @ .., 0] = unit {
            unit = rest;
        }
        if !unit.is_empty() {
            return Some(unit);
        }
    })
}

/// The next `00 00 01` at or after `from`: where it begins and where what follows it begins.
fn next_start_code(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let found = bytes.get(from..)?.windows(3).position(|w| w == [0, 0, 1])?;
    Some((from + found, from + found + 3))
}

/// One access unit read from Annex B: its units as FLV carries them, and what it says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AccessUnit {
    /// The units after their 4-byte lengths; parameter sets, delimiters and filler left out
    /// (the sequence header carries the parameter sets).
    pub(crate) avcc: Vec<u8>,
    /// Whether it holds an IDR slice.
    pub(crate) idr: bool,
    /// The parameter sets it carries, if any, in order.
    pub(crate) sequence_parameter_sets: Vec<Vec<u8>>,
    pub(crate) picture_parameter_sets: Vec<Vec<u8>>,
}

impl AccessUnit {
    pub(crate) fn from_annex_b(bytes: &[u8]) -> Self {
        let mut unit_of = Self {
            avcc: Vec::with_capacity(bytes.len()),
            ..Self::default()
        };
        for unit in annex_b_units(bytes) {
            match unit_type(unit) {
                SEQUENCE_PARAMETER_SET => unit_of.sequence_parameter_sets.push(unit.to_vec()),
                PICTURE_PARAMETER_SET => unit_of.picture_parameter_sets.push(unit.to_vec()),
                ACCESS_UNIT_DELIMITER | FILLER_DATA => {}
                kind => {
                    unit_of.idr |= kind == IDR_SLICE;
                    unit_of
                        .avcc
                        .extend_from_slice(&(unit.len() as u32).to_be_bytes());
                    unit_of.avcc.extend_from_slice(unit);
                }
            }
        }
        unit_of
    }
}

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15, `avcC`) of parameter sets: profile,
/// compatibility and level from the first sequence parameter set, 4-byte unit lengths.
pub(crate) fn decoder_configuration_record(
    sequence_parameter_sets: &[Vec<u8>],
    picture_parameter_sets: &[Vec<u8>],
) -> Result<Vec<u8>, String> {
    let first = sequence_parameter_sets
        .first()
        .filter(|unit| unit.len() >= 4)
        .ok_or("no sequence parameter set")?;
    if picture_parameter_sets.is_empty() {
        return Err("no picture parameter set".to_owned());
    }
    if sequence_parameter_sets.len() > 31
        || picture_parameter_sets.len() > 255
        || (sequence_parameter_sets.iter().chain(picture_parameter_sets))
            .any(|unit| unit.len() > usize::from(u16::MAX))
    {
        return Err("more or longer parameter sets than an avcC holds".to_owned());
    }
    let mut record = vec![1, first[1], first[2], first[3], 0xff];
    record.push(0xe0 | sequence_parameter_sets.len() as u8);
    for unit in sequence_parameter_sets {
        record.extend_from_slice(&(unit.len() as u16).to_be_bytes());
        record.extend_from_slice(unit);
    }
    record.push(picture_parameter_sets.len() as u8);
    for unit in picture_parameter_sets {
        record.extend_from_slice(&(unit.len() as u16).to_be_bytes());
        record.extend_from_slice(unit);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_lie_between_start_codes_of_either_length() {
        let bytes = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x0c],
            &[0, 0, 1, 0x68, 0xeb, 0, 0],
            &[0, 0, 1, 0x65, 0, 0, 3, 1],
        ]
        .concat();
        let units: Vec<&[u8]> = annex_b_units(&bytes).collect();
        assert_eq!(
            units,
            vec![
                &[0x09, 0xf0][..],
                &[0x67, 0x64, 0x00, 0x0c],
                &[0x68, 0xeb],
                &[0x65, 0, 0, 3, 1]
            ]
        );
        assert_eq!(annex_b_units(&[1, 2, 3]).count(), 0, "no start code");
    }

    #[test]
    fn an_access_unit_becomes_avcc_with_its_parameter_sets_apart() {
        let bytes = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x0c, 0xac],
            &[0, 0, 1, 0x68, 0xeb],
            &[0, 0, 1, 0x06, 5],
            &[0, 0, 1, 0x65, 1, 2, 3],
        ]
        .concat();
        let unit = AccessUnit::from_annex_b(&bytes);
        assert!(unit.idr);
        assert_eq!(
            unit.avcc,
            [&[0, 0, 0, 2, 6, 5][..], &[0, 0, 0, 4, 0x65, 1, 2, 3]].concat()
        );
        let record = decoder_configuration_record(
            &unit.sequence_parameter_sets,
            &unit.picture_parameter_sets,
        )
        .unwrap();
        assert_eq!(
            record,
            [
                1, 0x64, 0x00, 0x0c, 0xff, 0xe1, 0, 5, 0x67, 0x64, 0x00, 0x0c, 0xac, 1, 0, 2, 0x68,
                0xeb
            ]
        );
        assert!(decoder_configuration_record(&[], &unit.picture_parameter_sets).is_err());
        assert!(!AccessUnit::from_annex_b(&[0, 0, 1, 0x41, 9]).idr);
    }
}
