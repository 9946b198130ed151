//! The spool: where uploaded fragments wait, durably, until their sink has taken them.
//!
//! Layout of a spool directory (one per pipeline, locked while in use):
//! - `.upload-*`: bodies being received; removed when an upload fails, and on start.
//! - `NNNNNNNNNNNN.fragment`: complete uploads, named by sequence, deleted once published.
//! - `journal.jsonl`: one JSON [`Record`] per line, appended (and synced) when a fragment is
//!   spooled, published or failed; the last line for a name wins. Rewritten compactly on start.
//!
//! An upload is answered `201` only after its file is synced and renamed into place, the
//! directory synced, and its journal line synced: from then on a crash cannot lose it.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use streampub_core::plugin::{replace_file, sync_directory};
use tokio::sync::mpsc;

const JOURNAL: &str = "journal.jsonl";
const LOCK: &str = ".lock";
/// Prefix of the files uploads are received into.
pub(super) const UPLOAD_PREFIX: &str = ".upload-";
const FRAGMENT_SUFFIX: &str = ".fragment";

/// Where an uploaded fragment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FragmentState {
    /// Stored in the spool, waiting for its turn.
    Spooled,
    /// Handed to the pipeline, not yet fully taken by the sink (never written to the journal).
    Publishing,
    /// The sink has fully taken it; its spool file is gone.
    Published,
    /// The pipeline could not publish it; it is tried again on the next start.
    Failed,
}

/// What the spool knows about one uploaded fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) sequence: u64,
    pub(crate) name: String,
    pub(crate) bytes: u64,
    /// Hex SHA-256 of the body, to tell an identical re-upload from a different one.
    pub(crate) sha256: String,
    pub(crate) state: FragmentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("cannot use spool directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "spool directory {path} is in use by another pipeline or streampub process; \
         give each pipeline its own `spool_dir`"
    )]
    Locked { path: PathBuf },
    #[error("the spool journal {path} is corrupt at line {line} ({source}); move the spool directory away to start empty")]
    Corrupt {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// Why an upload cannot start.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A fragment of this name exists: the upload is compared with it, never published.
    Existing(Record),
    /// Another upload of this name is being received.
    InProgress,
    /// `fragment_buffer_size + spool_limit` fragments wait to be published.
    BacklogFull,
    /// Go ahead; the slot is released if the upload does not commit.
    Admitted(UploadSlot),
}

/// A reserved place in the backlog for one upload in progress.
#[derive(Debug)]
pub(crate) struct UploadSlot {
    spool: Arc<Spool>,
    name: String,
    committed: bool,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if !self.committed {
            let mut state = self.spool.state();
            state.uploading.remove(&self.name);
            state.backlog -= 1;
        }
    }
}

#[derive(Debug)]
struct SpoolState {
    records: HashMap<String, Record>,
    /// Names being uploaded right now.
    uploading: HashSet<String>,
    next_sequence: u64,
    /// Fragments not yet published or failed, uploads in progress included.
    backlog: usize,
}

/// A pipeline's spool directory.
#[derive(Debug)]
pub(crate) struct Spool {
    directory: PathBuf,
    backlog_limit: usize,
    /// Held for appends; also orders commits, so sequences reach the journal and the queue in
    /// the order they were given.
    journal: Mutex<File>,
    state: Mutex<SpoolState>,
    /// Committed fragments, in sequence order, for the source to publish.
    queue: mpsc::UnboundedSender<Record>,
    /// Locked while the spool is open.
    _lock: File,
}

impl Spool {
    /// Opens (creating) the spool, removes what earlier runs left half done, and queues the
    /// fragments that were spooled but not published (failed ones are tried again), in order.
    pub(crate) fn open(
        directory: &Path,
        backlog_limit: usize,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Record>), SpoolError> {
        let io_error = |source| SpoolError::Io {
            path: directory.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(directory).map_err(io_error)?;
        let lock = File::create(directory.join(LOCK)).map_err(io_error)?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked {
                path: directory.to_path_buf(),
            });
        }
        let mut records = read_journal(&directory.join(JOURNAL))?;
        let present = remove_leftovers(directory, &mut records).map_err(io_error)?;
        let journal = compact_journal(directory, &records).map_err(io_error)?;

