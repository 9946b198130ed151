//! Making a stage's clip with ffmpeg on a thread of its own, and keeping it. A fill never
//! waits for it: while the clip is being made, a fill has nothing to play yet and says so, and
//! the runtime asks again at its next step (core's contract: stage calls never block).
//!
//! The process makes as many clips at once as it has CPUs: 200 channels that start together
//! would otherwise start 200 encoders on two cores, and those at the back would run out of
//! their time. A clip's time counts from when its ffmpeg starts, not from when it was asked
//! for, and an ffmpeg past its time is killed, so a hung one cannot hold the queue.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streampub_core::plugin::{die_with_parent, FillerSource};

use super::clip_arguments::{ffmpeg_args, ClipContainer};
use crate::stream_shape::StreamShape;

/// How long a clip may take to make before fills fail for it.
const MAKING_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum ClipState<T> {
    NotStarted,
    Making {
        receiver: mpsc::Receiver<Progress<T>>,
        /// When its ffmpeg started (`None` while it waits for its turn).
        since: Option<Instant>,
    },
    Ready(T),
    Failed(String),
}

/// What the thread making a clip reports.
#[derive(Debug)]
enum Progress<T> {
    /// Its turn came: ffmpeg runs.
    Started,
    Done(Result<T, String>),
}

/// The clips being made in the process, and how many may be at once.
struct MakingSlots {
    busy: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

static MAKING_SLOTS: LazyLock<MakingSlots> = LazyLock::new(|| MakingSlots {
    busy: Mutex::new(0),
    freed: Condvar::new(),
    limit: std::thread::available_parallelism().map_or(2, usize::from),
});

/// A clip's turn to be made; the next one's comes when it is dropped.
struct MakingSlot;

impl MakingSlot {
    fn wait() -> Self {
        let slots = &*MAKING_SLOTS;
        let mut busy = slots
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *busy >= slots.limit {
            busy = slots
                .freed
                .wait(busy)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *busy += 1;
        Self
    }
}

impl Drop for MakingSlot {
    fn drop(&mut self) {
        let slots = &*MAKING_SLOTS;
        *slots
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) -= 1;
        slots.freed.notify_one();
    }
}

/// Makes one stage's clip (of type `T`, the clip as the stage plays it) and keeps it.
#[derive(Debug)]
pub(crate) struct ClipMaker<T> {
    source: FillerSource,
    ffmpeg: PathBuf,
    state: ClipState<T>,
}

impl<T: Send + 'static> ClipMaker<T> {
    pub(crate) fn new(source: FillerSource, ffmpeg: PathBuf) -> Self {
        Self {
            source,
            ffmpeg,
            state: ClipState::NotStarted,
        }
    }

    /// Whether the clip still has to be made for the stream.
    pub(crate) fn wants_shape(&self) -> bool {
        self.source != FillerSource::None && matches!(self.state, ClipState::NotStarted)
    }

    /// Starts making the clip for a stream of `shape` as `container`, read by `read`, in the
    /// background.
    pub(crate) fn prepare(
        &mut self,
        shape: StreamShape,
        container: ClipContainer,
        read: fn(Bytes, &StreamShape) -> Result<T, String>,
    ) {
        if let Err(problem) = check_fillable(&shape) {
            self.state = ClipState::Failed(problem);
            return;
        }
        let (sender, receiver) = mpsc::channel();
        let (source, ffmpeg) = (self.source.clone(), self.ffmpeg.clone());
        std::thread::spawn(move || {
            let _slot = MakingSlot::wait();
            // Nobody wants the clip any more (the stream changed, the stage is gone).
            if sender.send(Progress::Started).is_err() {
                return;
            }
            let clip = make_clip(&source, &ffmpeg, &shape, container, read);
            let _ = sender.send(Progress::Done(clip));
        });
        self.state = ClipState::Making {
            receiver,
            since: None,
        };
    }

    /// The stream is one no clip can match (`problem` says why): each fill fails with it.
    pub(crate) fn cannot_match(&mut self, problem: String) {
        self.state = ClipState::Failed(problem);
    }

    /// The stream changed: the clip is made again for the new one when its shape is known.
    pub(crate) fn forget(&mut self) {
        self.state = ClipState::NotStarted;
    }

    /// The clip, if it is made.
    pub(crate) fn clip(&self) -> Option<&T> {
        match &self.state {
            ClipState::Ready(clip) => Some(clip),
            _ => None,
        }
    }

