//! The chunking/backpressure stage: turns fragments into a stream of bounded chunks.
//!
//! Every fragment is read in `chunk_size` pieces. Before reading a chunk the stage takes
//! `chunk_size` permits from a semaphore holding `max_in_flight` permits; the permits travel
//! with the chunk and return when the sink has written it. So at most `max_in_flight` bytes sit
//! between the source's files and the sink whatever the fragment sizes, a slow sink stops the
//! reading, and the next fragment is opened and read ahead while the current one finishes, as
//! far as the bound allows. Order is preserved: one task reads fragments one after another.
//!
//! With `chunk_size: auto` the size adapts (see [`ChunkSizer`]). When the pipeline has no stage
//! rewriting the bytes and its sink can splice ([`crate::Sink::accepts_file_ranges`]),
//! file-backed fragments are not read at all: chunks are [`FileRange`]s the sink moves from the
//! file into its pipe inside the kernel. The budget bounds them all the same.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::fragment::{Fragment, FragmentBody};
use crate::stage::BodyPreparer;
use crate::units::ByteSize;

/// Smallest chunk `chunk_size: auto` shrinks to.
pub const AUTO_CHUNK_MIN: usize = 64 * 1024;
/// Largest chunk `chunk_size: auto` grows to (also at most half of `max_in_flight`).
pub const AUTO_CHUNK_MAX: usize = 1024 * 1024;
/// Where `chunk_size: auto` starts.
const AUTO_CHUNK_START: usize = 256 * 1024;
/// Chunks in a row that found the budget free before `auto` doubles the size.
const AUTO_GROW_AFTER: u32 = 4;

/// A pipeline's `chunk_size`: a fixed size, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSize {
    Fixed(ByteSize),
    Auto,
}

impl<'de> Deserialize<'de> for ChunkSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Word(String),
            Number(u64),
        }
        match Written::deserialize(deserializer)? {
            Written::Word(word) if word == "auto" => Ok(Self::Auto),
            Written::Word(word) => word
                .parse()
                .map(Self::Fixed)
                .map_err(|error| serde::de::Error::custom(format!("{error}, or `auto`"))),
            Written::Number(bytes) => Ok(Self::Fixed(ByteSize(bytes))),
        }
    }
}

impl std::fmt::Display for ChunkSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(size) => size.fmt(f),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// Picks each chunk's size. Fixed sizes stay; `auto` doubles (up to [`AUTO_CHUNK_MAX`] and half
/// of `max_in_flight`) after [`AUTO_GROW_AFTER`] chunks in a row found the budget free, that is
/// while the sink keeps up, and halves (down to [`AUTO_CHUNK_MIN`]) each time the reader had
/// to wait for the sink to drain. Big chunks cost fewer hand-overs when the sink is fast;
/// small ones keep less in flight per step when it is slow.
#[derive(Debug, Clone)]
pub struct ChunkSizer {
    current: usize,
    range: Option<(usize, usize)>,
    kept_up: u32,
}

impl ChunkSizer {
    pub fn new(chunk_size: ChunkSize, max_in_flight: usize) -> Self {
        match chunk_size {
            ChunkSize::Fixed(size) => Self {
                current: usize::try_from(size.bytes())
                    .unwrap_or(usize::MAX)
                    .min(max_in_flight)
                    .max(1),
                range: None,
                kept_up: 0,
            },
            ChunkSize::Auto => {
                let max = AUTO_CHUNK_MAX
                    .min(max_in_flight / 2)
                    .max(AUTO_CHUNK_MIN.min(max_in_flight));
                let min = AUTO_CHUNK_MIN.min(max);
                Self {
                    current: AUTO_CHUNK_START.clamp(min, max),
                    range: Some((min, max)),
                    kept_up: 0,
                }
            }
        }
    }

    /// The size of the next chunk.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The largest size this sizer may pick.
    pub fn largest(&self) -> usize {
        self.range.map_or(self.current, |(_, max)| max)
    }