        let mut pending: Vec<Record> = records
            .values()
            .filter(|record| present.contains(&record.sequence))
            .cloned()
            .collect();
        pending.sort_by_key(|record| record.sequence);
        let (queue, receiver) = mpsc::unbounded_channel();
        for record in &mut pending {
            record.state = FragmentState::Spooled;
            record.error = None;
            records.insert(record.name.clone(), record.clone());
            queue
                .send(record.clone())
                .expect("the receiver is held here");
        }
        let next_sequence = records.values().map(|r| r.sequence).max().unwrap_or(0) + 1;
        let spool = Self {
            directory: directory.to_path_buf(),
            backlog_limit,
            journal: Mutex::new(journal),
            state: Mutex::new(SpoolState {
                records,
                uploading: HashSet::new(),
                next_sequence,
                backlog: pending.len(),
            }),
            queue,
            _lock: lock,
        };
        Ok((Arc::new(spool), receiver))
    }

    pub(crate) fn directory(&self) -> &Path {
        &self.directory
    }

    /// Where a spooled fragment's body is.
    pub(crate) fn fragment_path(&self, sequence: u64) -> PathBuf {
        self.directory
            .join(format!("{sequence:012}{FRAGMENT_SUFFIX}"))
    }

    fn state(&self) -> MutexGuard<'_, SpoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// What the spool knows about `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Record> {
        self.state().records.get(name).cloned()
    }

    /// Decides whether an upload of `name` may start.
    pub(crate) fn admit(self: &Arc<Self>, name: &str) -> Admission {
        let mut state = self.state();
        if let Some(record) = state.records.get(name) {
            return Admission::Existing(record.clone());
        }
        if state.uploading.contains(name) {
            return Admission::InProgress;
        }
        if state.backlog >= self.backlog_limit {
            return Admission::BacklogFull;
        }
        state.uploading.insert(name.to_owned());
        state.backlog += 1;
        Admission::Admitted(UploadSlot {
            spool: Arc::clone(self),
            name: name.to_owned(),
            committed: false,
        })
    }

    /// Makes a received upload durable and queues it: renames its synced file into place,
    /// syncs the directory and journals it. Blocking.
    pub(crate) fn commit(
        &self,
        mut slot: UploadSlot,
        received: tempfile::TempPath,
        bytes: u64,
        sha256: String,
    ) -> io::Result<Record> {
        let mut journal = self
            .journal
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let sequence = {
            let mut state = self.state();
            state.next_sequence += 1;
            state.next_sequence - 1
        };
        let path = self.fragment_path(sequence);
        received.persist(&path).map_err(|error| error.error)?;
        let record = Record {
            sequence,
            name: slot.name.clone(),
            bytes,
            sha256,
            state: FragmentState::Spooled,
            error: None,
        };
        let journaled =
            sync_directory(&self.directory).and_then(|()| append(&mut journal, &record));
        if let Err(error) = journaled {
            // Not journaled means not accepted: the client is told and retries.
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
        slot.committed = true;
        let mut state = self.state();
        state.uploading.remove(&record.name);
        state.records.insert(record.name.clone(), record.clone());
        // The receiver lives as long as the source; after it stopped the fragment waits in
        // the spool for the next start.
        let _ = self.queue.send(record.clone());
        Ok(record)
    }

    /// The fragment was handed to the pipeline.
    pub(crate) fn publishing(&self, name: &str) {
        self.set_state(name, FragmentState::Publishing, None);
    }

    /// The pipeline dropped the fragment before delivering it (shutdown): it stays spooled for
    /// the next start.
    pub(crate) fn abandoned(&self, name: &str) {
        self.set_state(name, FragmentState::Spooled, None);
    }

    /// The sink has fully taken the fragment: journals that, then deletes its file. Blocking.
    pub(crate) fn published(&self, record: &Record) -> io::Result<()> {
        self.finish(record, FragmentState::Published, None)?;
        std::fs::remove_file(self.fragment_path(record.sequence))
    }

    /// The pipeline could not publish the fragment; its file stays for the next start.
    /// Blocking.
    pub(crate) fn failed(&self, record: &Record, error: &str) -> io::Result<()> {
        self.finish(record, FragmentState::Failed, Some(error.to_owned()))
    }

    fn finish(
        &self,
        record: &Record,
        state: FragmentState,
        error: Option<String>,
    ) -> io::Result<()> {
        let mut journal = self
            .journal
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.set_state(&record.name, state, error.clone());
        self.state().backlog -= 1;
        let finished = Record {
            state,
            error,
            ..record.clone()
        };
        append(&mut journal, &finished)
    }

    fn set_state(&self, name: &str, new_state: FragmentState, error: Option<String>) {
        if let Some(record) = self.state().records.get_mut(name) {
            record.state = new_state;
            record.error = error;
        }
    }
}

