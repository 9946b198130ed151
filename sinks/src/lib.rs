//! streampub's built-in sinks.
//!
//! - `file`: one continuous archive file, or one file per fragment.
//! - `null`: consumes and counts; the reference for benchmarks.
//! - `process`: pipes fragments into a long-lived command's stdin.
//! - `ffmpeg-rtmp`: publishes to an RTMP server through a long-lived ffmpeg.
//! - `rtmp`: publishes to an RTMP server over streampub's own connection.

pub mod ffmpeg;
pub mod file;
pub mod live_output;
pub mod null;
pub mod process;
pub mod reconnect_options;
pub mod rtmp;
pub mod rtmp_destination;
pub mod tls_options;

/// Forces this crate's plugins into a binary so `inventory` sees them; call it from `main`.
/// (The linker keeps only object files something refers to, so each plugin module is named.)
pub fn link() {
    ffmpeg::link();
    file::link();
    null::link();
    process::link();
    rtmp::link();
}
