//! One run of a child process that reads fragments from its stdin.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streampub_core::plugin::{FileRange, Pacing, Redactor, SinkError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;
use tracing::{info, Level};

use super::pipe::{splice_all, unread_bytes, write_unless_stalled};
use super::progress::{OutputProgress, ProgressConfirmation};
use super::spawner;

/// How many of the process's last stderr lines are kept for error messages.
const STDERR_TAIL_LINES: usize = 12;
/// How long a failed write waits for the process to exit, to report its status and last words.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How a program's stderr is understood. A generic process's words are not: its lines are
/// warnings, and any failure may be cured by a new session ([`GenericStderr`]); a sink that
/// knows its program (ffmpeg) says more.
pub(crate) trait StderrDialect: Send + Sync + std::fmt::Debug {
    /// The level a stderr line is logged at.
    fn level(&self, line: &str) -> Level;

    /// Whether a stderr line shows a failure no new session can cure (a codec the output
    /// cannot carry); the way out, for the error.
    fn permanent_failure(&self, line: &str) -> Option<&'static str>;
}

/// The stderr of a program streampub does not know: diagnostics, logged as warnings.
#[derive(Debug)]
pub(crate) struct GenericStderr;

impl StderrDialect for GenericStderr {
    fn level(&self, _line: &str) -> Level {
        Level::WARN
    }

    fn permanent_failure(&self, _line: &str) -> Option<&'static str> {
        None
    }
}

/// What to run and how to talk about it.
#[derive(Debug, Clone)]
pub(crate) struct ProcessCommand {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    /// How logs and errors name the process: `ffmpeg`, or the program's name.
    pub(crate) label: String,
    pub(crate) pipeline: String,
    /// The destination's name in a fan-out.
    pub(crate) sink: Option<String>,
    /// Secrets (a stream key) to keep out of every log line and error.
    pub(crate) redactor: Redactor,
    /// Capacity to set on the stdin pipe (`F_SETPIPE_SZ`).
    pub(crate) pipe_buffer: Option<usize>,
    /// A write into stdin that makes no progress for this long fails the session; `None`
    /// waits for ever.
    pub(crate) stall_timeout: Option<Duration>,
    /// A file the process's stdout is appended to; discarded when `None`.
    pub(crate) stdout: Option<PathBuf>,
    /// How the program's stderr lines are understood.
    pub(crate) dialect: Arc<dyn StderrDialect>,
    /// The process reports its output progress on stderr (ffmpeg's `-progress pipe:2`), and
    /// fragments are confirmed by it; `None`: once the process has read them.
    pub(crate) progress: Option<ProgressConfirmation>,
    /// Media is written into the process by the wall clock (a live output).
    pub(crate) pacing: Option<Pacing>,
}

impl ProcessCommand {
    /// The command line, redacted, for logs.
    pub(crate) fn describe(&self) -> String {
        let line = std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        self.redactor.redact(&line)
    }
}

/// A running child process and its pipes.
pub(crate) struct ProcessSession {
    command: ProcessCommand,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<StderrRecord>>,
    /// Reads stderr until the process closes it; `None` once it has finished.
    stderr_reader: Option<JoinHandle<()>>,
    /// Output progress, when the process reports it.
    progress: Arc<OutputProgress>,
    /// Bytes written into stdin so far.
    written: u64,
}

