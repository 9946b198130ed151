//! Reading a run of file chunks on one blocking thread while the budget has room, for what the
//! page cache does not hold (cached chunks are read on the chunking task itself).

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::buffer_pool::BufferPool;
use super::events::{Chunk, ChunkData, ChunkEvent, Flow};
use super::sizer::{try_budget, ChunkSizer};

/// Reads file chunks on a blocking thread for as long as the budget has room without waiting:
/// one thread hand-over for a run of chunks instead of one per chunk, while the sink keeps up.
///
/// Chunks are handed to the sink in groups of up to `group_bytes` (half the budget), sent back
/// to back: a sink faster than the reader sleeps between chunks, and each hand-over to a
/// sleeping sink costs a wake-up (an eventfd write and two context switches); in groups it
/// wakes once per group. On a page-cached file that was a quarter of the CPU time with one
/// wake-up per 256 KiB chunk (BENCHMARKS.md). A group is sent before the reader waits for
/// budget, so the sink always holds what it needs to free some.
pub(super) struct FileBatch {
    pub(super) file: Arc<std::fs::File>,
    pub(super) offset: u64,
    pub(super) buffers: BufferPool,
    pub(super) budget: Arc<Semaphore>,
    pub(super) sizer: ChunkSizer,
    pub(super) events: mpsc::Sender<ChunkEvent>,
    pub(super) failure: String,
    /// Chunks are sent once this many bytes are read (or the body ends, or the budget is
    /// used up).
    pub(super) group_bytes: usize,
}

/// Where a [`FileBatch`] stopped.
pub(super) struct BatchEnd {
    pub(super) offset: u64,
    pub(super) sizer: ChunkSizer,
    pub(super) flow: Flow,
}

impl FileBatch {
    pub(super) fn run(mut self, mut permit: OwnedSemaphorePermit) -> BatchEnd {
        let mut group = Vec::new();
        let mut group_bytes = 0;
        let flow = loop {
            let read = self
                .buffers
                .read_at(&self.file, self.offset, permit.num_permits());
            let event = match read {
                Ok(None) => ChunkEvent::End,
                Ok(Some(bytes)) => {
                    self.offset += bytes.len() as u64;
                    group_bytes += bytes.len();
                    ChunkEvent::Chunk(Chunk::new(ChunkData::Bytes(bytes), permit))
                }
                Err(error) => ChunkEvent::Failed(format!("{}: {error}", self.failure)),
            };
            let last = !matches!(event, ChunkEvent::Chunk(_));
            group.push(event);
            let next = if last {
                None
            } else {
                try_budget(&self.budget, &mut self.sizer)
            };
            if next.is_none() || group_bytes >= self.group_bytes {
                if self.send(&mut group).is_err() {
                    break Flow::Stopped;
                }
                group_bytes = 0;
            }
            match next {
                Some(next) => permit = next,
                None if last => break Flow::Ended,
                None => break Flow::More,
            }
        };
        BatchEnd {
            offset: self.offset,
            sizer: self.sizer,
            flow,
        }
    }

    /// Sends the events of a group, in order; `Err` once the receiver is gone.
    fn send(&self, group: &mut Vec<ChunkEvent>) -> Result<(), ()> {
        for event in group.drain(..) {
            self.events.blocking_send(event).map_err(drop)?;
        }
        Ok(())
    }
}
