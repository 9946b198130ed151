//! ISO base media (MP4) format code shared by the stages: box headers and walking, `moov`
//! track descriptions (reduced to what a decoder needs), `moof` timing and rewriting. No plugin lives here.

pub mod boxes;
pub mod moof;
pub mod moov;
pub mod sample_entry;
pub mod samples;

pub use self::boxes::{BoxError, BoxHeader, FourCc};
pub use self::moov::{describe_change, describe_moov, TrackDescription};
