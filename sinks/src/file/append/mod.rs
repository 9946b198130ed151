//! `mode: append`: every fragment onto the end of one file, the archive of a stream.
//!
//! The sink owns the file's tail. After each fragment it reports, for the pipeline's
//! checkpoint, the length the archive has and the bytes just before that length. On start it
//! compares the file with what was saved: anything beyond the saved length (a fragment cut short
//! by a crash, or one written but never acknowledged) is cut off, and a file that is shorter,
//! missing or different at the recorded tail was changed outside streampub and is refused.
//! If a fragment fails half-way (unreadable input, a stage rejected it, the disk filled up), the
//! file is cut back to where that fragment began, so the archive never holds half a fragment.
//!
//! When the stream changes (a stage found a new codec configuration or picture size), the
//! archive continues in a new file, so that each file is one playable stream: `archive.mp4`,
//! then `archive.1.mp4`, `archive.2.mp4`, … (the number goes before the extension).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    async_trait, Bytes, FragmentInfo, ResumeFrom, SessionReason, Sink, SinkError,
};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tracing::{info, warn};

use super::file_errors::{create_parent, io_error};

/// How many bytes before the recorded length are kept to recognise the file on the next start.
const TAIL_BYTES: usize = 64;

/// What the pipeline's checkpoint keeps of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ArchiveState {
    /// Which file of the archive is being written: 0 for the configured path, `n` for the
    /// `n`-th continuation after a stream change.
    #[serde(default)]
    part: u32,
    /// The archive's length after the last acknowledged fragment.
    length: u64,
    /// The bytes just before `length` (at most [`TAIL_BYTES`]), in hexadecimal.
    #[serde(with = "hex")]
    tail: Vec<u8>,
}

pub(super) struct AppendFileSink {
    /// The configured path: the archive's first file.
    base_path: PathBuf,
    /// The file being written: `base_path`, or a continuation of it.
    path: PathBuf,
    fsync: bool,
    /// Opened at the first fragment, so a path problem fails that fragment (unacknowledged).
    file: Option<File>,
    /// The archive's length and last bytes now, and when the current fragment began (where to
    /// cut back to on failure).
    now: ArchiveState,
    fragment_start: ArchiveState,
}

impl AppendFileSink {
    pub(super) fn new(path: PathBuf, fsync: bool) -> Self {
        let empty = ArchiveState {
            part: 0,
            length: 0,
            tail: Vec::new(),
        };
        Self {
            base_path: path.clone(),
            path,
            fsync,
            file: None,
            now: empty.clone(),
            fragment_start: empty,
        }
    }

    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("begin_fragment opens the file")
    }

    /// Cuts the file back to where the current fragment began.
    async fn roll_back(&mut self) -> Result<(), SinkError> {
        let start = self.fragment_start.clone();
        let file = self.file();
        let _ = file.flush().await;
        let truncated = file.set_len(start.length).await;
        self.now = start;
        truncated
            .map_err(|error| io_error("cannot remove a partial fragment from", &self.path, error))
    }

    /// The archive's length, or `None` if there is no file.
    async fn length_on_disk(&self) -> Result<Option<u64>, SinkError> {
        match tokio::fs::metadata(&self.path).await {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error("cannot stat", &self.path, error)),
        }
    }

    /// Reads the bytes of the file that end at `end` (at most [`TAIL_BYTES`]).
    async fn read_tail(&self, end: u64) -> Result<Vec<u8>, SinkError> {
        let start = end.saturating_sub(TAIL_BYTES as u64);
        let mut file = File::open(&self.path)
            .await
            .map_err(|error| io_error("cannot open", &self.path, error))?;
        let mut tail = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|error| io_error("cannot read", &self.path, error))?;
        file.read_exact(&mut tail)
            .await
            .map_err(|error| io_error("cannot read", &self.path, error))?;
        Ok(tail)
    }

    /// Makes the file what `saved` describes: cuts off what lies beyond it, refuses a file
    /// that does not match it.
    async fn restore(&mut self, saved: ArchiveState) -> Result<(), SinkError> {
        self.path = part_path(&self.base_path, saved.part);
        let refuse = |problem: String| {
            SinkError::fatal(format!(
                "the archive {} {problem}, so it was changed outside streampub and appending \
                 could corrupt it; put the original back, or move it away and remove the \
                 pipeline's state file (<state_dir>/<pipeline>/pipeline.json) to start a new \
                 archive",
                self.path.display()
            ))
        };
        let length = match self.length_on_disk().await? {
            // Saved before its first byte: the run that saved it stopped before writing one.
            None if saved.length == 0 => {
                self.now = saved;
                return Ok(());
            }
            None => {
                return Err(refuse(format!(
                    "is missing, but the pipeline's state records {} bytes published into it",
                    saved.length
                )))
            }
            Some(length) if length < saved.length => {
                return Err(refuse(format!(
                    "has {length} bytes, fewer than the {} the pipeline's state records",
                    saved.length
                )))
            }
            Some(length) => length,
        };
        if self.read_tail(saved.length).await? != saved.tail {
            return Err(refuse(format!(
                "does not end, at byte {}, with the bytes the pipeline's state records",
                saved.length
            )));
        }
        if length > saved.length {
            let file = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .await
                .map_err(|error| io_error("cannot open", &self.path, error))?;
            file.set_len(saved.length)
                .await
                .map_err(|error| io_error("cannot truncate", &self.path, error))?;
            file.sync_all()
                .await
                .map_err(|error| io_error("cannot truncate", &self.path, error))?;
            warn!(
                event = "archive_truncated",
                path = %self.path.display(),
                dropped_bytes = length - saved.length,
                length = saved.length,
                "Cut {} bytes off the end of {}: a fragment written after the last acknowledged \
                 one (it is published again)",
                length - saved.length,
                self.path.display()
            );
        }
        self.now = saved;
        Ok(())
    }
}

