//! The engine of the timeline stages: what `fmp4-timeline`, `flv-timeline`, `mpegts-timeline`
//! and `fmp4-to-flv` share, written once. A format supplies its hooks ([`TimelineFormat`]):
//! how a file begins, how a chunk of it is read, how it ends, what a new session needs first
//! and what fills a gap. The engine keeps the file being read (its name and how much of it has
//! been read, for the format's errors), the state each recent fragment began with (a rewind
//! puts it back, a publication forgets it), and the checkpoint's encoding.

mod reader;

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use streampub_core::plugin::{FragmentInfo, Stage, StageError, StageOutput};

pub(crate) use self::reader::ChunkReader;
use crate::history::FragmentHistory;

/// How a format reads its files: the part of a format in its `reading` module.
pub(crate) trait FileReading {
    /// The state of the file being read.
    type File: Send + std::fmt::Debug;

    /// Reads what `reader` holds of the file.
    fn read(
        &mut self,
        file: &mut OpenFile<Self::File>,
        reader: &mut ChunkReader,
        output: &mut StageOutput,
    ) -> Result<(), StageError>;
}

/// A media format's part of a timeline stage: its reading, and the hooks of its timeline.
pub(crate) trait TimelineFormat: FileReading + Send + std::fmt::Debug + 'static {
    /// The stage's `type`, for errors.
    const STAGE: &'static str;
    /// What a file that fails is not, for errors: "usable FLV".
    const USABLE: &'static str;
    /// The state a fragment begins with, put back when it is sent again.
    type Snapshot: Send + std::fmt::Debug;
    /// The state the pipeline's checkpoint keeps between fragments.
    type Saved: Serialize + DeserializeOwned;

    /// A fragment begins: the state for reading its file.
    fn begin_file(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<Self::File, StageError>;

    /// The file is all read: what is held goes out, a file cut short fails, and the timeline
    /// moves past it.
    fn end_file(
        &mut self,
        file: OpenFile<Self::File>,
        output: &mut StageOutput,
    ) -> Result<(), StageError>;

    /// The fragment failed or is sent again: forget the partial state of its file (`None` if
    /// it had not begun); what it emitted stays on the timeline.
    fn abort_file(&mut self, file: Option<OpenFile<Self::File>>);

    /// See [`Stage::start_session`].
    fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError>;

    /// A new session began between fragments: the state for reading what the stage before
    /// this one sends for it there (`fmp4-timeline` sends its init segment again), or `None`
    /// where nothing may come between fragments.
    fn begin_session_headers(&mut self) -> Option<Self::File> {
        None
    }

    /// What came for the new session is all read, as the next fragment begins.
    fn end_session_headers(
        &mut self,
        _headers: OpenFile<Self::File>,
        _output: &mut StageOutput,
    ) -> Result<(), StageError> {
        Ok(())
    }

    /// See [`Stage::fill`].
    fn fill(&mut self, until: Duration, output: &mut StageOutput) -> Result<(), StageError>;

    /// See [`Stage::resume_fragment`]; a format that does not cut ignores it.
    fn resume_fragment(&mut self, _offset: Duration) {}

    /// The state as the next fragment begins.
    fn snapshot(&self) -> Self::Snapshot;

    /// Puts back a state [`TimelineFormat::snapshot`] took.
    fn rewind_to(&mut self, snapshot: Self::Snapshot);

    /// The state to checkpoint, `None` for a format that keeps none across a restart.
    fn saved(&self) -> Option<Self::Saved>;

    /// Puts back a checkpointed state, before the first fragment.
    fn restore(&mut self, saved: Self::Saved) -> Result<(), StageError>;
}

/// The file being read: its name and how much of it has been read, around the format's state.
#[derive(Debug)]
pub(crate) struct OpenFile<F> {
    name: String,
    /// What errors call it: "fragment NAME".
    described: String,
    usable: &'static str,
    /// Bytes read before the current chunk.
    read: u64,
    state: F,
}

impl<F> OpenFile<F> {
    /// A file named `name` that is not read through the engine (a loop of a filler clip);
    /// `usable` as [`TimelineFormat::USABLE`].
    pub(crate) fn new(name: &str, usable: &'static str, state: F) -> Self {
        Self {
            name: name.to_owned(),
            described: format!("fragment {name}"),
            usable,
            read: 0,
            state,
        }
    }

