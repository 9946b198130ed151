//! One run of a child process that reads fragments from its stdin.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streampub_core::{FileRange, Redactor, SinkError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;
use tracing::{info, Level};

/// How many of the process's last stderr lines are kept for error messages.
const STDERR_TAIL_LINES: usize = 12;
/// How long a failed write waits for the process to exit, to report its status and last words.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// What to run and how to talk about it.
#[derive(Debug, Clone)]
pub(crate) struct ProcessCommand {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    /// How logs and errors name the process: `ffmpeg`, or the program's name.
    pub(crate) label: String,
    pub(crate) pipeline: String,
    /// Secrets (a stream key) to keep out of every log line and error.
    pub(crate) redactor: Redactor,
    /// Capacity to set on the stdin pipe (`F_SETPIPE_SZ`).
    pub(crate) pipe_buffer: Option<usize>,
    /// A write into stdin that makes no progress for this long fails the session; `None`
    /// waits for ever.
    pub(crate) stall_timeout: Option<Duration>,
    /// A file the process's stdout is appended to; discarded when `None`.
    pub(crate) stdout: Option<PathBuf>,
    /// The level each stderr line is logged at.
    pub(crate) stderr_level: fn(&str) -> Level,
    /// The process reports its output progress on stderr (ffmpeg's `-progress pipe:2`): a
    /// fragment then counts as taken only once the session has started writing output, not
    /// merely once the process has read it (ffmpeg reads ahead while it probes and connects).
    pub(crate) reports_progress: bool,
    /// How far the process may read ahead of what it has really output: a fragment is
    /// confirmed once the process has read this many bytes beyond its end.
    pub(crate) read_ahead: u64,
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
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Reads stderr until the process closes it; `None` once it has finished.
    stderr_reader: Option<JoinHandle<()>>,
    /// Output progress, when the process reports it.
    progress: Arc<OutputProgress>,
    /// Bytes written into stdin so far.
    written: u64,
}

/// What the process reported of its output: bytes written so far, and a signal per report.
#[derive(Debug, Default)]
pub(crate) struct OutputProgress {
    total_size: std::sync::atomic::AtomicU64,
    report: tokio::sync::Notify,
}

/// The keys of ffmpeg's `-progress` blocks; such lines are progress, not log lines.
const PROGRESS_KEYS: &[&str] = &[
    "frame",
    "fps",
    "bitrate",
    "total_size",
    "out_time_us",
    "out_time_ms",
    "out_time",
    "dup_frames",
    "drop_frames",
    "speed",
    "progress",
];

