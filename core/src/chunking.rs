//! The chunking/backpressure stage: turns fragments into a stream of bounded chunks.
//!
//! Every fragment is read in `chunk_size` pieces. Before reading a chunk the stage takes
//! `chunk_size` permits from a semaphore holding `max_in_flight` permits; the permits travel
//! with the chunk and return when the sink has written it. So at most `max_in_flight` bytes sit
//! between the source's files and the sink whatever the fragment sizes, a slow sink stops the
//! reading, and the next fragment is opened and read ahead while the current one finishes, as
//! far as the bound allows. Order is preserved: one task reads fragments one after another.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::fragment::{Fragment, FragmentBody};
use crate::stage::BodyPreparer;

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
    pub bytes: Bytes,
    _budget: OwnedSemaphorePermit,
}

impl Chunk {
    /// Splits the chunk into its bytes and the budget permit; the permit must be dropped only
    /// once the sink has taken the bytes.
    pub fn into_parts(self) -> (Bytes, OwnedSemaphorePermit) {
        (self.bytes, self._budget)
    }
}

/// Reads fragments in chunks within a byte budget.
#[derive(Clone)]
pub struct ChunkingStage {
    chunk_size: usize,
    budget: Arc<Semaphore>,
    max_in_flight: usize,
    /// Run on each fragment before its body is opened.
    preparers: Vec<Arc<dyn BodyPreparer>>,
}

impl ChunkingStage {
    /// `chunk_size` must not exceed `max_in_flight` (the config checks it).
    pub fn new(chunk_size: u64, max_in_flight: u64) -> Self {
        let max_in_flight = usize::try_from(max_in_flight)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let chunk_size = usize::try_from(chunk_size)
            .unwrap_or(usize::MAX)
            .min(max_in_flight);
        Self {
            chunk_size,
            budget: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
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

    /// The size of the pieces fragments are read in.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Reads every fragment from `fragments` into `events` until the input ends or the
    /// receiver of `events` is dropped (fragments still held are then dropped, which tells
    /// their sources they were abandoned).
    pub async fn run(
        self,
        mut fragments: mpsc::Receiver<Fragment>,
        events: mpsc::Sender<ChunkEvent>,
    ) {
        'fragments: while let Some(mut fragment) = fragments.recv().await {
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
            let mut reader = match BodyReader::open(&mut fragment.body).await {
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
            let failure_context = (fragment.info.name.clone(), fragment.body.describe());
            if events.send(ChunkEvent::Begin(fragment)).await.is_err() {
                return;
            }
            loop {
                let permit = self
                    .budget
                    .clone()
                    .acquire_many_owned(self.chunk_size as u32)
                    .await
                    .expect("the budget semaphore is never closed");
                let event = match reader.next_chunk(self.chunk_size).await {
                    Ok(Some(bytes)) => ChunkEvent::Chunk(Chunk {
                        bytes,
                        _budget: permit,
                    }),
                    Ok(None) => ChunkEvent::End,
                    Err(error) => ChunkEvent::Failed(format!(
                        "reading fragment {} from {} failed: {error}",
                        failure_context.0, failure_context.1
                    )),
                };
                let last = !matches!(event, ChunkEvent::Chunk(_));
                if events.send(event).await.is_err() {
                    return;
                }
                if last {
                    break;
                }
            }
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

/// Reads a fragment's body chunk by chunk.
pub enum BodyReader {
    File {
        file: Arc<std::fs::File>,
        offset: u64,
    },
    Memory(Bytes),
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

impl BodyReader {
    /// Opens a body for reading from its start. A one-shot reader body is taken out of the
    /// fragment; opening it again fails.
    pub async fn open(body: &mut FragmentBody) -> io::Result<Self> {
        match body {
            FragmentBody::File(_) | FragmentBody::Temporary(_) => {
                let path = match body {
                    FragmentBody::Temporary(path) => path.to_path_buf(),
                    FragmentBody::File(path) => path.clone(),
                    _ => unreachable!("matched above"),
                };
                let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
                    .await
                    .map_err(io::Error::other)??;
                Ok(Self::File {
                    file: Arc::new(file),
                    offset: 0,
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

    /// The next chunk of at most `max` bytes, or `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            Self::File { file, offset } => {
                let file = Arc::clone(file);
                let position = *offset;
                // One positioned read per chunk on the blocking pool: no shared cursor, no
                // intermediate buffer.
                let chunk = tokio::task::spawn_blocking(move || {
                    let mut buffer = vec![0u8; max];
                    let read = file.read_at(&mut buffer, position)?;
                    buffer.truncate(read);
                    Ok::<_, io::Error>(buffer)
                })
                .await
                .map_err(io::Error::other)??;
                if chunk.is_empty() {
                    return Ok(None);
                }
                *offset += chunk.len() as u64;
                Ok(Some(Bytes::from(chunk)))
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
                ChunkEvent::Chunk(chunk) => fragments
                    .last_mut()
                    .unwrap()
                    .1
                    .extend_from_slice(&chunk.bytes),
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
        let stage = ChunkingStage::new(1000, 3000);
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
        let stage = ChunkingStage::new(100, 300);
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
        tokio::spawn(ChunkingStage::new(64, 64).run(fragment_rx, event_tx));
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
}
