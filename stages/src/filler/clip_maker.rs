//! Making a stage's clip with ffmpeg on a thread of its own, and keeping it. A fill never
//! waits for it: while the clip is being made, a fill has nothing to play yet and says so, and
//! the runtime asks again at its next step (core's contract: stage calls never block).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, TryRecvError};
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
        receiver: mpsc::Receiver<Result<T, String>>,
        since: Instant,
    },
    Ready(T),
    Failed(String),
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
            let _ = sender.send(make_clip(&source, &ffmpeg, &shape, container, read));
        });
        self.state = ClipState::Making {
            receiver,
            since: Instant::now(),
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
        if let ClipState::Making { receiver, since } = &self.state {
            match receiver.try_recv() {
                Ok(Ok(clip)) => self.state = ClipState::Ready(clip),
                Ok(Err(problem)) => self.state = ClipState::Failed(problem),
                Err(TryRecvError::Empty) if since.elapsed() < MAKING_TIMEOUT => return Ok(None),
                Err(TryRecvError::Empty) => {
                    self.state = ClipState::Failed(format!(
                        "making the filler took more than {} s",
                        MAKING_TIMEOUT.as_secs()
                    ))
                }
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
    let output = command
        .output()
        .map_err(|error| format!("{what}: cannot run {}: {error}", ffmpeg.display()))?;
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