    /// What a new session begins with between fragments (see
    /// [`TimelineFormat::begin_session_headers`]).
    fn session_headers(usable: &'static str, state: F) -> Self {
        Self {
            name: String::new(),
            described: "what began the new session".to_owned(),
            usable,
            read: 0,
            state,
        }
    }

    /// The fragment's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// How many bytes of the file were read before the current chunk (all of it, once it ends).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read
    }

    /// An error about this file: "fragment NAME is not usable FLV: MESSAGE".
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> StageError {
        StageError::new(format!(
            "{} is not {}: {message}",
            self.described, self.usable
        ))
    }
}

impl<F> std::ops::Deref for OpenFile<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.state
    }
}

impl<F> std::ops::DerefMut for OpenFile<F> {
    fn deref_mut(&mut self) -> &mut F {
        &mut self.state
    }
}

/// A timeline stage: the engine around a format.
#[derive(Debug)]
pub(crate) struct TimelineEngine<F: TimelineFormat> {
    format: F,
    file: Option<OpenFile<F::File>>,
    /// What came between fragments for a new session, while it is read.
    session_headers: Option<OpenFile<F::File>>,
    history: FragmentHistory<F::Snapshot>,
}

impl<F: TimelineFormat + Default> Default for TimelineEngine<F> {
    fn default() -> Self {
        Self::new(F::default())
    }
}

impl<F: TimelineFormat> TimelineEngine<F> {
    pub(crate) fn new(format: F) -> Self {
        Self {
            format,
            file: None,
            session_headers: None,
            history: FragmentHistory::default(),
        }
    }

    /// The format, to configure it as the stage is built.
    pub(crate) fn format_mut(&mut self) -> &mut F {
        &mut self.format
    }
}

impl<F: TimelineFormat> Stage for TimelineEngine<F> {
    fn begin_fragment(
        &mut self,
        fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        if let Some(headers) = self.session_headers.take() {
            self.format.end_session_headers(headers, output)?;
        }
        let state = self.format.begin_file(fragment, output)?;
        self.history
            .record(fragment.sequence, self.format.snapshot());
        self.file = Some(OpenFile::new(&fragment.name, F::USABLE, state));
        Ok(())
    }

    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
        let length = chunk.len() as u64;
        // A chunk belongs to the fragment's file, or to what began a new session.
        let file = self
            .file
            .as_mut()
            .or(self.session_headers.as_mut())
            .ok_or_else(|| StageError::new("a chunk came outside a fragment"))?;
        let mut reader = ChunkReader::new(chunk, file.read);
        let result = self.format.read(file, &mut reader, output);
        file.read += length;
        result
    }

    fn end_fragment(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| StageError::new("a fragment ended that had not begun"))?;
        self.format.end_file(file, output)
    }

    fn start_session(&mut self, output: &mut StageOutput) -> Result<(), StageError> {
        self.format.start_session(output)?;
        if self.file.is_none() {
            self.session_headers = self
                .format
                .begin_session_headers()
                .map(|state| OpenFile::session_headers(F::USABLE, state));
        }
        Ok(())
    }

    fn fill(&mut self, until: Duration, output: &mut StageOutput) -> Result<(), StageError> {
        self.format.fill(until, output)
    }

    fn abort_fragment(&mut self) {
        self.session_headers = None;
        self.format.abort_file(self.file.take());
    }

    fn published(&mut self, fragment: &FragmentInfo) {
        self.history.forget_through(fragment.sequence);
    }

    fn rewind(&mut self, fragment: &FragmentInfo) {
        if let Some(snapshot) = self.history.rewind_to(fragment.sequence) {
            self.format.rewind_to(snapshot);
            self.file = None;
            self.session_headers = None;
        }
    }

    fn resume_fragment(&mut self, offset: Duration) {
        self.format.resume_fragment(offset);
    }

    fn checkpoint(&self) -> Option<serde_json::Value> {
        let saved = self.format.saved()?;
        Some(serde_json::to_value(saved).expect("plain data"))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), StageError> {
        let saved: F::Saved = serde_json::from_value(state).map_err(|error| {
            StageError::new(format!(
                "the saved state of {} is unreadable: {error}",
                F::STAGE
            ))
        })?;
        self.format.restore(saved)
    }
}
