//! streampub's built-in stages and the media-format code they share.
//!
//! - [`mp4`]: ISO base media box code (reading and rewriting `moov`, `moof`, `tfdt`, …).
//! - `timeline_engine`: what the timeline stages share (reading files chunk by chunk, the
//!   state each fragment began with, rewinds and checkpoints); each stage supplies its
//!   format's hooks.
//! - [`fmp4_timeline`]: the `fmp4-timeline` stage, which joins fragmented MP4 files into one
//!   continuous stream (and optionally converts non-fragmented MP4 with ffmpeg first).
//! - [`fmp4_to_flv`]: the `fmp4-to-flv` stage, which turns that stream into FLV tags.
//! - [`flv`]: FLV file and tag headers, FLV tags of MP4 samples and of the filler.
//! - [`flv_timeline`]: the `flv-timeline` stage, which joins FLV files into one continuous
//!   FLV stream.
//! - [`mpegts`]: MPEG transport stream packets, PES timestamps, PCR and program tables.
//! - [`mpegts_timeline`]: the `mpegts-timeline` stage, which joins MPEG-TS files onto one
//!   clock.
//! - [`mpegts_to_flv`]: the `mpegts-to-flv` stage, which turns that stream into FLV tags.
//! - `h264` (crate-private): H.264 access units between Annex B and AVCC.
//! - `aac`, `filler`, `stream_shape`, `session_limit` (crate-private): AAC's decoder
//!   configuration, the filler clip made by ffmpeg and what it must match, and the planned
//!   new session of long runs, shared by the stages.
//!
//! Sinks that need a stage (`ffmpeg-rtmp` fed MP4 needs `fmp4-timeline`) name it by its type;
//! `streampub-core` knows no media format.

mod aac;
mod filler;
pub mod flv;
pub mod flv_timeline;
pub mod fmp4_timeline;
pub mod fmp4_to_flv;
mod h264;
mod history;
pub mod mp4;
pub mod mpegts;
pub mod mpegts_timeline;
pub mod mpegts_to_flv;
mod padding;
mod resume_cut;
mod session_limit;
mod session_options;
#[cfg(test)]
mod stage_harness;
mod stream_shape;
mod timeline_engine;

/// Forces the plugins of this crate into a binary: `inventory` only sees registrations in
/// object files the linker keeps, and it keeps only those something refers to.
pub fn link() {
    fmp4_timeline::link();
    flv_timeline::link();
    fmp4_to_flv::link();
    mpegts_timeline::link();
    mpegts_to_flv::link();
}
