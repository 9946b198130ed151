//! streampub's built-in stages and the media-format code they share.
//!
//! - [`formats`]: the media formats (MP4 boxes, FLV tags, MPEG-TS packets, H.264 access units,
//!   AAC configuration), shared by the stages.
//! - `timeline_engine`: what the timeline stages share (reading files chunk by chunk, the
//!   state each fragment began with, rewinds and checkpoints); each stage supplies its
//!   format's hooks.
//! - [`fmp4_timeline`]: the `fmp4-timeline` stage, which joins fragmented MP4 files into one
//!   continuous stream (and optionally converts non-fragmented MP4 with ffmpeg first).
//! - [`fmp4_to_flv`]: the `fmp4-to-flv` stage, which turns that stream into FLV tags.
//! - [`flv_timeline`]: the `flv-timeline` stage, which joins FLV files into one continuous
//!   FLV stream.
//! - [`mpegts_timeline`]: the `mpegts-timeline` stage, which joins MPEG-TS files onto one
//!   clock.
//! - [`mpegts_to_flv`]: the `mpegts-to-flv` stage, which turns that stream into FLV tags.
//! - `filler`, `stream_shape`, `session_limit`, `session_options`, `resume_cut`, `history`,
//!   `padding` (crate-private): the filler clip made by ffmpeg and what it must match, the
//!   planned new session of long runs and its options, where a resend starts, the state each
//!   recent fragment began with (for rewinds), and the zeros that complete a cut box; shared
//!   by the stages.
//!
//! Sinks that need a stage (`ffmpeg-rtmp` fed MP4 needs `fmp4-timeline`) name it by its type;
//! `streampub-core` knows no media format.

mod filler;
pub mod flv_timeline;
pub mod fmp4_timeline;
pub mod fmp4_to_flv;
pub mod formats;
mod history;
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
