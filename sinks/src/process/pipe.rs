//! Writing into the process's stdin pipe without ever waiting on a stopped process for longer
//! than `stall_timeout`: what counts as progress is the process taking input or reporting more
//! output (ffmpeg with `-re` rightly takes no input for seconds while it plays out what it
//! buffered, but its output goes on).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use streampub_core::plugin::FileRange;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;

use super::progress::OutputProgress;

/// The error of a write that made no progress for `limit`.
fn stalled(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the process took no input for {} (stall_timeout): it stopped reading",
            streampub_core::plugin::HumanDuration(limit)
        ),
    )
}

/// Writes some of `bytes`; fails once the process has for `limit` neither taken input nor
/// reported more output.
pub(crate) async fn write_unless_stalled(
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
pub(crate) fn splice_all(
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
pub(crate) fn unread_bytes(pipe: impl AsFd) -> io::Result<usize> {
    let unread = rustix::io::ioctl_fionread(pipe)?;
    Ok(usize::try_from(unread).unwrap_or(usize::MAX))
}
