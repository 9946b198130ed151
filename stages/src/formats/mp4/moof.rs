//! Reading the timing of a `moof` and writing it back with a new sequence number and new
//! decode times.

use super::boxes::{children, write_box, BoxError, Reader};
use super::moov::TrackDescription;

/// `tfhd` flags.
pub(super) const BASE_DATA_OFFSET_PRESENT: u32 = 0x01;
pub(super) const SAMPLE_DESCRIPTION_INDEX_PRESENT: u32 = 0x02;
pub(super) const DEFAULT_SAMPLE_DURATION_PRESENT: u32 = 0x08;
pub(super) const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags.
pub(super) const DATA_OFFSET_PRESENT: u32 = 0x01;
pub(super) const FIRST_SAMPLE_FLAGS_PRESENT: u32 = 0x04;
pub(super) const SAMPLE_DURATION_PRESENT: u32 = 0x100;
pub(super) const SAMPLE_SIZE_PRESENT: u32 = 0x200;
pub(super) const SAMPLE_FLAGS_PRESENT: u32 = 0x400;
pub(super) const SAMPLE_COMPOSITION_OFFSET_PRESENT: u32 = 0x800;

/// The timing of one `traf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFragmentTiming {
    pub track_id: u32,
    /// Its `tfdt`, if it has one.
    pub decode_time: Option<u64>,
    /// The sum of its samples' durations, in the track's timescale.
    pub duration: u64,
}

/// Reads the timing of every `traf` in a `moof` payload.
pub fn read_timing(
    moof: &[u8],
    tracks: &[TrackDescription],
) -> Result<Vec<TrackFragmentTiming>, BoxError> {
    let mut timings = Vec::new();
    for entry in children(moof) {
        let (kind, traf) = entry?;
        if &kind.0 != b"traf" {
            continue;
        }
        let mut track_id = None;
        let mut default_duration = None;
        let mut decode_time = None;
        let mut duration: u64 = 0;
        for entry in children(traf) {
            let (kind, payload) = entry?;
            match &kind.0 {
                b"tfhd" => {
                    let mut reader = Reader::new(payload, "tfhd");
                    let (_, flags) = reader.version_flags()?;
                    let id = reader.u32()?;
                    if flags & BASE_DATA_OFFSET_PRESENT != 0 {
                        reader.u64()?;
                    }
                    if flags & SAMPLE_DESCRIPTION_INDEX_PRESENT != 0 {
                        reader.u32()?;
                    }
                    if flags & DEFAULT_SAMPLE_DURATION_PRESENT != 0 {
                        default_duration = Some(reader.u32()?);
                    }
                    track_id = Some(id);
                }
                b"tfdt" => decode_time = Some(read_tfdt(payload)?),
                b"trun" => {
                    let id = track_id.ok_or_else(|| BoxError::new("trun before tfhd"))?;
                    let fallback = match default_duration {
                        Some(duration) => duration,
                        None => track(tracks, id)?.defaults[1],
                    };
                    duration = duration.saturating_add(run_duration(payload, fallback)?);
                }
                _ => {}
            }
        }
        let track_id = track_id.ok_or_else(|| BoxError::new("traf without tfhd"))?;
        track(tracks, track_id)?;
        timings.push(TrackFragmentTiming {
            track_id,
            decode_time,
            duration,
        });
    }
    Ok(timings)
}

/// The decode time a `tfdt` payload holds.
pub(super) fn read_tfdt(tfdt: &[u8]) -> Result<u64, BoxError> {
    let mut reader = Reader::new(tfdt, "tfdt");
    let (version, _) = reader.version_flags()?;
    if version == 1 {
        reader.u64()
    } else {
        reader.u32().map(u64::from)
    }
}

fn track(tracks: &[TrackDescription], track_id: u32) -> Result<&TrackDescription, BoxError> {
    tracks
        .iter()
        .find(|track| track.track_id == track_id)
        .ok_or_else(|| {
            BoxError::new(format!(
                "traf for track {track_id}, which the moov does not have"
            ))
        })
}

