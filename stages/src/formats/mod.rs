//! The media formats the stages read and write; no plugin lives here.
//!
//! - [`mp4`]: ISO base media boxes (reading and rewriting `moov`, `moof`, `tfdt`, …).
//! - [`flv`]: FLV tags of MP4 samples, of MPEG-TS access units and of the filler, on the tag
//!   model of `streampub-flv`.
//! - [`mpegts`]: MPEG transport stream packets, PES timestamps, PCR and program tables.
//! - `h264` (crate-private): H.264 access units between Annex B and AVCC.
//! - `aac` (crate-private): AAC's decoder configuration and ADTS.

pub(crate) mod aac;
pub mod flv;
pub(crate) mod h264;
pub mod mp4;
pub mod mpegts;
