use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::find_program;
use streampub_core::plugin::{
    async_trait, ComponentContext, ComponentError, Redactor, Sink, SinkConfig,
};
use streampub_core::register_sink;

use crate::reconnect_options::ReconnectOptions;

use super::options::ProcessOptions;
use super::session::GenericStderr;
use super::session::ProcessCommand;

register_sink!(
    ProcessSinkConfig,
    "process",
    "Pipes fragments into a long-lived command's stdin, restarting it on failure",
);

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
    /// Restarts, the stdin pipe and shutdown: see [`ProcessOptions`].
    #[serde(flatten)]
    pub process: ProcessOptions,
    /// Restarts: `max_reconnect_attempts`, `reconnect_delay`, `max_reconnect_delay`.
    #[serde(flatten)]
    pub reconnect: ReconnectOptions,
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
        self.process.validate()?;
        self.reconnect.policy()?;
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
            sink: context.sink.clone(),
            redactor: Redactor::default(),
            pipe_buffer: None,
            stall_timeout: None,
            stdout: self.stdout.as_ref().map(|path| context.resolve_path(path)),
            dialect: Arc::new(GenericStderr),
            progress: None,
            pacing: None,
        };
        Ok(Box::new(self.process.sink(command, &self.reconnect)?))
    }
}
