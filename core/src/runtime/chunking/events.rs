//! What the chunking stage sends towards the sink: fragment boundaries and chunks that hold
//! their share of the byte budget.

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use crate::chunk::FileRange;
use crate::fragment::Fragment;

/// What the chunking stage sends towards the sink.
#[derive(Debug)]
pub enum ChunkEvent {
    /// A fragment starts; its chunks follow, then `End` or `Failed`.
    Begin(Fragment),
    Chunk(Chunk),
    End,
    /// Reading failed mid-fragment; the message says why.
    Failed(String),
    /// The fragment could not even be opened, or is empty; nothing of it was sent. The
    /// reason is one word for the `fragment_failed` line (`empty`, `unreadable`).
    Unreadable(Fragment, &'static str, String),
}

/// A piece of a fragment, holding its share of the `max_in_flight` budget until dropped.
#[derive(Debug)]
pub struct Chunk {
    pub data: ChunkData,
    _budget: OwnedSemaphorePermit,
}

impl Chunk {
    pub(super) fn new(data: ChunkData, budget: OwnedSemaphorePermit) -> Self {
        Self {
            data,
            _budget: budget,
        }
    }

    /// Splits the chunk into its data and the budget permit; the permit must be dropped only
    /// once the sink has taken the data.
    pub fn into_parts(self) -> (ChunkData, OwnedSemaphorePermit) {
        (self.data, self._budget)
    }
}

/// What a chunk carries.
#[derive(Debug)]
pub enum ChunkData {
    Bytes(Bytes),
    /// A part of a file, not read: for sinks that splice it.
    File(FileRange),
}

impl ChunkData {
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes(bytes) => bytes.len(),
            Self::File(range) => range.length,
        }
    }
}

/// How far a body's streaming got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Stopped for lack of budget; go on once there is some.
    More,
    /// The body's end (or failure) was sent.
    Ended,
    /// The receiver is gone.
    Stopped,
}
