//! Reading a run of file chunks on one blocking thread while the budget has room.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::buffer_pool::BufferPool;
use super::sizer::ChunkSizer;
use super::{try_budget, Chunk, ChunkData, ChunkEvent, Flow};

/// Reads file chunks on a blocking thread for as long as the budget has room without waiting,
/// sending each as soon as it is read: one thread hand-over for a run of chunks instead of one
/// per chunk, while the sink keeps up.
pub(super) struct FileBatch {
    pub(super) file: Arc<std::fs::File>,
    pub(super) offset: u64,
    pub(super) buffers: BufferPool,
    pub(super) budget: Arc<Semaphore>,
    pub(super) sizer: ChunkSizer,
    pub(super) events: mpsc::Sender<ChunkEvent>,
    pub(super) failure: String,
}

/// Where a [`FileBatch`] stopped.
pub(super) struct BatchEnd {
    pub(super) offset: u64,
    pub(super) sizer: ChunkSizer,
    pub(super) flow: Flow,
}

impl FileBatch {
    pub(super) fn run(mut self, mut permit: OwnedSemaphorePermit) -> BatchEnd {
        let flow = loop {
            let read = self
                .buffers
                .read_at(&self.file, self.offset, permit.num_permits());
            let event = match read {
                Ok(None) => ChunkEvent::End,
                Ok(Some(bytes)) => {
                    self.offset += bytes.len() as u64;
                    ChunkEvent::Chunk(Chunk::new(ChunkData::Bytes(bytes), permit))
                }
                Err(error) => ChunkEvent::Failed(format!("{}: {error}", self.failure)),
            };
            let last = !matches!(event, ChunkEvent::Chunk(_));
            if self.events.blocking_send(event).is_err() {
                break Flow::Stopped;
            }
            if last {
                break Flow::Ended;
            }
            match try_budget(&self.budget, &mut self.sizer) {
                Some(next) => permit = next,
                None => break Flow::More,
            }
        };
        BatchEnd {
            offset: self.offset,
            sizer: self.sizer,
            flow,
        }
    }
}
