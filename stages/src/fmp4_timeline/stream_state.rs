//! The fragmented MP4 timeline's state between files: the init segment in use, the next
//! `mfhd` number and where the next file starts.

use bytes::Bytes;

use super::seconds::Seconds;
use crate::formats::mp4::TrackDescription;

/// The current init segment: its bytes and what it describes.
#[derive(Debug, Clone)]
pub(super) struct InitSegment {
    pub(super) bytes: Bytes,
    pub(super) tracks: Vec<TrackDescription>,
}

/// The fragmented MP4 part of the `fmp4-timeline` stage: the stream's state between files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fmp4Timeline {
    pub(super) init: Option<InitSegment>,
    /// The next `mfhd` sequence number.
    pub(super) next_sequence: u32,
    /// Where the next file starts on the output timeline.
    pub(super) offset: Seconds,
}
