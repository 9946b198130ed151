//! The process sink itself: one session (a child process) at a time, fragments written into
//! its stdin, confirmed as its progress passes their ends, restarted after a failure.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streampub_core::plugin::FileRange;
use streampub_core::plugin::{
    async_trait, Bytes, FragmentInfo, MediaSpan, ReconnectPolicy, SessionReason, Sink,
    SinkCapabilities, SinkError,
};
use tracing::info;

use super::progress::OutputProgress;
use super::session::{describe_exit, ProcessCommand, ProcessSession};

/// A sink that writes into a child process.
pub(crate) struct ProcessSink {
    command: ProcessCommand,
    policy: ReconnectPolicy,
    /// How long the process may take to finish once its stdin is closed.
    flush_timeout: Duration,
    session: Option<ProcessSession>,
    /// What the current (or last) session's process reported of its output.
    progress: Arc<OutputProgress>,
    /// The fragments ended in this session and not yet confirmed, oldest first.
    ended: VecDeque<Ended>,
    /// Where the fragment being written lies on the session's output timeline, if a stage
    /// said.
    span: Option<MediaSpan>,
    /// Move file-backed fragments with `splice` instead of reading and writing them.
    splice: bool,
}

/// A fragment ended in the current session, and what confirms it.
#[derive(Debug, Clone, Copy)]
struct Ended {
    /// Where it ended in the session's input, in bytes.
    input_end: u64,
    /// Where it ended on the session's output timeline, if known.
    output_end: Option<Duration>,
}

impl ProcessSink {
    /// A sink whose process starts when the run's first bytes are written: a run with nothing
    /// to send starts none, so nothing fails on an empty input (ffmpeg says it
    /// could not find codec parameters when a stage refused every fragment).
    pub(crate) fn new(
        command: ProcessCommand,
        policy: ReconnectPolicy,
        flush_timeout: Duration,
        splice: bool,
    ) -> Self {
        Self {
            command,
            policy,
            flush_timeout,
            progress: Arc::default(),
            session: None,
            ended: VecDeque::new(),
            span: None,
            splice,
        }
    }

    /// The running session, started for bytes to write.
    async fn session(&mut self) -> Result<&mut ProcessSession, SinkError> {
        if self.session.is_none() {
            self.new_session().await?;
        }
        Ok(self.session.as_mut().expect("just started"))
    }

    async fn new_session(&mut self) -> Result<(), SinkError> {
        self.ended.clear();
        let session = ProcessSession::spawn(&self.command).await?;
        self.progress = session.progress();
        self.session = Some(session);
        Ok(())
    }

    /// Drops the fragments that the last reported output time confirms (see
    /// [`Self::is_confirmed`]), for a session that has ended.
    fn confirm_by_output_time(&mut self) {
        let (Some(rule), Some(time)) = (self.command.progress, self.progress.output_time()) else {
            return;
        };
        let confirmed = self
            .ended
            .iter()
            .take_while(|ended| {
                ended
                    .output_end
                    .is_some_and(|end| time >= end + rule.confirm_margin)
            })
            .count();
        self.ended.drain(..confirmed);
    }

    /// Whether the process has really taken `ended`: by output time when both are known, else
    /// by the bytes it read.
    fn is_confirmed(
        &self,
        ended: &Ended,
        session: &ProcessSession,
        consumed: &mut Option<u64>,
    ) -> bool {
        let Some(rule) = self.command.progress else {
            return ended.input_end <= *consumed.get_or_insert_with(|| session.consumed());
        };
        if let Some(end) = ended.output_end {
            return self
                .progress
                .output_time()
                .is_some_and(|time| time >= end + rule.confirm_margin);
        }
        session.output_started()
            && ended.input_end.saturating_add(rule.read_ahead)
                <= *consumed.get_or_insert_with(|| session.consumed())
    }
}