/// The sum of a `trun`'s sample durations.
fn run_duration(trun: &[u8], default_duration: u32) -> Result<u64, BoxError> {
    let mut reader = Reader::new(trun, "trun");
    let (_, flags) = reader.version_flags()?;
    let count = reader.u32()?;
    if flags & DATA_OFFSET_PRESENT != 0 {
        reader.u32()?;
    }
    if flags & FIRST_SAMPLE_FLAGS_PRESENT != 0 {
        reader.u32()?;
    }
    if flags & SAMPLE_DURATION_PRESENT == 0 {
        return Ok(u64::from(count) * u64::from(default_duration));
    }
    let fields = [
        SAMPLE_SIZE_PRESENT,
        SAMPLE_FLAGS_PRESENT,
        SAMPLE_COMPOSITION_OFFSET_PRESENT,
    ]
    .iter()
    .filter(|flag| flags & **flag != 0)
    .count();
    let mut total = 0u64;
    for _ in 0..count {
        total += u64::from(reader.u32()?);
        reader.skip(4 * fields)?;
    }
    Ok(total)
}

/// Writes `moof` (its payload) again with `sequence` in `mfhd` and `decode_times[i]` in the
/// `tfdt` of the i-th `traf` (added where missing, widened to version 1 where it does not fit in
/// 32 bits), and every `trun` data offset that counts from the `moof` moved by the growth.
///
/// An absolute `base_data_offset` in a `tfhd` (ffmpeg writes one without `default_base_moof`)
/// points into the file the moof came from, which began `moof_position` bytes before the
/// moof; it would be wrong in the joined stream. Such a `traf` is rewritten to count from its
/// moof instead (`default-base-is-moof`), with its data offsets moved to match.
pub fn rewrite(
    moof: &[u8],
    moof_position: u64,
    sequence: u32,
    decode_times: &[u64],
) -> Result<Vec<u8>, BoxError> {
    let mut payload = Vec::with_capacity(moof.len() + 8 * decode_times.len());
    // Where data offsets that count from the start of the moof sit in `payload`.
    let mut moof_relative_offsets = Vec::new();
    let mut traf_index = 0;
    for entry in children(moof) {
        let (kind, child) = entry?;
        match &kind.0 {
            b"mfhd" => {
                let mut mfhd = vec![0u8; 4];
                mfhd.extend_from_slice(&sequence.to_be_bytes());
                write_box(&mut payload, b"mfhd", &mfhd);
            }
            b"traf" => {
                let decode_time = *decode_times
                    .get(traf_index)
                    .ok_or_else(|| BoxError::new("more traf boxes than decode times"))?;
                let traf_start = payload.len() + 8;
                let (traf, offsets) =
                    rewrite_traf(child, decode_time, traf_index == 0, moof_position)?;
                moof_relative_offsets.extend(offsets.into_iter().map(|offset| traf_start + offset));
                write_box(&mut payload, b"traf", &traf);
                traf_index += 1;
            }
            other => write_box(&mut payload, other, child),
        }
    }
    let growth = (payload.len() as i64) - (moof.len() as i64);
    for position in moof_relative_offsets {
        let old = i32::from_be_bytes(payload[position..position + 4].try_into().unwrap());
        let new = i32::try_from(i64::from(old) + growth)
            .map_err(|_| BoxError::new("a trun data offset overflows after the rewrite"))?;
        payload[position..position + 4].copy_from_slice(&new.to_be_bytes());
    }
    let mut output = Vec::with_capacity(payload.len() + 8);
    write_box(&mut output, b"moof", &payload);
    Ok(output)
}

