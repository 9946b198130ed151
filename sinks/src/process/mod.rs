//! The `process` sink: pipes fragments into a long-lived child process's stdin, restarting it
//! on failure. The `ffmpeg-rtmp` sink is this sink with an ffmpeg command line.
//!
//! When a fragment counts as taken (and is acknowledged to its source):
//! - for a process that reports its output progress (ffmpeg's `-progress`), and a fragment
//!   whose place on the output timeline a stage told
//!   ([`MediaSpan`](streampub_core::plugin::MediaSpan)): once the reported output time has
//!   passed the fragment's end by `confirm_margin`;
//! - for such a process and a fragment without a known place (raw MPEG-TS or FLV): once its
//!   output has started and it has read `read_ahead` bytes beyond the fragment's end (coarser:
//!   ffmpeg reads seconds of media ahead of what it sends);
//! - for any other process: once it has read the fragment out of the pipe.
//!
//! Until then the runtime keeps the fragment; if the process dies, every fragment not yet
//! confirmed is sent again, from its start, to a fresh process. A clean exit at close confirms
//! everything.

mod config;
mod options;
mod pipe;
mod process_sink;
mod progress;
mod session;
mod spawner;
#[cfg(test)]
mod tests;

pub use self::config::{link, ProcessSinkConfig};
pub use self::options::ProcessOptions;
pub(crate) use self::progress::ProgressConfirmation;
pub(crate) use self::session::ProcessCommand;
pub(crate) use self::session::StderrDialect;
