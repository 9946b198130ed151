//! streampub's built-in stages and the media-format code they share.
//!
//! - [`mp4`]: ISO base media box code (reading and rewriting `moov`, `moof`, `tfdt`, …).
//! - [`timeline`]: the `fmp4-timeline` stage, which joins fragmented MP4 files into one
//!   continuous stream (and optionally converts non-fragmented MP4 with ffmpeg first).
//! - [`flv`]: FLV file and tag headers, FLV tags of MP4 samples and of the filler.
//! - [`flv_timeline`]: the `flv-timeline` stage, which joins FLV files into one continuous
//!   FLV stream.
//! - [`mpegts`]: MPEG transport stream packets, PES timestamps, PCR and program tables.
//! - [`ts_timeline`]: the `mpegts-timeline` stage, which joins MPEG-TS files onto one clock.
//! - `aac`, `filler`, `stream_shape`, `session_limit` (crate-private): AAC's decoder
//!   configuration, the filler clip made by ffmpeg and what it must match, and the planned
//!   new session of long runs, shared by the stages.
//!
//! Sinks that imply a stage (`ffmpeg-rtmp` fed MP4 implies `fmp4-timeline`) depend on this
//! crate; `streampub-core` knows no media format.

mod aac;
mod filler;
pub mod flv;
pub mod flv_packetizer;
pub mod flv_timeline;
mod history;
pub mod mp4;
pub mod mpegts;
mod padding;
mod resume_cut;
mod session_limit;
#[cfg(test)]
mod stage_harness;
mod stream_shape;
pub mod timeline;
pub mod ts_timeline;

/// Forces the plugins of this crate into a binary: `inventory` only sees registrations in
/// object files the linker keeps, and it keeps only those something refers to.
pub fn link() {
    timeline::link();
    flv_timeline::link();
    flv_packetizer::link();
    ts_timeline::link();
}
