//! The `ffmpeg-rtmp` sink: a long-lived ffmpeg reads the fragments from its stdin and publishes
//! them to an RTMP server. It is the `process` sink with an ffmpeg command line built from the
//! config, ffmpeg-aware stderr levels, and the stream key kept out of every log line and error.

mod arguments;
mod config;
mod stderr;
#[cfg(test)]
mod tests;

pub use self::arguments::DEFAULT_OUTPUT_ARGS;
pub use self::config::{link, Continuity, FfmpegInput, FfmpegRtmpSinkConfig};