    /// Waits (a minute at most) for the clip being made: for tests that fill at once.
    #[cfg(test)]
    pub(crate) fn wait_until_made(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(self.ready(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The clip; `None` while it is still being made (without waiting for it); why there is
    /// none otherwise.
    pub(crate) fn ready(&mut self) -> Result<Option<&T>, String> {
        while let ClipState::Making { receiver, since } = &mut self.state {
            match receiver.try_recv() {
                Ok(Progress::Started) => *since = Some(Instant::now()),
                Ok(Progress::Done(Ok(clip))) => self.state = ClipState::Ready(clip),
                Ok(Progress::Done(Err(problem))) => self.state = ClipState::Failed(problem),
                // ffmpeg itself is killed at its time; this is the thread's own bound.
                Err(TryRecvError::Empty)
                    if since.is_some_and(|since| since.elapsed() > MAKING_TIMEOUT * 2) =>
                {
                    self.state = ClipState::Failed(format!(
                        "making the filler took more than {} s",
                        MAKING_TIMEOUT.as_secs()
                    ))
                }
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => {
                    self.state = ClipState::Failed("the thread making the filler died".to_owned())
                }
            }
        }
        match &self.state {
            ClipState::Ready(clip) => Ok(Some(clip)),
            ClipState::Failed(problem) => Err(problem.clone()),
            ClipState::NotStarted if self.source == FillerSource::None => Err(
                "the stage has `filler: none` (a pipeline that lists the stage itself sets \
                 `filler` on it)"
                    .to_owned(),
            ),
            ClipState::NotStarted | ClipState::Making { .. } => {
                Err("the stream's shape is not known yet".to_owned())
            }
        }
    }
}

/// Makes the clip with ffmpeg as `container` and reads it with `read`.
fn make_clip<T>(
    source: &FillerSource,
    ffmpeg: &Path,
    shape: &StreamShape,
    container: ClipContainer,
    read: fn(Bytes, &StreamShape) -> Result<T, String>,
) -> Result<T, String> {
    let what = match source {
        FillerSource::File(path) => format!("filler {}", path.display()),
        _ => "the generated filler".to_owned(),
    };
    let args = ffmpeg_args(source, shape, container);
    let mut command = Command::new(ffmpeg);
    command.args(&args).stdin(Stdio::null());
    // SAFETY: `die_with_parent` only makes async-signal-safe calls in the child. The thread
    // that forks it waits for it, so ffmpeg dies with streampub and not before.
    unsafe {
        command.pre_exec(die_with_parent());
    }
    let output = run_within(&mut command, MAKING_TIMEOUT)
        .map_err(|error| format!("{what}: cannot run {}: {error}", ffmpeg.display()))?
        .ok_or_else(|| {
            format!(
                "{what} could not be made: ffmpeg took more than {} s and was stopped",
                MAKING_TIMEOUT.as_secs()
            )
        })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{what} could not be made ({}); ffmpeg said: {}",
            output.status,
            said.trim()
        ));
    }
    read(Bytes::from(output.stdout), shape).map_err(|problem| format!("{what}: {problem}"))
}

/// Runs `command` to its end, its output collected; `None` if it ran longer than `timeout`
/// (it is then killed).
fn run_within(command: &mut Command, timeout: Duration) -> std::io::Result<Option<Output>> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read on threads of their own, so that a full pipe never stops ffmpeg.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Some(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
}

/// Why no clip can match the stream, if none can: the field that stands in the way and what to
/// do (checked before ffmpeg is asked for one).
fn check_fillable(shape: &StreamShape) -> Result<(), String> {
    match shape
        .audio
        .as_ref()
        .and_then(|audio| audio.config.lc_frames_cannot_play())
    {
        Some(problem) => Err(format!("{problem}, or set `filler: none`")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn no_more_clips_are_made_at_once_than_the_process_has_cpus() {
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let makers: Vec<_> = (0..MAKING_SLOTS.limit + 4)
            .map(|_| {
                let (now, most) = (Arc::clone(&now), Arc::clone(&most));
                std::thread::spawn(move || {
                    let _slot = MakingSlot::wait();
                    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(running, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        makers.into_iter().for_each(|maker| maker.join().unwrap());
        // Other tests may hold slots meanwhile: at most the limit, never more.
        let most = most.load(Ordering::SeqCst);
        assert!((1..=MAKING_SLOTS.limit).contains(&most), "{most} at once");
    }

    #[test]
    fn an_ffmpeg_past_its_time_is_stopped_and_one_within_it_gives_its_output() {
        let started = Instant::now();
        let mut hung = Command::new("sleep");
        hung.arg("30");
        assert!(run_within(&mut hung, Duration::from_millis(200))
            .unwrap()
            .is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut quick = Command::new("echo");
        quick.arg("clip");
        let output = run_within(&mut quick, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(output.stdout, b"clip\n");
    }
}