/// What the process said on stderr that errors need: its last lines, and the first line that
/// showed a failure no new session can cure, with the way out.
#[derive(Debug, Default)]
struct StderrRecord {
    tail: VecDeque<String>,
    permanent: Option<(String, &'static str)>,
}

/// How a session ended after its input was closed.
pub(crate) struct Exit {
    pub(crate) status: ExitStatus,
    /// Its last stderr lines, redacted, ready to append to a message.
    pub(crate) last_lines: String,
    /// The line that showed that a new session would fail the same way, and the way out (see
    /// [`ProcessCommand::permanent_failure`]).
    permanent: Option<(String, &'static str)>,
}

impl Exit {
    /// The error for this exit, described by `message`: fatal if a new session would fail the
    /// same way.
    pub(crate) fn error(&self, label: &str, message: String) -> SinkError {
        failure_error(label, self.permanent.as_ref(), message)
    }
}

/// A retryable error, or a fatal one with the line that shows why and the way out.
fn failure_error(
    label: &str,
    permanent: Option<&(String, &'static str)>,
    message: String,
) -> SinkError {
    match permanent {
        Some((line, remedy)) => SinkError::fatal(format!(
            "{label} cannot publish this stream: {line}. {remedy}. ({message})"
        )),
        None => SinkError::retryable(message),
    }
}

impl ProcessSession {
    /// Starts the process with stdin piped, stdout to its file (or discarded) and stderr logged.
    pub(crate) async fn spawn(command: &ProcessCommand) -> Result<Self, SinkError> {
        let stdout = match &command.stdout {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .map_err(|error| {
                    SinkError::fatal(format!("cannot open {}: {error}", path.display()))
                })?,
            None => Stdio::null(),
        };
        let mut process = Command::new(&command.program);
        process
            .args(&command.args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in the terminal reaches streampub, which then
            // finishes the fragment in flight and closes stdin, instead of killing the child.
            .process_group(0)
            .kill_on_drop(true);
        // Started so that a killed streampub leaves no orphan (see `spawner`).
        let mut child = spawner::spawn(process).await.map_err(|error| {
            let message = format!("cannot start {}: {error}", command.describe());
            match error.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                    SinkError::fatal(message)
                }
                _ => SinkError::retryable(message),
            }
        })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        if let Some(size) = command.pipe_buffer {
            set_pipe_size(&stdin, size, command);
        }
        let stderr = Arc::new(Mutex::new(StderrRecord::default()));
        let progress = Arc::new(OutputProgress::default());
        let stderr_reader = tokio::spawn(read_stderr(
            child.stderr.take().expect("stderr is piped"),
            command.clone(),
            Arc::clone(&stderr),
            Arc::clone(&progress),
        ));
        info!(
            event = "process_started",
            pipeline = %command.pipeline,
            sink = command.sink.as_deref(),
            program = %command.label,
            pid = child.id(),
            "Started {} (pid {}): {}",
            command.label,
            child.id().unwrap_or_default(),
            command.describe()
        );
        Ok(Self {
            command: command.clone(),
            child,
            stdin: Some(stdin),
            stderr,
            stderr_reader: Some(stderr_reader),
            progress,
            written: 0,
        })
    }

    /// Writes into the process's stdin, waiting while the pipe is full, but not longer than
    /// `stall_timeout` without the process taking input or reporting more output (a process
    /// that stopped: ffmpeg with `-re` may rightly take no input for seconds while it plays out
    /// what it buffered, but its output goes on).
    pub(crate) async fn write(&mut self, mut bytes: &[u8]) -> Result<(), SinkError> {
        let stall_timeout = self.command.stall_timeout;
        let progress = Arc::clone(&self.progress);
        let stdin = self.stdin.as_mut().expect("stdin is open until finish");
        while !bytes.is_empty() {
            let written = match stall_timeout {
                Some(limit) => write_unless_stalled(stdin, bytes, limit, &progress).await,
                None => stdin.write(bytes).await,
            };
            match written {
                Ok(0) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    let what = format!("writing to its stdin failed ({error})");
                    return Err(self.failure(&what, &error).await);
                }
                Ok(written) => {
                    self.written += written as u64;
                    bytes = &bytes[written..];
                }
                Err(error) => {
                    let what = format!("writing to its stdin failed ({error})");
                    return Err(self.failure(&what, &error).await);
                }
            }
        }
        Ok(())
    }

    /// Moves a part of a file into the process's stdin inside the kernel (`splice`), without
    /// reading it into memory; waits while the pipe is full.
    pub(crate) async fn splice(&mut self, range: FileRange) -> Result<(), SinkError> {
        let stdin = self.stdin.as_ref().expect("stdin is open until finish");
        let spliced = match stdin.as_fd().try_clone_to_owned() {
            // The duplicate keeps the pipe open for the blocking thread even if this future is
            // dropped; it is closed when the thread is done.
            Ok(pipe) => {
                let stall = self
                    .command
                    .stall_timeout
                    .map(|limit| (limit, Arc::clone(&self.progress)));
                tokio::task::spawn_blocking(move || splice_all(&range, &pipe, stall))
            }
            .await
            .unwrap_or_else(|panic| Err(io::Error::other(panic.to_string()))),
            Err(error) => Err(error),
        };
        match spliced {
            Ok(moved) => {
                self.written += moved as u64;
                Ok(())
            }
            Err(error) => {
                let what = format!("splicing into its stdin failed ({error})");
                Err(self.failure(&what, &error).await)
            }
        }
    }

    /// Bytes the process has read from its stdin in this session.
    pub(crate) fn consumed(&self) -> u64 {
        let stdin = self.stdin.as_ref().expect("stdin is open until finish");
        // If the pipe cannot be inspected, count nothing as read: confirmation waits for close.
        let unread = unread_bytes(stdin).unwrap_or(usize::MAX);
        self.written.saturating_sub(unread as u64)
    }

    /// Bytes written into the process's stdin in this session.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Whether the process has started writing output (always, for one that does not report
    /// progress).
    pub(crate) fn output_started(&self) -> bool {
        self.command.progress.is_none() || self.progress.output_bytes() > 0
    }

    /// What the process reports of its output, also after the session is gone.
    pub(crate) fn progress(&self) -> Arc<OutputProgress> {
        Arc::clone(&self.progress)
    }