    /// The budget had room for the chunk at once.
    pub fn kept_up(&mut self) {
        let Some((_, max)) = self.range else { return };
        self.kept_up += 1;
        if self.kept_up >= AUTO_GROW_AFTER {
            self.current = (self.current * 2).min(max);
            self.kept_up = 0;
        }
    }

    /// The reader had to wait for the sink to drain before this chunk.
    pub fn waited(&mut self) {
        let Some((min, _)) = self.range else { return };
        self.current = (self.current / 2).max(min);
        self.kept_up = 0;
    }
}

/// What the chunking stage sends towards the sink.
#[derive(Debug)]
pub enum ChunkEvent {
    /// A fragment starts; its chunks follow, then `End` or `Failed`.
    Begin(Fragment),
    Chunk(Chunk),
    End,
    /// Reading failed mid-fragment; the message says why.
    Failed(String),
    /// The fragment could not even be opened; nothing of it was sent.
    Unreadable(Fragment, String),
}

/// A piece of a fragment, holding its share of the `max_in_flight` budget until dropped.
#[derive(Debug)]
pub struct Chunk {
    pub data: ChunkData,
    _budget: OwnedSemaphorePermit,
}

impl Chunk {
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `length` bytes of `file` from `offset`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub length: usize,
}

impl FileRange {
    /// Reads the range (for a sink or stage that needs the bytes after all).
    pub async fn read(&self) -> io::Result<Bytes> {
        let range = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0; range.length];
            range.file.read_exact_at(&mut buffer, range.offset)?;
            Ok(Bytes::from(buffer))
        })
        .await
        .map_err(io::Error::other)?
    }
}

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
    /// their sources they were abandoned).
    pub async fn run(
        mut self,
        mut fragments: mpsc::Receiver<Fragment>,
        events: mpsc::Sender<ChunkEvent>,
    ) {
        'fragments: loop {
            if fragments.is_empty() {
                self.buffers.release();
            }
            let Some(mut fragment) = fragments.recv().await else {
                return;
            };
            for preparer in &self.preparers {
                if let Err(message) = preparer.prepare(&mut fragment).await {
                    if events
                        .send(ChunkEvent::Unreadable(fragment, message))
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
                        .send(ChunkEvent::Unreadable(fragment, message))
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
            if self.stream(&mut reader, &events, &failure).await == Flow::Stopped {
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
            if let BodyReader::File {
                file,
                offset,
                buffers,
                ..
            } = reader
            {
                if !self.file_ranges {
                    let batch = FileBatch {
                        file: Arc::clone(file),
                        offset: *offset,
                        buffers: buffers.clone(),
                        budget: Arc::clone(&self.budget),
                        sizer: self.sizer.clone(),
                        events: events.clone(),
                        failure: failure.to_owned(),
                    };
                    let Ok(batch) = tokio::task::spawn_blocking(move || batch.run(permit)).await
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
            let event = match reader
                .next_data(permit.num_permits(), self.file_ranges)
                .await
            {
                Ok(Some(data)) => ChunkEvent::Chunk(Chunk {
                    data,
                    _budget: permit,
                }),
                Ok(None) => ChunkEvent::End,
                Err(error) => ChunkEvent::Failed(format!("{failure}: {error}")),
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

/// Budget for a chunk of the sizer's current size if it is free right now (which the sizer
/// counts as the sink keeping up).
fn try_budget(budget: &Arc<Semaphore>, sizer: &mut ChunkSizer) -> Option<OwnedSemaphorePermit> {
    let permit = Arc::clone(budget)
        .try_acquire_many_owned(sizer.current() as u32)
        .ok()?;
    sizer.kept_up();
    Some(permit)
}

/// How far a body's streaming got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Stopped for lack of budget; go on once there is some.
    More,
    /// The body's end (or failure) was sent.
    Ended,
    /// The receiver is gone.
    Stopped,
}

/// Reads file chunks on a blocking thread for as long as the budget has room without waiting,
/// sending each as soon as it is read: one thread hand-over for a run of chunks instead of one
/// per chunk, while the sink keeps up.
struct FileBatch {
    file: Arc<std::fs::File>,
    offset: u64,
    buffers: BufferPool,
    budget: Arc<Semaphore>,
    sizer: ChunkSizer,
    events: mpsc::Sender<ChunkEvent>,
    failure: String,
}

/// Where a [`FileBatch`] stopped.
struct BatchEnd {
    offset: u64,
    sizer: ChunkSizer,
    flow: Flow,
}

impl FileBatch {
    fn run(mut self, mut permit: OwnedSemaphorePermit) -> BatchEnd {
        let flow = loop {
            let read = self
                .buffers
                .read_at(&self.file, self.offset, permit.num_permits());
            let event = match read {
                Ok(None) => ChunkEvent::End,
                Ok(Some(bytes)) => {
                    self.offset += bytes.len() as u64;
                    ChunkEvent::Chunk(Chunk {
                        data: ChunkData::Bytes(bytes),
                        _budget: permit,
                    })
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

fn describe_read_error(fragment: &Fragment, error: &io::Error) -> String {
    format!(
        "cannot read fragment {} from {}: {error}",
        fragment.info.name,
        fragment.body.describe()
    )
}

/// Most read buffers a [`BufferPool`] keeps for reuse.
const MAX_POOLED_BUFFERS: usize = 16;

/// Read buffers that return to the pool when the last chunk made from them is dropped, so a
/// steady stream reads into the same few buffers: no allocation, zeroing or page faults per
/// chunk. An idle pipeline keeps none ([`BufferPool::release`]).
#[derive(Debug, Clone, Default)]
pub struct BufferPool(Arc<Mutex<PooledBuffers>>);

#[derive(Debug, Default)]
struct PooledBuffers {
    free: Vec<Vec<u8>>,
    /// Nothing to read for now: buffers coming back are freed instead of kept.
    idle: bool,
}

impl BufferPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PooledBuffers> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// A buffer of at least `size` bytes.
    fn take(&self, size: usize) -> Vec<u8> {
        let mut pool = self.lock();
        pool.idle = false;
        while let Some(buffer) = pool.free.pop() {
            if buffer.len() >= size {
                return buffer;
            }
        }
        vec![0; size]
    }

    /// Frees the pooled buffers, and those still in flight as they come back, until the next
    /// [`BufferPool::take`]: a pipeline waiting for its next fragment holds no read buffers.
    pub fn release(&self) {
        let mut pool = self.lock();
        pool.idle = true;
        pool.free = Vec::new();
    }

    /// Reads up to `size` bytes of `file` from `offset` into a pooled buffer (blocking; one
    /// positioned read, no shared cursor); `None` at the end of the file. The buffer comes
    /// back to the pool when the chunk is dropped.
    fn read_at(&self, file: &std::fs::File, offset: u64, size: usize) -> io::Result<Option<Bytes>> {
        let mut buffer = self.take(size);
        let read = file.read_at(&mut buffer[..size], offset)?;
        if read == 0 {
            return Ok(None);
        }
        let chunk = Bytes::from_owner(PooledBuffer {
            buffer,
            pool: self.clone(),
        });
        Ok(Some(chunk.slice(..read)))
    }
}

struct PooledBuffer {
    buffer: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut pool = self.pool.lock();
        if !pool.idle && pool.free.len() < MAX_POOLED_BUFFERS {
            pool.free.push(std::mem::take(&mut self.buffer));
        }
    }
}

/// Reads a fragment's body chunk by chunk.
pub enum BodyReader {
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        /// The file's length when opened.
        length: u64,
        buffers: BufferPool,
    },
    Memory(Bytes),
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

impl BodyReader {
    /// Opens a body for reading from its start. A one-shot reader body is taken out of the
    /// fragment; opening it again fails.
    pub async fn open(body: &mut FragmentBody, buffers: &BufferPool) -> io::Result<Self> {
        match body {
            FragmentBody::File(_) | FragmentBody::Temporary(_) => {
                let path = match body {
                    FragmentBody::Temporary(path) => path.to_path_buf(),
                    FragmentBody::File(path) => path.clone(),
                    _ => unreachable!("matched above"),
                };
                let (file, length) = tokio::task::spawn_blocking(move || {
                    let file = std::fs::File::open(path)?;
                    let length = file.metadata()?.len();
                    Ok::<_, io::Error>((file, length))
                })
                .await
                .map_err(io::Error::other)??;
                Ok(Self::File {
                    file: Arc::new(file),
                    offset: 0,
                    length,
                    buffers: buffers.clone(),
                })
            }
            FragmentBody::Memory(bytes) => Ok(Self::Memory(bytes.clone())),
            FragmentBody::Reader(_) => {
                match std::mem::replace(body, FragmentBody::Consumed) {
                    FragmentBody::Reader(reader) => Ok(Self::Reader(reader)),
                    _ => unreachable!("matched as a reader above"),
                }
            }
            FragmentBody::Consumed => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the fragment came from a one-shot reader that was already read; it cannot be sent again",
            )),
        }
    }

    /// The next chunk of at most `max` bytes, as a [`FileRange`] of a file body when
    /// `file_ranges` is set (the kernel is asked to read it ahead, since nothing here will),
    /// else as bytes; `None` at the end.
    pub async fn next_data(
        &mut self,
        max: usize,
        file_ranges: bool,
    ) -> io::Result<Option<ChunkData>> {
        match self {
            Self::File {
                file,
                offset,
                length,
                ..
            } if file_ranges => {
                let take = (*length - (*offset).min(*length)).min(max as u64) as usize;
                if take == 0 {
                    return Ok(None);
                }
                // SAFETY: posix_fadvise only reads its arguments; the descriptor is open.
                unsafe {
                    libc::posix_fadvise(
                        file.as_raw_fd(),
                        *offset as libc::off_t,
                        take as libc::off_t,
                        libc::POSIX_FADV_WILLNEED,
                    );
                }
                let range = FileRange {
                    file: Arc::clone(file),
                    offset: *offset,
                    length: take,
                };
                *offset += take as u64;
                Ok(Some(ChunkData::File(range)))
            }
            _ => Ok(self.next_chunk(max).await?.map(ChunkData::Bytes)),
        }
    }

    /// The next chunk of at most `max` bytes, or `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            Self::File {
                file,
                offset,
                buffers,
                ..
            } => {
                let (file, position, pool) = (Arc::clone(file), *offset, buffers.clone());
                let chunk = tokio::task::spawn_blocking(move || pool.read_at(&file, position, max))
                    .await
                    .map_err(io::Error::other)??;
                if let Some(chunk) = &chunk {
                    *offset += chunk.len() as u64;
                }
                Ok(chunk)
            }
            Self::Memory(bytes) => {
                if bytes.is_empty() {
                    return Ok(None);
                }
                Ok(Some(bytes.split_to(max.min(bytes.len()))))
            }
            Self::Reader(reader) => {
                let mut buffer = Vec::with_capacity(max);
                // `take` so a reader never fills more than one chunk.
                let read = (&mut *reader)
                    .take(max as u64)
                    .read_to_end(&mut buffer)
                    .await?;
                Ok((read > 0).then(|| Bytes::from(buffer)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::{FragmentInfo, FragmentOutcome};

    fn fragment(
        sequence: u64,
        body: FragmentBody,
    ) -> (Fragment, crate::fragment::FragmentDelivery) {
        let info = FragmentInfo {
            sequence,
            name: format!("f{sequence}"),
            length: None,
        };
        Fragment::new(info, body)
    }

    /// Collects everything the stage emits, as (sequence, bytes) per fragment.
    async fn collect(mut events: mpsc::Receiver<ChunkEvent>) -> Vec<(u64, Vec<u8>)> {
        let mut fragments = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                ChunkEvent::Begin(fragment) => fragments.push((fragment.info.sequence, Vec::new())),
                ChunkEvent::Chunk(chunk) => {
                    fragments
                        .last_mut()
                        .unwrap()
                        .1
                        .extend_from_slice(match &chunk.data {
                            ChunkData::Bytes(bytes) => bytes,
                            ChunkData::File(_) => panic!("no file ranges were asked for"),
                        })
                }
                ChunkEvent::End => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        fragments
    }

    #[tokio::test]
    async fn chunks_preserve_order_and_content() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file.bin");
        let file_bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &file_bytes).unwrap();

        let (fragment_tx, fragment_rx) = mpsc::channel(4);
        let (event_tx, event_rx) = mpsc::channel(4);
        let stage = ChunkingStage::new(ChunkSize::Fixed(ByteSize(1000)), 3000);
        tokio::spawn(stage.run(fragment_rx, event_tx));
        let (first, _) = fragment(1, FragmentBody::File(path));
        let (second, _) = fragment(2, FragmentBody::Memory(Bytes::from_static(b"hello world")));
        let (third, _) = fragment(3, FragmentBody::Reader(Box::new(&b"from a reader"[..])));
        fragment_tx.send(first).await.unwrap();
        fragment_tx.send(second).await.unwrap();
        fragment_tx.send(third).await.unwrap();
        drop(fragment_tx);

        let fragments = collect(event_rx).await;
        assert_eq!(fragments[0], (1, file_bytes));
        assert_eq!(fragments[1], (2, b"hello world".to_vec()));
        assert_eq!(fragments[2], (3, b"from a reader".to_vec()));
    }

    #[tokio::test]
    async fn bytes_in_flight_never_exceed_the_budget() {
        let (fragment_tx, fragment_rx) = mpsc::channel(4);
        let (event_tx, mut event_rx) = mpsc::channel(1000);
        let stage = ChunkingStage::new(ChunkSize::Fixed(ByteSize(100)), 300);
        tokio::spawn(stage.run(fragment_rx, event_tx));
        let (big, _) = fragment(1, FragmentBody::Memory(Bytes::from(vec![7u8; 10_000])));
        fragment_tx.send(big).await.unwrap();

        // Nobody consumes: the stage must stop after 3 chunks (300 bytes) although the event
        // queue has room for 1000 events.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut held = Vec::new();
        while let Ok(event) = event_rx.try_recv() {
            held.push(event);
        }
        let chunks = held
            .iter()
            .filter(|event| matches!(event, ChunkEvent::Chunk(_)))
            .count();
        assert_eq!(chunks, 3);

        // Releasing the chunks lets it go on.
        held.clear();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let more = std::iter::from_fn(|| event_rx.try_recv().ok())
            .filter(|event| matches!(event, ChunkEvent::Chunk(_)))
            .count();
        assert_eq!(more, 3);
    }

    #[tokio::test]
    async fn a_missing_file_is_unreadable_and_the_next_fragment_goes_on() {
        let (fragment_tx, fragment_rx) = mpsc::channel(4);
        let (event_tx, mut event_rx) = mpsc::channel(16);
        tokio::spawn(
            ChunkingStage::new(ChunkSize::Fixed(ByteSize(64)), 64).run(fragment_rx, event_tx),
        );
        let (missing, delivery) = fragment(1, FragmentBody::File("/nonexistent/streampub".into()));
        let (present, _) = fragment(2, FragmentBody::Memory(Bytes::from_static(b"ok")));
        fragment_tx.send(missing).await.unwrap();
        fragment_tx.send(present).await.unwrap();
        drop(fragment_tx);

        match event_rx.recv().await.unwrap() {
            ChunkEvent::Unreadable(fragment, message) => {
                assert!(message.contains("/nonexistent/streampub"), "{message}");
                fragment.acknowledge(FragmentOutcome::Failed(message.into()));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(delivery.await, FragmentOutcome::Failed(_)));
        assert!(matches!(event_rx.recv().await, Some(ChunkEvent::Begin(_))));
    }

    #[test]
    fn auto_chunk_size_grows_while_the_sink_keeps_up_and_shrinks_when_it_waits() {
        let mut sizer = ChunkSizer::new(ChunkSize::Auto, 4 << 20);
        assert_eq!(sizer.current(), 256 << 10);
        for _ in 0..AUTO_GROW_AFTER * 4 {
            sizer.kept_up();
        }
        assert_eq!(sizer.current(), AUTO_CHUNK_MAX);
        for _ in 0..10 {
            sizer.waited();
        }
        assert_eq!(sizer.current(), AUTO_CHUNK_MIN);
        // One wait resets the streak.
        for _ in 0..AUTO_GROW_AFTER - 1 {
            sizer.kept_up();
        }
        sizer.waited();
        sizer.kept_up();
        assert_eq!(sizer.current(), AUTO_CHUNK_MIN);
        // Never more than half the budget, so two chunks can be in flight.
        let mut small = ChunkSizer::new(ChunkSize::Auto, 1 << 20);
        for _ in 0..AUTO_GROW_AFTER * 4 {
            small.kept_up();
        }
        assert_eq!(small.current(), 512 << 10);
        // A fixed size stays.
        let mut fixed = ChunkSizer::new(ChunkSize::Fixed(ByteSize(1000)), 1 << 20);
        fixed.waited();
        fixed.kept_up();
        assert_eq!(fixed.current(), 1000);
    }

    #[test]
    fn chunk_size_reads_a_size_or_auto() {
        let parse = |yaml: &str| serde_json::from_str::<ChunkSize>(yaml).map_err(|e| e.to_string());
        assert_eq!(parse("\"auto\""), Ok(ChunkSize::Auto));
        assert_eq!(
            parse("\"256KiB\""),
            Ok(ChunkSize::Fixed(ByteSize::kib(256)))
        );
        assert_eq!(parse("4096"), Ok(ChunkSize::Fixed(ByteSize(4096))));
        assert!(parse("\"big\"").unwrap_err().contains("or `auto`"));
    }

    #[tokio::test]
    async fn file_ranges_cover_a_file_within_the_budget_and_other_bodies_stay_bytes() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file.bin");
        std::fs::write(&path, vec![7u8; 2500]).unwrap();
        let (fragment_tx, fragment_rx) = mpsc::channel(4);
        let (event_tx, mut event_rx) = mpsc::channel(16);
        let stage =
            ChunkingStage::new(ChunkSize::Fixed(ByteSize(1000)), 2000).with_file_ranges(true);
        tokio::spawn(stage.run(fragment_rx, event_tx));
        fragment_tx
            .send(fragment(1, FragmentBody::File(path)).0)
            .await
            .unwrap();
        fragment_tx
            .send(fragment(2, FragmentBody::Memory(Bytes::from_static(b"memory"))).0)
            .await
            .unwrap();
        drop(fragment_tx);
        let mut ranges = Vec::new();
        let mut bytes = Vec::new();
        while let Some(event) = event_rx.recv().await {
            if let ChunkEvent::Chunk(chunk) = event {
                match chunk.into_parts().0 {
                    ChunkData::File(range) => ranges.push((range.offset, range.length)),
                    ChunkData::Bytes(data) => bytes.extend_from_slice(&data),
                }
            }
        }
        assert_eq!(ranges, [(0, 1000), (1000, 1000), (2000, 500)]);
        assert_eq!(bytes, b"memory");
    }
}