impl OutputProgress {
    /// Takes a stderr line; returns whether it was a progress line.
    fn observe(&self, line: &str) -> bool {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        if !(PROGRESS_KEYS.contains(&key) || key.starts_with("stream_")) {
            return false;
        }
        if key == "total_size" {
            if let Ok(size) = value.trim().parse::<u64>() {
                self.total_size
                    .store(size, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if key == "progress" {
            self.report.notify_waiters();
        }
        true
    }

    fn output_started(&self) -> bool {
        self.output_bytes() > 0
    }

    /// Bytes of output the process last reported.
    fn output_bytes(&self) -> u64 {
        self.total_size.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ProcessSession {
    /// Starts the process with stdin piped, stdout to its file (or discarded) and stderr logged.
    pub(crate) fn spawn(command: &ProcessCommand) -> Result<Self, SinkError> {
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
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: prctl(PR_SET_PDEATHSIG) is one, and it touches
        // no memory of the parent. It makes the child die with the thread that spawned it (a
        // runtime worker, alive as long as streampub), so a killed streampub leaves no orphan.
        unsafe {
            process.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(io::Error::from)
            });
        }
        let mut child = process.spawn().map_err(|error| {
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
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let progress = Arc::new(OutputProgress::default());
        let stderr_reader = tokio::spawn(read_stderr(
            stderr,
            command.clone(),
            Arc::clone(&stderr_tail),
            Arc::clone(&progress),
        ));
        info!(
            event = "process_started",
            pipeline = %command.pipeline,
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
            stderr_tail,
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
        !self.command.reports_progress || self.progress.output_started()
    }

    /// Closes stdin and waits for the process to finish; returns how it exited and its last
    /// stderr lines (for an error message, redacted). It is killed once it has gone
    /// `quiet_limit` without finishing or, when it reports progress, without progress (with
    /// `-re`, ffmpeg rightly takes as long as the media it still holds).
    pub(crate) async fn finish(
        mut self,
        quiet_limit: Duration,
    ) -> Result<(ExitStatus, String), SinkError> {
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
                    return Err(SinkError::retryable(format!(
                        "{} made no progress for {:?} after its input ended and was killed{}",
                        self.command.label,
                        quiet_limit,
                        self.last_lines()
                    )));
                }
            }
        };
        self.wait_for_stderr(EXIT_GRACE).await;
        Ok((status, self.command.redactor.redact(&self.last_lines())))
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
        SinkError::retryable(self.command.redactor.redact(&message))
    }

    fn last_lines(&self) -> String {
        let tail = self.stderr_tail.lock().expect("stderr tail lock");
        if tail.is_empty() {
            return String::new();
        }
        format!(
            "; its last lines: {}",
            tail.iter().cloned().collect::<Vec<_>>().join(" | ")
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

/// Logs each stderr line, redacted, and keeps the last ones.
async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    command: ProcessCommand,
    tail: Arc<Mutex<VecDeque<String>>>,
    progress: Arc<OutputProgress>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if command.reports_progress && progress.observe(line.trim()) {
            continue;
        }
        let line = command.redactor.redact(line.trim_end());
        if line.is_empty() {
            continue;
        }
        let level = (command.stderr_level)(&line);
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
        let mut tail = tail.lock().expect("stderr tail lock");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// The error of a write that made no progress for `limit`.
fn stalled(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the process took no input for {} (stall_timeout): it stopped reading",
            streampub_core::HumanDuration(limit)
        ),
    )
}

/// Writes some of `bytes`; fails once the process has for `limit` neither taken input nor
/// reported more output.
async fn write_unless_stalled(
    stdin: &mut ChildStdin,
    bytes: &[u8],
    limit: Duration,
    progress: &OutputProgress,
) -> io::Result<usize> {
    let mut output = progress.output_bytes();
    let mut deadline = tokio::time::Instant::now() + limit;
    loop {
        let report = progress.report.notified();
        tokio::select! {
            written = stdin.write(bytes) => return written,
            () = report => {
                if progress.output_bytes() > output {
                    output = progress.output_bytes();
                    deadline = tokio::time::Instant::now() + limit;
                }
            }
            () = tokio::time::sleep_until(deadline) => return Err(stalled(limit)),
        }
    }
}

/// Splices all of `range` into `pipe` (non-blocking, as Tokio set it up), polling while the
/// pipe is full; with `stall`, not longer than its limit without the process taking input or
/// reporting more output. Returns the bytes moved.
fn splice_all(
    range: &FileRange,
    pipe: &OwnedFd,
    stall: Option<(Duration, Arc<OutputProgress>)>,
) -> io::Result<usize> {
    use rustix::pipe::{splice, SpliceFlags};
    let mut offset = range.offset;
    let mut left = range.length;
    while left > 0 {
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        match splice(&*range.file, Some(&mut offset), pipe, None, left, flags) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the fragment's file is shorter than when it was opened",
                ))
            }
            Ok(moved) => left -= moved,
            Err(rustix::io::Errno::AGAIN) => wait_writable(pipe, stall.as_ref())?,
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(range.length)
}

/// Blocks until the pipe has room (or its reader is gone, which the next splice reports); with
/// `stall`, fails once the process has for its limit neither made room nor reported more
/// output.
fn wait_writable(
    pipe: &OwnedFd,
    stall: Option<&(Duration, Arc<OutputProgress>)>,
) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    // Without a limit, one wait; with one, short waits between which output progress is read.
    const LOOK_EVERY: Timespec = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let Some((limit, progress)) = stall else {
        let mut fds = [PollFd::new(pipe, PollFlags::OUT)];
        return match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(error) => Err(error.into()),
        };
    };
    let mut output = progress.output_bytes();
    let mut deadline = std::time::Instant::now() + *limit;
    loop {
        let mut fds = [PollFd::new(pipe, PollFlags::OUT)];
        match poll(&mut fds, Some(&LOOK_EVERY)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        if progress.output_bytes() > output {
            output = progress.output_bytes();
            deadline = std::time::Instant::now() + *limit;
        } else if std::time::Instant::now() >= deadline {
            return Err(stalled(*limit));
        }
    }
}

/// Bytes written into the pipe and not yet read by the process (FIONREAD counts what a pipe
/// buffers, from either end).
fn unread_bytes(pipe: impl AsFd) -> io::Result<usize> {
    let unread = rustix::io::ioctl_fionread(pipe)?;
    Ok(usize::try_from(unread).unwrap_or(usize::MAX))
}

/// Grows the stdin pipe so the process has a buffer to read from while we read the next chunk.
fn set_pipe_size(stdin: &ChildStdin, size: usize, command: &ProcessCommand) {
    if let Err(error) = rustix::pipe::fcntl_setpipe_size(stdin, size) {
        tracing::warn!(
            pipeline = %command.pipeline,
            "Cannot set the {} stdin pipe to {size} bytes ({error}); see /proc/sys/fs/pipe-max-size",
            command.label,
        );
    }
}