/// Opens the spool in `directory` as a start does (its journal read, cleaned and compacted),
/// for the fuzz targets in `fuzz/`: the sequences queued for publishing, in order.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn open_for_fuzzing(directory: &Path) -> Result<Vec<u64>, String> {
    let (_spool, mut queue) =
        Spool::open(directory, usize::MAX).map_err(|error| error.to_string())?;
    let mut sequences = Vec::new();
    while let Ok(record) = queue.try_recv() {
        sequences.push(record.sequence);
    }
    Ok(sequences)
}

fn append(journal: &mut File, record: &Record) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).expect("records are plain data");
    line.push(b'\n');
    journal.write_all(&line)?;
    journal.sync_data()
}

/// Reads the journal; the last line for a name wins. A torn last line (a crash mid-append,
/// before the upload was answered) is ignored.
fn read_journal(path: &Path) -> Result<HashMap<String, Record>, SpoolError> {
    let mut records = HashMap::new();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(records),
        Err(source) => {
            return Err(SpoolError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut lines = io::BufReader::new(file).split(b'\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let line = line.map_err(|source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match serde_json::from_slice::<Record>(&line) {
            Ok(record) => {
                records.insert(record.name.clone(), record);
            }
            Err(_) if lines.peek().is_none() => {
                tracing::warn!("Ignoring a torn last line in {}", path.display());
            }
            Err(source) => {
                return Err(SpoolError::Corrupt {
                    path: path.to_path_buf(),
                    line: index + 1,
                    source,
                })
            }
        }
    }
    Ok(records)
}

/// Removes partial uploads and fragment files no journal line accepted (a crash between
/// rename and journal), and marks waiting fragments whose file is gone as failed. Returns the
/// sequences of the waiting fragments whose file is there.
fn remove_leftovers(
    directory: &Path,
    records: &mut HashMap<String, Record>,
) -> io::Result<HashSet<u64>> {
    let waiting: HashMap<u64, String> = records
        .values()
        .filter(|record| matches!(record.state, FragmentState::Spooled | FragmentState::Failed))
        .map(|record| (record.sequence, record.name.clone()))
        .collect();
    let mut present = HashSet::new();
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let sequence = file_name
            .strip_suffix(FRAGMENT_SUFFIX)
            .and_then(|stem| stem.parse::<u64>().ok());
        let keep = match sequence {
            Some(sequence) => waiting.contains_key(&sequence),
            None => !file_name.starts_with(UPLOAD_PREFIX),
        };
        if keep {
            present.extend(sequence);
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    for (sequence, name) in &waiting {
        if !present.contains(sequence) {
            tracing::error!(
                "Spooled fragment {name} (sequence {sequence}) is missing from {}; it cannot be published",
                directory.display()
            );
            let record = records.get_mut(name).expect("collected from records");
            record.state = FragmentState::Failed;
            record.error = Some("its spool file is missing".into());
        }
    }
    Ok(present)
}

/// Rewrites the journal with one line per fragment, then opens it for appending.
fn compact_journal(directory: &Path, records: &HashMap<String, Record>) -> io::Result<File> {
    let mut ordered: Vec<&Record> = records.values().collect();
    ordered.sort_by_key(|record| record.sequence);
    let path = directory.join(JOURNAL);
    replace_file(&path, |file| {
        let mut writer = io::BufWriter::new(file);
        for record in ordered {
            serde_json::to_writer(&mut writer, record).map_err(io::Error::other)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()
    })?;
    OpenOptions::new().append(true).open(path)
}
