//! The options of every sink that runs a long-lived process and writes fragments into its
//! stdin: `process` and `ffmpeg-rtmp` share them (one definition, one set of docs, one check),
//! beside the reconnect options every sink with sessions shares.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::check_duration;
use streampub_core::plugin::{ByteSize, ComponentError, HumanDuration};

use super::process_sink::ProcessSink;
use super::session::ProcessCommand;
use crate::reconnect_options::ReconnectOptions;

/// Default `pipe_buffer`: a 1 MiB stdin buffer.
pub const DEFAULT_PIPE_BUFFER: ByteSize = ByteSize::mib(1);
/// Default `stall_timeout`.
pub const DEFAULT_STALL_TIMEOUT: HumanDuration = HumanDuration::from_secs(20);
/// Default `flush_timeout`.
pub const DEFAULT_FLUSH_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);
/// The smallest pipe the kernel makes: one page.
const MIN_PIPE_BUFFER: usize = 4096;
/// The largest pipe asked for.
const MAX_PIPE_BUFFER: usize = 1 << 30;

/// Restarts, the stdin pipe and the shutdown of the process. Written beside the sink's own
/// options (serde `flatten`; the sink's config still refuses unknown fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ProcessOptions {
    /// Capacity of the process's stdin pipe (`F_SETPIPE_SZ`), from 4KiB to 1GiB.
    #[serde(default = "default_pipe_buffer")]
    pub pipe_buffer: ByteSize,
    /// After its input ends, the process is killed if it goes this long without finishing; a
    /// process that reports progress (ffmpeg) only if it goes this long without progress, since
    /// with `-re` it takes as long as the media it still holds.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: HumanDuration,
    /// Move file-backed fragments into the pipe with `splice` (zero-copy) when no stage
    /// rewrites them; `false` reads and writes them through memory.
    #[serde(default = "default_splice")]
    pub splice: bool,
    /// A process that takes no input for this long while streampub has input for it (it hung,
    /// or was stopped) fails the session, which is restarted like after any failure. More
    /// than 0s.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: HumanDuration,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            pipe_buffer: default_pipe_buffer(),
            flush_timeout: default_flush_timeout(),
            splice: default_splice(),
            stall_timeout: default_stall_timeout(),
        }
    }
}

fn default_stall_timeout() -> HumanDuration {
    DEFAULT_STALL_TIMEOUT
}

fn default_splice() -> bool {
    true
}

fn default_pipe_buffer() -> ByteSize {
    DEFAULT_PIPE_BUFFER
}

fn default_flush_timeout() -> HumanDuration {
    DEFAULT_FLUSH_TIMEOUT
}

impl ProcessOptions {
    /// Checks the options without side effects.
    pub fn validate(&self) -> Result<(), ComponentError> {
        check_duration("flush_timeout", self.flush_timeout, false)?;
        check_duration("stall_timeout", self.stall_timeout, false)?;
        self.pipe_capacity()?;
        Ok(())
    }

    /// The sink running the process of `command` with these options and `reconnect`'s
    /// restarts (started when the first bytes are written).
    pub(crate) fn sink(
        &self,
        mut command: ProcessCommand,
        reconnect: &ReconnectOptions,
    ) -> Result<ProcessSink, ComponentError> {
        command.pipe_buffer = Some(self.pipe_capacity()?);
        command.stall_timeout = Some(self.stall_timeout.get());
        let policy = reconnect.policy()?;
        Ok(ProcessSink::new(
            command,
            policy,
            self.flush_timeout.get(),
            self.splice,
        ))
    }

    fn pipe_capacity(&self) -> Result<usize, ComponentError> {
        match usize::try_from(self.pipe_buffer.bytes()) {
            Ok(bytes) if (MIN_PIPE_BUFFER..=MAX_PIPE_BUFFER).contains(&bytes) => Ok(bytes),
            _ => Err(ComponentError::field(
                "pipe_buffer",
                "must be from 4KiB to 1GiB",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let options = ProcessOptions::default();
        assert_eq!(options.pipe_buffer, ByteSize::mib(1));
        assert!(options.splice);
        options.validate().unwrap();
        let small = ProcessOptions {
            pipe_buffer: ByteSize(100),
            ..ProcessOptions::default()
        };
        assert_eq!(
            small.validate().unwrap_err().field.as_deref(),
            Some("pipe_buffer")
        );
    }
}
