//! The chunking/backpressure stage: turns fragments into a stream of bounded chunks.
//!
//! Every fragment is read in `chunk_size` pieces. Before reading a chunk the stage takes
//! `chunk_size` permits from a semaphore holding `max_in_flight` permits; the permits travel
//! with the chunk and return when the sink has written it. So at most `max_in_flight` bytes sit
//! between the source's files and the sink whatever the fragment sizes, a slow sink stops the
//! reading, and the next fragment is opened and read ahead while the current one finishes, as
//! far as the bound allows. Order is preserved: one task reads fragments one after another.
//!
//! With `chunk_size: auto` the size adapts (see `ChunkSizer`). When the pipeline has no stage
//! rewriting the bytes and its sink can splice ([`crate::plugin::Sink::accepts_file_ranges`]),
//! file-backed fragments are not read at all: chunks are [`FileRange`]s the sink moves from the
//! file into its pipe inside the kernel. The budget bounds them all the same.

mod body_reader;
mod buffer_pool;
mod events;
mod file_batch;
mod sizer;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

pub(crate) use self::body_reader::BodyReader;
pub(crate) use self::buffer_pool::BufferPool;
use self::buffer_pool::CachedRead;
use self::events::Flow;
pub use self::events::{Chunk, ChunkData, ChunkEvent};
use self::file_batch::FileBatch;
use self::sizer::{try_budget, ChunkSizer};
use crate::chunk::ChunkSize;
use crate::fragment::Fragment;
use crate::stage::BodyPreparer;

/// Reads fragments in chunks within a byte budget.
#[derive(Clone)]
pub struct ChunkingStage {
    sizer: ChunkSizer,
    /// Emit file-backed chunks as [`FileRange`]s instead of reading them.
    file_ranges: bool,
    budget: Arc<Semaphore>,
    max_in_flight: usize,
    buffers: BufferPool,
    /// Run on each fragment before its body is opened.
    preparers: Vec<Arc<dyn BodyPreparer>>,
}

impl ChunkingStage {
    /// A fixed `chunk_size` must not exceed `max_in_flight` (the config checks it).
    pub fn new(chunk_size: ChunkSize, max_in_flight: u64) -> Self {
        let max_in_flight = usize::try_from(max_in_flight)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        Self {
            sizer: ChunkSizer::new(chunk_size, max_in_flight),
            file_ranges: false,
            budget: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            buffers: BufferPool::default(),
            preparers: Vec::new(),
        }
    }

    /// Adds work to do on each fragment's body before it is read.
    pub fn with_preparers(mut self, preparers: Vec<Arc<dyn BodyPreparer>>) -> Self {
        self.preparers = preparers;
        self
    }

    /// The byte budget and its size, for reporting how much of it is in use.
    pub fn budget(&self) -> (Arc<Semaphore>, usize) {
        (Arc::clone(&self.budget), self.max_in_flight)
    }

    /// Emits file-backed fragments as [`FileRange`]s (for a sink that splices, with no stage
    /// in between).
    pub fn with_file_ranges(mut self, file_ranges: bool) -> Self {
        self.file_ranges = file_ranges;
        self
    }

    /// The largest piece fragments are read in.
    pub fn chunk_size(&self) -> usize {
        self.sizer.largest()
    }

    /// Reads every fragment from `fragments` into `events` until the input ends or the
    /// receiver of `events` is dropped (fragments still held are then dropped, which tells
    /// their sources they were abandoned). Returns how many fragments the source offered:
    /// those it took and those still queued when it stopped.
    pub async fn run(
        mut self,
        mut fragments: mpsc::Receiver<Fragment>,
        events: mpsc::Sender<ChunkEvent>,
    ) -> u64 {
        let mut taken = 0;
        self.read_all(&mut fragments, &events, &mut taken).await;
        taken + fragments.len() as u64
    }

