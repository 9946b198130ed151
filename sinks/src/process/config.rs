use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::reconnect::{
    DEFAULT_MAX_RECONNECT_ATTEMPTS, DEFAULT_MAX_RECONNECT_DELAY, DEFAULT_RECONNECT_DELAY,
};
use streampub_core::{
    async_trait, ByteSize, ComponentContext, ComponentError, HumanDuration, PluginRegistration,
    ReconnectPolicy, Redactor, Sink, SinkConfig,
};

use super::{stderr_as_warning, ProcessCommand, ProcessSink};
use streampub_core::program::find_program;

inventory::submit! {
    PluginRegistration::sink::<ProcessSinkConfig>(
        "process",
        "Pipes fragments into a long-lived command's stdin, restarting it on failure",
    )
}

/// Default `pipe_buffer`: the seed's "1MB stdin buffer".
pub const DEFAULT_PIPE_BUFFER: ByteSize = ByteSize::mib(1);
/// Default `flush_timeout`.
pub const DEFAULT_FLUSH_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);

/// Writes every fragment's bytes, in order, into one long-lived process's stdin.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessSinkConfig {
    /// The program and its arguments, e.g. `["cat"]`; a program without `/` is looked up on
    /// `PATH`. No shell is involved.
    pub command: Vec<String>,
    /// A file the process's stdout is appended to (relative paths start at the pipeline file's
    /// directory); discarded when unset.
    #[serde(default)]
    pub stdout: Option<PathBuf>,
    /// Restarts allowed after one failure before the pipeline fails; 0 means forever.
    #[serde(default = "default_max_reconnect_attempts")]
    pub max_reconnect_attempts: u32,
    /// Wait before the first restart; each next wait is 1.5 times longer, with jitter.
    #[serde(default = "default_reconnect_delay")]
    pub reconnect_delay: HumanDuration,
    /// Longest wait between restarts.
    #[serde(default = "default_max_reconnect_delay")]
    pub max_reconnect_delay: HumanDuration,
    /// Capacity of the stdin pipe (`F_SETPIPE_SZ`).
    #[serde(default = "default_pipe_buffer")]
    pub pipe_buffer: ByteSize,
    /// After its stdin is closed, the process is killed if it goes this long without finishing.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: HumanDuration,
    /// Move file-backed fragments into the pipe with `splice` (zero-copy) when no stage
    /// rewrites them; `false` reads and writes them through memory.
    #[serde(default = "default_splice")]
    pub splice: bool,
}

pub(crate) fn default_splice() -> bool {
    true
}

pub(crate) fn default_max_reconnect_attempts() -> u32 {
    DEFAULT_MAX_RECONNECT_ATTEMPTS
}

pub(crate) fn default_reconnect_delay() -> HumanDuration {
    DEFAULT_RECONNECT_DELAY
}

pub(crate) fn default_max_reconnect_delay() -> HumanDuration {
    DEFAULT_MAX_RECONNECT_DELAY
}

pub(crate) fn default_pipe_buffer() -> ByteSize {
    DEFAULT_PIPE_BUFFER
}

pub(crate) fn default_flush_timeout() -> HumanDuration {
    DEFAULT_FLUSH_TIMEOUT
}

/// Checks the reconnect options shared by the process-based sinks.
pub(crate) fn reconnect_policy(
    max_attempts: u32,
    delay: HumanDuration,
    max_delay: HumanDuration,
) -> Result<ReconnectPolicy, ComponentError> {
    if max_delay < delay {
        return Err(ComponentError::field(
            "max_reconnect_delay",
            format!("must be at least reconnect_delay ({delay})"),
        ));
    }
    Ok(ReconnectPolicy {
        max_attempts,
        initial_delay: delay.get(),
        max_delay: max_delay.get(),
    })
}

/// Checks a pipe capacity: the kernel takes at least one page.
pub(crate) fn pipe_capacity(pipe_buffer: ByteSize) -> Result<usize, ComponentError> {
    match usize::try_from(pipe_buffer.bytes()) {
        Ok(bytes) if bytes >= 4096 => Ok(bytes),
        _ => Err(ComponentError::field(
            "pipe_buffer",
            "must be at least 4KiB",
        )),
    }
}

#[async_trait]
impl SinkConfig for ProcessSinkConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        let Some(program) = self.command.first() else {
            return Err(ComponentError::field(
                "command",
                "must name a program, e.g. [\"cat\"]",
            ));
        };
        if find_program(program.as_ref()).is_none() {
            return Err(ComponentError::field(
                "command",
                format!("program `{program}` not found (looked on PATH); install it or give its full path"),
            ));
        }
        reconnect_policy(
            self.max_reconnect_attempts,
            self.reconnect_delay,
            self.max_reconnect_delay,
        )?;
        pipe_capacity(self.pipe_buffer)?;
        if let Some(stdout) = &self.stdout {
            let stdout = context.resolve_path(stdout);
            if !stdout.parent().is_some_and(Path::is_dir) {
                return Err(ComponentError::field(
                    "stdout",
                    format!("the directory of {} does not exist", stdout.display()),
                ));
            }
        }
        Ok(())
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
        let program = PathBuf::from(&self.command[0]);
        let command = ProcessCommand {
            label: program
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.command[0].clone()),
            program,
            args: self.command[1..].to_vec(),
            pipeline: context.pipeline.clone(),
            redactor: Redactor::default(),
            pipe_buffer: Some(pipe_capacity(self.pipe_buffer)?),
            stdout: self.stdout.as_ref().map(|path| context.resolve_path(path)),
            stderr_level: stderr_as_warning,
            reports_progress: false,
            read_ahead: 0,
        };
        let policy = reconnect_policy(
            self.max_reconnect_attempts,
            self.reconnect_delay,
            self.max_reconnect_delay,
        )?;
        let sink = ProcessSink::start(command, policy, self.flush_timeout.get(), self.splice)
            .map_err(|error| ComponentError::field("command", error.message))?;
        Ok(Box::new(sink))
    }
}

/// Keeps this module (and its registration) in the binary; see the crate's `link`.
#[inline(never)]
pub(crate) fn link() {
    std::hint::black_box(module_path!());
}
