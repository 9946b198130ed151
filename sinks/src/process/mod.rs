//! The `process` sink: pipes fragments into a long-lived child process's stdin, restarting it
//! on failure. The `ffmpeg-rtmp` sink is this sink with an ffmpeg command line.
//!
//! A fragment counts as taken (and is acknowledged to its source) only once the process has read
//! all of it out of the pipe, plus `read_ahead` bytes beyond it for a process that buffers input
//! before publishing it (ffmpeg), and, for a process that reports progress, once its output has
//! started. Until then the runtime keeps the fragment; if the process dies, every fragment not
//! yet confirmed is sent again, from its start, to a fresh process. A clean exit at close
//! confirms everything.

mod config;
mod options;
mod session;

use std::collections::VecDeque;
use std::time::Duration;

use streampub_core::FileRange;
use streampub_core::{
    async_trait, Bytes, FragmentInfo, ReconnectPolicy, SessionReason, Sink, SinkError,
};
use tracing::{info, Level};

pub use self::config::ProcessSinkConfig;
pub use self::options::ProcessOptions;
pub(crate) use self::session::ProcessCommand;
use self::session::{describe_exit, ProcessSession};

/// A sink that writes into a child process.
pub(crate) struct ProcessSink {
    command: ProcessCommand,
    policy: ReconnectPolicy,
    /// How long the process may take to finish once its stdin is closed.
    flush_timeout: Duration,
    session: Option<ProcessSession>,
    /// Where each fragment ended in this session's input, for those not yet confirmed.
    ended: VecDeque<u64>,
    /// Move file-backed fragments with `splice` instead of reading and writing them.
    splice: bool,
}

impl ProcessSink {
    /// Starts the process right away, so the first fragment does not wait for it.
    pub(crate) fn start(
        command: ProcessCommand,
        policy: ReconnectPolicy,
        flush_timeout: Duration,
        splice: bool,
    ) -> Result<Self, SinkError> {
        let session = ProcessSession::spawn(&command)?;
        Ok(Self {
            command,
            policy,
            flush_timeout,
            session: Some(session),
            ended: VecDeque::new(),
            splice,
        })
    }

    fn session(&mut self) -> Result<&mut ProcessSession, SinkError> {
        if self.session.is_none() {
            self.session = Some(ProcessSession::spawn(&self.command)?);
        }
        Ok(self.session.as_mut().expect("just started"))
    }
}

#[async_trait]
impl Sink for ProcessSink {
    async fn begin_fragment(&mut self, _fragment: &FragmentInfo) -> Result<(), SinkError> {
        self.session().map(|_| ())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.session()?.write(&chunk).await
    }

    fn accepts_file_ranges(&self) -> bool {
        self.splice
    }

    async fn write_file_range(&mut self, range: FileRange) -> Result<(), SinkError> {
        self.session()?.splice(range).await
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        let end = self.session()?.written();
        self.ended.push_back(end);
        Ok(())
    }

    async fn start_session(&mut self, reason: SessionReason) -> Result<(), SinkError> {
        if let Some(old) = self.session.take() {
            match reason {
                // The runtime resends every unconfirmed fragment: the old process can go.
                SessionReason::Reconnect => old.kill().await,
                // Nothing is resent: the old process must finish what it took.
                SessionReason::StreamChanged => {
                    let finished = old.finish(self.flush_timeout).await;
                    if !matches!(&finished, Ok((status, _)) if status.success())
                        && !self.ended.is_empty()
                    {
                        let why = match finished {
                            Ok((status, last_lines)) => {
                                format!("{}{last_lines}", describe_exit(status))
                            }
                            Err(error) => error.message,
                        };
                        self.ended.clear();
                        return Err(SinkError::retryable(format!(
                            "{} did not finish cleanly before the new session ({why})",
                            self.command.label
                        )));
                    }
                }
            }
        }
        self.ended.clear();
        self.session = Some(ProcessSession::spawn(&self.command)?);
        Ok(())
    }

    fn unconfirmed(&mut self) -> usize {
        let Some(session) = &self.session else {
            return self.ended.len();
        };
        // Checking the pipe is a system call: only when a fragment waits for confirmation.
        if self.ended.is_empty() || !session.output_started() {
            return self.ended.len();
        }
        let consumed = session.consumed();
        while self
            .ended
            .front()
            .is_some_and(|end| end.saturating_add(self.command.read_ahead) <= consumed)
        {
            self.ended.pop_front();
        }
        self.ended.len()
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let label = session.label().to_owned();
        // A session that was given nothing has nothing to lose: how it exits (ffmpeg fails on
        // an empty input) is no failure of the run.
        let given_nothing = session.written() == 0;
        let (status, last_lines) = session.finish(self.flush_timeout).await?;
        if status.success() || given_nothing {
            info!(
                event = "process_exited",
                pipeline = %self.command.pipeline,
                program = %label,
                exit_code = status.code(),
                "{label} finished ({})",
                describe_exit(status)
            );
            self.ended.clear();
            Ok(())
        } else {
            // What it had not confirmed may be lost: a new session can publish it again.
            Err(SinkError::retryable(format!(
                "{label} ended with {} after its input was closed{last_lines}",
                describe_exit(status)
            )))
        }
    }

    fn reconnect_policy(&self) -> ReconnectPolicy {
        self.policy
    }
}

/// Stderr of a generic process is diagnostics: log it as warnings.
pub(crate) fn stderr_as_warning(_line: &str) -> Level {
    Level::WARN
}

/// Keeps this plugin's registration in the binary; see the crate's `link`.
pub fn link() {
    config::link();
}

#[cfg(test)]
mod tests;