#[async_trait]
impl Sink for AppendFileSink {
    async fn resume(&mut self, from: ResumeFrom) -> Result<bool, SinkError> {
        match from {
            // Nothing is remembered: appends to whatever the file holds.
            ResumeFrom::Nothing => Ok(false),
            ResumeFrom::Start => match self.length_on_disk().await? {
                Some(length) if length > 0 => Err(SinkError::fatal(format!(
                    "the archive {} already holds {length} bytes, but the pipeline has no state \
                     for it, so a restart cannot tell what it holds; move it away to start a \
                     new archive, or restore the pipeline's state directory",
                    self.path.display()
                ))),
                _ => Ok(false),
            },
            ResumeFrom::Saved(state) => {
                let saved: ArchiveState = serde_json::from_value(state).map_err(|error| {
                    SinkError::fatal(format!(
                        "the pipeline's saved state for {} is not an archive state ({error})",
                        self.path.display()
                    ))
                })?;
                self.restore(saved).await?;
                Ok(true)
            }
        }
    }

    fn checkpoint(&self) -> Option<serde_json::Value> {
        Some(serde_json::to_value(&self.now).expect("plain data"))
    }

    async fn begin_fragment(&mut self, _fragment: &FragmentInfo) -> Result<(), SinkError> {
        if self.file.is_none() {
            create_parent(&self.path).await?;
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await;
            let file = opened.map_err(|error| io_error("cannot open", &self.path, error))?;
            let length = file.metadata().await.map(|metadata| metadata.len());
            let length = length.map_err(|error| io_error("cannot stat", &self.path, error))?;
            if length != self.now.length {
                // Without saved state (no `state_dir`) the archive is appended to as it is.
                self.now = ArchiveState {
                    part: self.now.part,
                    length,
                    tail: self.read_tail(length).await?,
                };
            }
            self.file = Some(file);
        }
        self.fragment_start = self.now.clone();
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        // Flushed chunk by chunk: tokio's `write_all` returns while the write still runs on a
        // blocking thread, and a sink dropped then (shutdown, reload, a restart of the lane)
        // would let that write land after its successor has cut the file back.
        let file = self.file();
        let written = match file.write_all(&chunk).await {
            Ok(()) => file.flush().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            let _ = self.roll_back().await;
            return Err(io_error("cannot write", &self.path, error));
        }
        self.now.length += chunk.len() as u64;
        let tail = &mut self.now.tail;
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(TAIL_BYTES)..]);
        let excess = tail.len().saturating_sub(TAIL_BYTES);
        tail.drain(..excess);
        Ok(())
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        let fsync = self.fsync;
        let file = self.file();
        let mut result = file.flush().await;
        if fsync && result.is_ok() {
            result = file.sync_data().await;
        }
        if let Err(error) = result {
            let _ = self.roll_back().await;
            return Err(io_error("cannot write", &self.path, error));
        }
        Ok(())
    }

    async fn abort_fragment(&mut self) -> Result<(), SinkError> {
        self.roll_back().await
    }

    /// A changed stream continues in the archive's next file (nothing is resent, and what was
    /// written is already flushed fragment by fragment).
    async fn start_session(&mut self, reason: SessionReason) -> Result<(), SinkError> {
        let SessionReason::StreamChanged { change } = reason else {
            return Ok(());
        };
        if let Some(file) = self.file.take() {
            let mut file = file;
            let mut closed = file.flush().await;
            if self.fsync && closed.is_ok() {
                closed = file.sync_data().await;
            }
            closed.map_err(|error| io_error("cannot write", &self.path, error))?;
        }
        let previous = std::mem::replace(
            &mut self.path,
            part_path(&self.base_path, self.now.part + 1),
        );
        // Whatever the next file holds was never acknowledged (a run that stopped after
        // switching): it starts empty.
        match tokio::fs::remove_file(&self.path).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("cannot replace", &self.path, error))
            }
            _ => {}
        }
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await;
        self.file = Some(opened.map_err(|error| io_error("cannot open", &self.path, error))?);
        self.now = ArchiveState {
            part: self.now.part + 1,
            length: 0,
            tail: Vec::new(),
        };
        self.fragment_start = self.now.clone();
        info!(
            event = "archive_continued",
            path = %self.path.display(),
            previous = %previous.display(),
            change = %change,
            "The stream changed ({change}): the archive continues in {}",
            self.path.display()
        );
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if let Some(file) = &mut self.file {
            let flushed = file.flush().await;
            flushed.map_err(|error| io_error("cannot write", &self.path, error))?;
        }
        Ok(())
    }
}

/// The archive's file number `part`: the configured path for 0, else the number before the
/// extension (`archive.mp4` → `archive.2.mp4`; `archive` → `archive.2`).
fn part_path(base: &Path, part: u32) -> PathBuf {
    if part == 0 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().unwrap_or_default().to_string_lossy();
    let name = match base.extension() {
        Some(extension) => format!("{stem}.{part}.{}", extension.to_string_lossy()),
        None => format!("{stem}.{part}"),
    };
    base.with_file_name(name)
}

#[cfg(test)]
mod tests;