    async fn read_all(
        &mut self,
        fragments: &mut mpsc::Receiver<Fragment>,
        events: &mpsc::Sender<ChunkEvent>,
        taken: &mut u64,
    ) {
        'fragments: loop {
            if fragments.is_empty() {
                self.buffers.release();
            }
            let Some(mut fragment) = fragments.recv().await else {
                return;
            };
            *taken += 1;
            // An upstream that crashed while creating the file: nothing to publish.
            if fragment.info.length == Some(0) {
                let message = format!("{} is empty (0 bytes)", fragment.body.describe());
                if events
                    .send(ChunkEvent::Unreadable(fragment, "empty", message))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            for preparer in &self.preparers {
                if let Err(message) = preparer.prepare(&mut fragment).await {
                    if events
                        .send(ChunkEvent::Unreadable(fragment, "unreadable", message))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue 'fragments;
                }
            }
            let mut reader = match BodyReader::open(&mut fragment.body, &self.buffers).await {
                Ok(reader) => reader,
                Err(error) => {
                    let message = describe_read_error(&fragment, &error);
                    if events
                        .send(ChunkEvent::Unreadable(fragment, "unreadable", message))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            let failure = format!(
                "reading fragment {} from {} failed",
                fragment.info.name,
                fragment.body.describe()
            );
            if events.send(ChunkEvent::Begin(fragment)).await.is_err() {
                return;
            }
            if self.stream(&mut reader, events, &failure).await == Flow::Stopped {
                return;
            }
        }
    }

    /// Sends one body's chunks and its end (or failure).
    async fn stream(
        &mut self,
        reader: &mut BodyReader,
        events: &mpsc::Sender<ChunkEvent>,
        failure: &str,
    ) -> Flow {
        loop {
            let permit = self.acquire().await;
            let event = match reader {
                BodyReader::File {
                    file,
                    offset,
                    buffers,
                    ..
                } if !self.file_ranges => {
                    // What the page cache holds is read here, on this task: the sink's task
                    // then runs on the same worker with no wake-up across threads, which cost
                    // as much as the copy itself on a page-cached file (BENCHMARKS.md).
                    match buffers.read_cached(file, *offset, permit.num_permits()) {
                        CachedRead::Data(bytes) => {
                            *offset += bytes.len() as u64;
                            ChunkEvent::Chunk(Chunk::new(ChunkData::Bytes(bytes), permit))
                        }
                        CachedRead::End => ChunkEvent::End,
                        // From the disk: a run of chunks on a blocking thread.
                        CachedRead::NotCached => {
                            let batch = FileBatch {
                                file: Arc::clone(file),
                                offset: *offset,
                                buffers: buffers.clone(),
                                budget: Arc::clone(&self.budget),
                                sizer: self.sizer.clone(),
                                events: events.clone(),
                                failure: failure.to_owned(),
                                group_bytes: self.max_in_flight / 2,
                            };
                            let Ok(batch) =
                                tokio::task::spawn_blocking(move || batch.run(permit)).await
                            else {
                                return Flow::Stopped;
                            };
                            (*offset, self.sizer) = (batch.offset, batch.sizer);
                            match batch.flow {
                                Flow::More => continue,
                                flow => return flow,
                            }
                        }
                    }
                }
                _ => match reader
                    .next_data(permit.num_permits(), self.file_ranges)
                    .await
                {
                    Ok(Some(data)) => ChunkEvent::Chunk(Chunk::new(data, permit)),
                    Ok(None) => ChunkEvent::End,
                    Err(error) => ChunkEvent::Failed(format!("{failure}: {error}")),
                },
            };
            let last = !matches!(event, ChunkEvent::Chunk(_));
            if events.send(event).await.is_err() {
                return Flow::Stopped;
            }
            if last {
                return Flow::Ended;
            }
        }
    }

    /// Budget for the next chunk (its size is the number of permits), waiting if the sink is
    /// behind.
    async fn acquire(&mut self) -> OwnedSemaphorePermit {
        if let Some(permit) = try_budget(&self.budget, &mut self.sizer) {
            return permit;
        }
        let permit = Arc::clone(&self.budget)
            .acquire_many_owned(self.sizer.current() as u32)
            .await
            .expect("the budget semaphore is never closed");
        self.sizer.waited();
        permit
    }
}

fn describe_read_error(fragment: &Fragment, error: &io::Error) -> String {
    format!(
        "cannot read fragment {} from {}: {error}",
        fragment.info.name,
        fragment.body.describe()
    )
}
