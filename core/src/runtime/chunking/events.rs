//! What the chunking stage sends towards the sink: fragment boundaries and chunks that hold
//! their share of the byte budget.

use std::sync::Arc;

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
    /// Fan-out only, to a destination that fell behind: a fragment without chunks, to be read
    /// from its body by the destination itself.
    ReadBody(Fragment),
    /// Fan-out only, inside a fragment: no more chunks come; the destination reads the rest
    /// from the fragment's body, from where its chunks stopped.
    ReadRest,
}

/// A piece of a fragment, holding its share of the `max_in_flight` budget until dropped.
/// In a fan-out every destination holds a copy of the chunk (the same bytes) and the share
/// returns once the last has taken it.
#[derive(Debug)]
pub struct Chunk {
    pub data: ChunkData,
    budget: Arc<OwnedSemaphorePermit>,
}

impl Chunk {
    pub(super) fn new(data: ChunkData, budget: OwnedSemaphorePermit) -> Self {
        Self {
            data,
            budget: Arc::new(budget),
        }
    }

    /// A chunk of `bytes` with a budget of its own (for tests of what consumes chunks).
    #[cfg(test)]
    pub(crate) fn detached(bytes: Bytes) -> Self {
        let budget = Arc::new(tokio::sync::Semaphore::new(bytes.len().max(1)));
        let permit = budget
            .try_acquire_many_owned(bytes.len().max(1) as u32)
            .expect("a new semaphore has the permits");
        Self::new(ChunkData::Bytes(bytes), permit)
    }

    /// Another handle on the same bytes and budget share, for another destination.
    pub(crate) fn share(&self) -> Self {
        Self {
            data: self.data.clone(),
            budget: Arc::clone(&self.budget),
        }
    }

    /// Splits the chunk into its data and the budget share; the share must be dropped only
    /// once the sink has taken the data.
    pub fn into_parts(self) -> (ChunkData, Arc<OwnedSemaphorePermit>) {
        (self.data, self.budget)
    }
}

/// What a chunk carries; cloning it shares the bytes.
#[derive(Debug, Clone)]
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