#[async_trait]
impl Sink for ProcessSink {
    async fn begin_fragment(&mut self, _fragment: &FragmentInfo) -> Result<(), SinkError> {
        self.span = None;
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.session().await?.write(&chunk).await
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            file_ranges: self.splice,
            pacing: self.command.pacing,
            reconnect: self.policy,
        }
    }

    async fn write_file_range(&mut self, range: FileRange) -> Result<(), SinkError> {
        self.session().await?.splice(range).await
    }

    fn media_span(&mut self, span: MediaSpan) {
        self.span = Some(span);
    }

    /// The reported output time less `confirm_margin` (what may still sit in socket buffers).
    fn confirmed_output_time(&mut self) -> Option<Duration> {
        let rule = self.command.progress?;
        let time = self.progress.output_time()?;
        Some(time.saturating_sub(rule.confirm_margin))
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        // Nothing of it was written, and no session took anything before: nothing to confirm.
        let Some(session) = &self.session else {
            self.span = None;
            return Ok(());
        };
        let input_end = session.written();
        let output_end = self.span.take().map(|span| span.end);
        self.ended.push_back(Ended {
            input_end,
            output_end,
        });
        Ok(())
    }

    async fn start_session(&mut self, reason: SessionReason) -> Result<(), SinkError> {
        if let Some(old) = self.session.take() {
            match reason {
                // The runtime resends every unconfirmed fragment: the old process can go.
                SessionReason::Reconnect => old.kill().await,
                // Nothing is resent: the old process must finish what it took.
                SessionReason::StreamChanged { .. } => {
                    let finished = old.finish(self.flush_timeout).await;
                    self.confirm_by_output_time();
                    // What is left in `ended` stays unconfirmed and is sent again.
                    if !matches!(&finished, Ok(exit) if exit.status.success())
                        && !self.ended.is_empty()
                    {
                        return Err(match finished {
                            Ok(exit) => {
                                let message = format!(
                                    "{} did not finish cleanly before the new session ({}{})",
                                    self.command.label,
                                    describe_exit(exit.status),
                                    exit.last_lines
                                );
                                exit.error(&self.command.label, message)
                            }
                            Err(error) => error,
                        });
                    }
                }
            }
        }
        // The runtime resends (or sends) at once: starting now shows a failure now.
        self.new_session().await
    }

    fn unconfirmed(&mut self) -> usize {
        let Some(session) = &self.session else {
            return self.ended.len();
        };
        // Reading the pipe's fill is a system call: at most once, and only if needed.
        let mut consumed = None;
        let confirmed = self
            .ended
            .iter()
            .take_while(|ended| self.is_confirmed(ended, session, &mut consumed))
            .count();
        self.ended.drain(..confirmed);
        self.ended.len()
    }

    /// Live once media is going out (for a process that reports progress), else once the
    /// process has taken input: one that never reads is never live.
    fn output_live_since(&mut self) -> Option<Instant> {
        match self.command.progress {
            Some(_) => self.progress.live_since(),
            None => self
                .session
                .as_ref()
                .is_some_and(|session| session.consumed() > 0)
                .then(Instant::now),
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let label = session.label().to_owned();
        // A session that was given nothing has nothing to lose: how it exits (ffmpeg fails on
        // an empty input) is no failure of the run.
        let given_nothing = session.written() == 0;
        let finished = session.finish(self.flush_timeout).await;
        // Whatever happened, what the output passed before it ended was taken.
        self.confirm_by_output_time();
        let exit = finished?;
        if exit.status.success() || given_nothing {
            info!(
                event = "process_exited",
                pipeline = %self.command.pipeline,
                sink = self.command.sink.as_deref(),
                program = %label,
                exit_code = exit.status.code(),
                "{label} finished ({})",
                describe_exit(exit.status)
            );
            self.ended.clear();
            Ok(())
        } else {
            // What it had not confirmed may be lost: a new session can publish it again,
            // unless the process said that it would fail the same way.
            let message = format!(
                "{label} ended with {} after its input was closed{}",
                describe_exit(exit.status),
                exit.last_lines
            );
            Err(exit.error(&label, message))
        }
    }
}