/// Rewrites one `traf`; returns its payload and the positions (in it) of the data offsets
/// that count from the start of the moof.
fn rewrite_traf(
    traf: &[u8],
    decode_time: u64,
    first_traf: bool,
    moof_position: u64,
) -> Result<(Vec<u8>, Vec<usize>), BoxError> {
    let mut output = Vec::with_capacity(traf.len() + 20);
    let mut offsets = Vec::new();
    let mut moof_relative = first_traf;
    let mut wrote_tfdt = false;
    // With an absolute base: where it points, counted from the moof.
    let mut base_from_moof: Option<i64> = None;
    let mut first_run = true;
    let write_tfdt = |output: &mut Vec<u8>| {
        let mut tfdt = Vec::with_capacity(12);
        match u32::try_from(decode_time) {
            Ok(small) => {
                tfdt.extend_from_slice(&[0, 0, 0, 0]);
                tfdt.extend_from_slice(&small.to_be_bytes());
            }
            Err(_) => {
                tfdt.extend_from_slice(&[1, 0, 0, 0]);
                tfdt.extend_from_slice(&decode_time.to_be_bytes());
            }
        }
        write_box(output, b"tfdt", &tfdt);
    };
    for entry in children(traf) {
        let (kind, child) = entry?;
        match &kind.0 {
            b"tfhd" => {
                let mut reader = Reader::new(child, "tfhd");
                let (version, flags) = reader.version_flags()?;
                moof_relative |= flags & DEFAULT_BASE_IS_MOOF != 0;
                if flags & BASE_DATA_OFFSET_PRESENT != 0 {
                    let track_id = reader.u32()?;
                    let base = reader.u64()?;
                    let relative = i128::from(base) - i128::from(moof_position);
                    base_from_moof = Some(i64::try_from(relative).map_err(|_| {
                        BoxError::new("tfhd base_data_offset lies outside the file")
                    })?);
                    moof_relative = true;
                    let mut tfhd = vec![version];
                    let flags = (flags & !BASE_DATA_OFFSET_PRESENT) | DEFAULT_BASE_IS_MOOF;
                    tfhd.extend_from_slice(&flags.to_be_bytes()[1..]);
                    tfhd.extend_from_slice(&track_id.to_be_bytes());
                    tfhd.extend_from_slice(reader.rest());
                    write_box(&mut output, b"tfhd", &tfhd);
                } else {
                    write_box(&mut output, b"tfhd", child);
                }
                // A traf without tfdt gets one right after its tfhd.
                if !children(traf).any(|entry| matches!(entry, Ok((kind, _)) if &kind.0 == b"tfdt"))
                {
                    write_tfdt(&mut output);
                    wrote_tfdt = true;
                }
            }
            b"tfdt" => {
                if !wrote_tfdt {
                    write_tfdt(&mut output);
                    wrote_tfdt = true;
                }
            }
            b"trun" => {
                let mut reader = Reader::new(child, "trun");
                let (version, flags) = reader.version_flags()?;
                let start = output.len() + 8;
                match base_from_moof {
                    Some(base) => {
                        let run = rebase_run(&mut reader, version, flags, base, first_run)?;
                        if run.1 {
                            offsets.push(start + 8);
                        }
                        write_box(&mut output, b"trun", &run.0);
                    }
                    None => {
                        write_box(&mut output, b"trun", child);
                        if flags & DATA_OFFSET_PRESENT != 0 && moof_relative {
                            // version/flags (4) and sample_count (4) come first.
                            offsets.push(start + 8);
                        }
                    }
                }
                first_run = false;
            }
            other => write_box(&mut output, other, child),
        }
    }
    Ok((output, offsets))
}

/// A `trun` of a `traf` whose absolute base lies `base` bytes after its moof, rewritten to
/// count from the moof: its data offset plus `base` (the first run without one gets one, as
/// its data starts at the base; a later run without one continues after the previous run, as
/// before). Returns the payload and whether it holds a data offset.
fn rebase_run(
    reader: &mut Reader<'_>,
    version: u8,
    flags: u32,
    base: i64,
    first_run: bool,
) -> Result<(Vec<u8>, bool), BoxError> {
    let count = reader.u32()?;
    let offset = if flags & DATA_OFFSET_PRESENT != 0 {
        Some(i64::from(reader.u32()? as i32))
    } else {
        first_run.then_some(0)
    };
    let mut run = vec![version];
    let flags = match offset {
        Some(_) => flags | DATA_OFFSET_PRESENT,
        None => flags,
    };
    run.extend_from_slice(&flags.to_be_bytes()[1..]);
    run.extend_from_slice(&count.to_be_bytes());
    if let Some(offset) = offset {
        let moved = i32::try_from(offset + base)
            .map_err(|_| BoxError::new("a trun data offset overflows after the rewrite"))?;
        run.extend_from_slice(&moved.to_be_bytes());
    }
    run.extend_from_slice(reader.rest());
    Ok((run, offset.is_some()))
}
