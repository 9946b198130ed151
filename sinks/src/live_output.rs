//! What the sinks that publish a live stream (`ffmpeg-rtmp`, `rtmp`) share: the fragments'
//! container, real-time pacing and its lead, and the timeline stages they put in front of
//! themselves.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::HumanDuration;

// The timeline stages a live sink puts in front of itself, by their registered types (in
// `streampub-stages`).
pub(crate) const FMP4_TIMELINE: &str = "fmp4-timeline";
pub(crate) const FMP4_TO_FLV: &str = "fmp4-to-flv";
pub(crate) const FLV_TIMELINE: &str = "flv-timeline";
pub(crate) const MPEGTS_TIMELINE: &str = "mpegts-timeline";
pub(crate) const MPEGTS_TO_FLV: &str = "mpegts-to-flv";

/// Whether a live sink paces what it writes by the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PacingMode {
    /// Each tag when the wall clock reaches its time (within `max_lead`).
    Realtime,
    /// As fast as the output takes it.
    Off,
}

/// Default `max_lead`: how far ahead of the wall clock paced media may be written.
pub const DEFAULT_MAX_LEAD: HumanDuration = HumanDuration::from_secs(2);

pub(crate) fn default_max_lead() -> HumanDuration {
    DEFAULT_MAX_LEAD
}

/// The container of the fragments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// Fragmented MP4 (or MP4 with the moov first).
    #[default]
    Mp4,
    /// MPEG transport stream.
    Mpegts,
    /// FLV.
    Flv,
}

impl InputFormat {
    /// The name ffmpeg gives the container (`-f`).
    pub(crate) fn ffmpeg_name(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Mpegts => "mpegts",
            Self::Flv => "flv",
        }
    }
}