    /// Closes stdin and waits for the process to finish; returns how it exited. It is killed
    /// once it has gone `quiet_limit` without finishing or, when it reports progress, without
    /// progress (with `-re`, ffmpeg rightly takes as long as the media it still holds).
    pub(crate) async fn finish(mut self, quiet_limit: Duration) -> Result<Exit, SinkError> {
        drop(self.stdin.take());
        let progress = Arc::clone(&self.progress);
        let status = loop {
            let report = progress.report.notified();
            tokio::select! {
                status = self.child.wait() => break status.map_err(|error| {
                    SinkError::fatal(format!("waiting for {}: {error}", self.command.label))
                })?,
                () = report => {}
                () = tokio::time::sleep(quiet_limit) => {
                    let _ = self.child.kill().await;
                    self.wait_for_stderr(EXIT_GRACE).await;
                    return Err(self.error(format!(
                        "{} made no progress for {} after its input ended and was killed{}",
                        self.command.label,
                        streampub_core::plugin::HumanDuration(quiet_limit),
                        self.last_lines()
                    )));
                }
            }
        };
        self.wait_for_stderr(EXIT_GRACE).await;
        Ok(Exit {
            status,
            last_lines: self.command.redactor.redact(&self.last_lines()),
            permanent: self.permanent_failure(),
        })
    }

    /// Kills the process (after a failure, before a new session).
    pub(crate) async fn kill(mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill().await;
        self.wait_for_stderr(EXIT_GRACE).await;
    }

    /// Waits (at most `limit`) until every stderr line of the exited process is read.
    async fn wait_for_stderr(&mut self, limit: Duration) {
        if let Some(reader) = &mut self.stderr_reader {
            if tokio::time::timeout(limit, reader).await.is_ok() {
                self.stderr_reader = None;
            }
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.command.label
    }

    /// Describes why the process stopped taking input: its exit status if it has one (waiting
    /// briefly for it), and its last stderr lines. A process that stalled is alive: it is
    /// killed first, so that nothing waits for it.
    async fn failure(&mut self, what: &str, error: &io::Error) -> SinkError {
        if error.kind() == io::ErrorKind::TimedOut {
            let _ = self.child.start_kill();
        }
        let status = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await;
        let exit = match status {
            Ok(Ok(status)) => {
                // Its stderr is complete once it has exited.
                self.wait_for_stderr(EXIT_GRACE).await;
                format!(", {}", describe_exit(status))
            }
            _ => String::new(),
        };
        let message = format!(
            "{} failed: {what}{exit}{}",
            self.command.label,
            self.last_lines()
        );
        self.error(message)
    }

    /// The error for a failure described by `message`: fatal, with the way out, if the process
    /// said why no new session can succeed; else retryable. Redacted.
    fn error(&self, message: String) -> SinkError {
        let message = self.command.redactor.redact(&message);
        failure_error(
            &self.command.label,
            self.permanent_failure().as_ref(),
            message,
        )
    }

    /// The first stderr line that showed a failure no new session can cure, and the way out.
    fn permanent_failure(&self) -> Option<(String, &'static str)> {
        self.stderr.lock().expect("stderr lock").permanent.clone()
    }

    fn last_lines(&self) -> String {
        let stderr = self.stderr.lock().expect("stderr lock");
        if stderr.tail.is_empty() {
            return String::new();
        }
        format!(
            "; its last lines: {}",
            stderr.tail.iter().cloned().collect::<Vec<_>>().join(" | ")
        )
    }
}

pub(crate) fn describe_exit(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("killed by signal {}", status.signal().unwrap_or_default())
        }
    }
}

/// Logs each stderr line, redacted, and keeps the last ones and the first that shows a
/// permanent failure; progress lines update `progress` instead.
async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    command: ProcessCommand,
    record: Arc<Mutex<StderrRecord>>,
    progress: Arc<OutputProgress>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if command.progress.is_some() && progress.observe(line.trim()) {
            continue;
        }
        let line = command.redactor.redact(line.trim_end());
        if line.is_empty() {
            continue;
        }
        let level = command.dialect.level(&line);
        let pipeline = command.pipeline.as_str();
        let label = command.label.as_str();
        // `event`, `program` and `line` let log readers pick the process's own words.
        macro_rules! log_line {
            ($log:ident) => {
                tracing::$log!(event = "process_stderr", pipeline, program = label, line = %line, "{label}: {line}")
            };
        }
        match level {
            Level::ERROR => log_line!(error),
            Level::WARN => log_line!(warn),
            Level::INFO => log_line!(info),
            _ => log_line!(debug),
        }
        let mut record = record.lock().expect("stderr lock");
        if record.permanent.is_none() {
            if let Some(remedy) = command.dialect.permanent_failure(&line) {
                record.permanent = Some((line.clone(), remedy));
            }
        }
        if record.tail.len() == STDERR_TAIL_LINES {
            record.tail.pop_front();
        }
        record.tail.push_back(line);
    }
}

/// Grows the stdin pipe so the process has a buffer to read from while we read the next chunk.
fn set_pipe_size(stdin: &ChildStdin, size: usize, command: &ProcessCommand) {
    if let Err(error) = rustix::pipe::fcntl_setpipe_size(stdin, size) {
        tracing::warn!(
            pipeline = %command.pipeline,
            sink = command.sink.as_deref(),
            "Cannot set the {} stdin pipe to {size} bytes ({error}); see /proc/sys/fs/pipe-max-size",
            command.label,
        );
    }
}
