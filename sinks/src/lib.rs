//! streampub's built-in sinks.
//!
//! - `file`: one continuous archive file, or one file per fragment.
//! - `null`: consumes and counts; the reference for benchmarks.
//! - `process`: pipes fragments into a long-lived command's stdin.
//! - `ffmpeg-rtmp`: publishes to an RTMP server through a long-lived ffmpeg.

pub mod ffmpeg;
pub mod file;
pub mod null;
pub mod process;

/// Forces this crate into a binary so `inventory` sees its plugins; call it from `main`.
pub fn link() {}
