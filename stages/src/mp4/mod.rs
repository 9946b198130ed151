//! ISO base media (MP4) format code shared by the stages: box headers and walking, `moov`
//! track descriptions, `moof` timing and rewriting. No plugin lives here.

pub mod boxes;
pub mod moof;

pub use self::boxes::{describe_moov, BoxError, BoxHeader, FourCc, TrackDescription};
