//! The samples a `moof` describes: for each, its track, decode time, composition offset, size,
//! where its data lies (counted from the start of the `moof`) and whether it is a sync sample.

use super::boxes::{children, BoxError, Reader};
use super::moof::{
    read_tfdt, BASE_DATA_OFFSET_PRESENT, DATA_OFFSET_PRESENT, DEFAULT_BASE_IS_MOOF,
    DEFAULT_SAMPLE_DURATION_PRESENT, FIRST_SAMPLE_FLAGS_PRESENT, SAMPLE_COMPOSITION_OFFSET_PRESENT,
    SAMPLE_DESCRIPTION_INDEX_PRESENT, SAMPLE_DURATION_PRESENT, SAMPLE_FLAGS_PRESENT,
    SAMPLE_SIZE_PRESENT,
};
use super::moov::TrackDescription;

/// `tfhd` flags of the defaults after the duration.
const DEFAULT_SAMPLE_SIZE_PRESENT: u32 = 0x10;
const DEFAULT_SAMPLE_FLAGS_PRESENT: u32 = 0x20;
/// The `sample_is_non_sync_sample` bit of sample flags.
const NON_SYNC_SAMPLE: u32 = 0x0001_0000;

/// One sample of a `moof`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub track_id: u32,
    /// In the track's timescale.
    pub decode_time: u64,
    /// Presentation time minus decode time, in the track's timescale.
    pub composition_offset: i64,
    pub duration: u32,
    pub size: u32,
    /// Where its data begins, counted from the first byte of the `moof`.
    pub offset: u64,
    pub sync: bool,
}

/// Every sample of a `moof` payload whose `moof` box has `header_len` header bytes, in file
/// order. Each `traf` needs a `tfdt`; data offsets must count from the `moof` (as the timeline
/// stage writes them).
pub fn read_samples(
    moof: &[u8],
    header_len: usize,
    tracks: &[TrackDescription],
) -> Result<Vec<Sample>, BoxError> {
    let mut samples = Vec::new();
    // Without an explicit base, a traf's data follows the previous traf's.
    let mut previous_end: Option<u64> = None;
    for entry in children(moof) {
        let (kind, traf) = entry?;
        if &kind.0 != b"traf" {
            continue;
        }
        let mut defaults = None;
        let mut decode_time = None;
        let mut data_end = previous_end.unwrap_or(0);
        for entry in children(traf) {
            let (kind, payload) = entry?;
            match &kind.0 {
                b"tfhd" => {
                    let (track_id, fragment_defaults, relative_to_moof) =
                        read_tfhd(payload, tracks)?;
                    if relative_to_moof || previous_end.is_none() {
                        data_end = 0;
                    }
                    defaults = Some((track_id, fragment_defaults));
                }
                b"tfdt" => decode_time = Some(read_tfdt(payload)?),
                b"trun" => {
                    let (track_id, fragment_defaults) =
                        defaults.ok_or_else(|| BoxError::new("trun before tfhd"))?;
                    let time = decode_time
                        .as_mut()
                        .ok_or_else(|| BoxError::new("traf without tfdt"))?;
                    data_end = read_run(
                        payload,
                        track_id,
                        fragment_defaults,
                        time,
                        data_end,
                        &mut samples,
                    )?;
                }
                _ => {}
            }
        }
        previous_end = Some(data_end);
    }
    // Data lies after the moof box: an offset inside it is corrupt.
    if let Some(sample) = samples
        .iter()
        .find(|sample| sample.offset < (moof.len() + header_len) as u64)
    {
        return Err(BoxError::new(format!(
            "a sample of track {} points into its moof",
            sample.track_id
        )));
    }
    Ok(samples)
}

/// A track fragment's sample defaults: duration, size, flags.
type Defaults = [u32; 3];

/// Reads a `tfhd`: its track, its sample defaults (the track's `trex` ones where it has none),
/// and whether its data offsets count from the moof.
fn read_tfhd(tfhd: &[u8], tracks: &[TrackDescription]) -> Result<(u32, Defaults, bool), BoxError> {
    let mut reader = Reader::new(tfhd, "tfhd");
    let (_, flags) = reader.version_flags()?;
    let track_id = reader.u32()?;
    let track = tracks
        .iter()
        .find(|track| track.track_id == track_id)
        .ok_or_else(|| {
            BoxError::new(format!(
                "traf for track {track_id}, which the moov does not have"
            ))
        })?;
    if flags & BASE_DATA_OFFSET_PRESENT != 0 {
        return Err(BoxError::new(
            "tfhd has an absolute base_data_offset; put the fmp4-timeline stage first",
        ));
    }
    if flags & SAMPLE_DESCRIPTION_INDEX_PRESENT != 0 {
        reader.u32()?;
    }
    let mut defaults = [track.defaults[1], track.defaults[2], track.defaults[3]];
    for (index, flag) in [
        DEFAULT_SAMPLE_DURATION_PRESENT,
        DEFAULT_SAMPLE_SIZE_PRESENT,
        DEFAULT_SAMPLE_FLAGS_PRESENT,
    ]
    .into_iter()
    .enumerate()
    {
        if flags & flag != 0 {
            defaults[index] = reader.u32()?;
        }
    }
    Ok((track_id, defaults, flags & DEFAULT_BASE_IS_MOOF != 0))
}

/// Reads a `trun` into `samples`, advancing `time`; returns where its data ends.
fn read_run(
    trun: &[u8],
    track_id: u32,
    defaults: Defaults,
    time: &mut u64,
    mut data_position: u64,
    samples: &mut Vec<Sample>,
) -> Result<u64, BoxError> {
    let mut reader = Reader::new(trun, "trun");
    let (version, flags) = reader.version_flags()?;
    let count = reader.u32()?;
    if flags & DATA_OFFSET_PRESENT != 0 {
        let offset = i64::from(reader.u32()? as i32);
        data_position = u64::try_from(offset)
            .map_err(|_| BoxError::new("a trun data offset points before its moof"))?;
    }
    let first_flags = if flags & FIRST_SAMPLE_FLAGS_PRESENT != 0 {
        Some(reader.u32()?)
    } else {
        None
    };
    for index in 0..count {
        let field = |present: u32, default: u32, reader: &mut Reader<'_>| {
            if flags & present != 0 {
                reader.u32()
            } else {
                Ok(default)
            }
        };
        let duration = field(SAMPLE_DURATION_PRESENT, defaults[0], &mut reader)?;
        let size = field(SAMPLE_SIZE_PRESENT, defaults[1], &mut reader)?;
        let mut sample_flags = field(SAMPLE_FLAGS_PRESENT, defaults[2], &mut reader)?;
        if index == 0 {
            sample_flags = first_flags.unwrap_or(sample_flags);
        }
        let composition_offset = if flags & SAMPLE_COMPOSITION_OFFSET_PRESENT != 0 {
            let raw = reader.u32()?;
            // Version 1 offsets are signed; version 0 ones are not.
            if version == 1 {
                i64::from(raw as i32)
            } else {
                i64::from(raw)
            }
        } else {
            0
        };
        samples.push(Sample {
            track_id,
            decode_time: *time,
            composition_offset,
            duration,
            size,
            offset: data_position,
            sync: sample_flags & NON_SYNC_SAMPLE == 0,
        });
        *time = time.saturating_add(u64::from(duration));
        data_position = data_position.saturating_add(u64::from(size));
    }
    Ok(data_position)
}
