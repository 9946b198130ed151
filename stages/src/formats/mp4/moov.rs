//! A `moov`'s tracks, reduced to what defines them for a decoder: two init segments whose
//! descriptions are equal can be spliced.

use std::fmt;

use super::boxes::{child, children, BoxError, FourCc, Reader};
use super::sample_entry::{sample_entries, SampleEntry};

/// What defines one track of a stream; two init segments with equal descriptions can be spliced
/// (metadata such as `udta`, `meta`, `edts` and bitrates is not part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackDescription {
    pub track_id: u32,
    pub handler: FourCc,
    pub timescale: u32,
    /// The codec and what its decoder needs (see [`SampleEntry`]).
    pub sample_entries: Vec<SampleEntry>,
    /// `trex` defaults: sample description index, duration, size, flags. The media segments
    /// that follow rely on them.
    pub defaults: [u32; 4],
}

impl fmt::Display for TrackDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "track {} (", self.track_id)?;
        for (index, entry) in self.sample_entries.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{entry}")?;
        }
        write!(f, ", timescale {})", self.timescale)
    }
}

/// What differs between the tracks of two init segments, for messages: `track 1 (avc1
/// 640x360, timescale 15360) → track 1 (avc1 1280x720, timescale 15360)`.
pub fn describe_change(before: &[TrackDescription], after: &[TrackDescription]) -> String {
    let list = |tracks: &[&TrackDescription]| {
        tracks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let removed: Vec<&TrackDescription> = before
        .iter()
        .filter(|track| !after.contains(track))
        .collect();
    let added: Vec<&TrackDescription> = after
        .iter()
        .filter(|track| !before.contains(track))
        .collect();
    if removed
        .iter()
        .map(ToString::to_string)
        .eq(added.iter().map(ToString::to_string))
    {
        return format!("{}: decoder configuration or sample defaults", list(&added));
    }
    format!("{} → {}", list(&removed), list(&added))
}

/// Reads the tracks of a `moov` payload. `Ok(None)` means it is not fragmented (no `mvex`).
pub fn describe_moov(moov: &[u8]) -> Result<Option<Vec<TrackDescription>>, BoxError> {
    let Some(mvex) = child(moov, b"mvex")? else {
        return Ok(None);
    };
    let mut defaults = Vec::new();
    for entry in children(mvex) {
        let (kind, payload) = entry?;
        if &kind.0 == b"trex" {
            let mut reader = Reader::new(payload, "trex");
            reader.version_flags()?;
            let track_id = reader.u32()?;
            let values = [reader.u32()?, reader.u32()?, reader.u32()?, reader.u32()?];
            defaults.push((track_id, values));
        }
    }
    let mut tracks = Vec::new();
    for entry in children(moov) {
        let (kind, trak) = entry?;
        if &kind.0 != b"trak" {
            continue;
        }
        let tkhd = child(trak, b"tkhd")?.ok_or_else(|| BoxError::new("trak without tkhd"))?;
        let mut reader = Reader::new(tkhd, "tkhd");
        let (version, _) = reader.version_flags()?;
        reader.skip(if version == 1 { 16 } else { 8 })?;
        let track_id = reader.u32()?;
        let mdia = child(trak, b"mdia")?.ok_or_else(|| BoxError::new("trak without mdia"))?;
        let mdhd = child(mdia, b"mdhd")?.ok_or_else(|| BoxError::new("mdia without mdhd"))?;
        let mut reader = Reader::new(mdhd, "mdhd");
        let (version, _) = reader.version_flags()?;
        reader.skip(if version == 1 { 16 } else { 8 })?;
        let timescale = reader.u32()?;
        if timescale == 0 {
            return Err(BoxError::new(format!("track {track_id} has timescale 0")));
        }
        let hdlr = child(mdia, b"hdlr")?.ok_or_else(|| BoxError::new("mdia without hdlr"))?;
        let mut reader = Reader::new(hdlr, "hdlr");
        reader.skip(8)?;
        let handler = FourCc(reader.take(4)?.try_into().unwrap());
        let stsd = child(mdia, b"minf")?
            .map(|minf| child(minf, b"stbl"))
            .transpose()?
            .flatten()
            .map(|stbl| child(stbl, b"stsd"))
            .transpose()?
            .flatten()
            .ok_or_else(|| BoxError::new(format!("track {track_id} has no stsd")))?;
        let defaults = defaults
            .iter()
            .find(|(id, _)| *id == track_id)
            .map(|(_, values)| *values)
            .ok_or_else(|| BoxError::new(format!("track {track_id} has no trex in mvex")))?;
        tracks.push(TrackDescription {
            track_id,
            handler,
            timescale,
            sample_entries: sample_entries(stsd, handler)?,
            defaults,
        });
    }
    if tracks.is_empty() {
        return Err(BoxError::new("moov has no tracks"));
    }
    tracks.sort_by_key(|track| track.track_id);
    Ok(Some(tracks))
}
