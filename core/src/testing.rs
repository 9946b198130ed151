//! Harnesses for testing a plugin without a pipeline file (the `testing` feature): a stage
//! fed whole files in chunks split anywhere, and a sink driven through fragments as the
//! runtime drives it. The runtime's chunking stage is here too, for its benchmark
//! (`cargo bench -p streampub-core --features testing --bench chunking`).
//!
//! ```
//! use streampub_core::plugin::{Bytes, FragmentInfo, Stage, StageError, StageOutput};
//! use streampub_core::testing::{fragment, joined, run_stage};
//!
//! /// Writes every fragment in upper case.
//! struct Shout;
//!
//! impl Stage for Shout {
//!     fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
//!         output.push_chunk(Bytes::from(chunk.to_ascii_uppercase()));
//!         Ok(())
//!     }
//! }
//!
//! let (items, result) = run_stage(&mut Shout, &fragment(1, "a.txt"), b"hello", &[2]);
//! assert!(result.is_ok());
//! assert_eq!(joined(&items), b"HELLO");
//! ```

use bytes::Bytes;

pub use crate::chunk::ChunkSize;
pub use crate::runtime::chunking::{ChunkEvent, ChunkingStage};

use crate::fragment::FragmentInfo;
use crate::sink::{Sink, SinkError};
use crate::stage::{Stage, StageError, StageItem, StageOutput};

/// A fragment's description, as a source gives it: `sequence`, `name`, no known length.
pub fn fragment(sequence: u64, name: &str) -> FragmentInfo {
    FragmentInfo {
        sequence,
        name: name.to_owned(),
        length: None,
    }
}

/// Runs `file` through `stage` as `fragment`, in chunks of the given sizes (cycled); returns
/// what the stage produced and the result of the fragment (aborted on failure, as the runtime
/// does).
pub fn run_stage(
    stage: &mut dyn Stage,
    fragment: &FragmentInfo,
    file: &[u8],
    splits: &[usize],
) -> (Vec<StageItem>, Result<(), StageError>) {
    let mut output = StageOutput::default();
    let result = (|| {
        stage.begin_fragment(fragment, &mut output)?;
        for chunk in chunks(file, splits) {
            stage.process_chunk(chunk, &mut output)?;
        }
        stage.end_fragment(&mut output)
    })();
    if result.is_err() {
        stage.abort_fragment();
    }
    (output.drain().collect(), result)
}

/// `file` cut into chunks of the given sizes (cycled; 0 counts as 1).
fn chunks<'a>(file: &'a [u8], splits: &'a [usize]) -> impl Iterator<Item = Bytes> + 'a {
    let bytes = Bytes::copy_from_slice(file);
    let mut split = splits.iter().cycle();
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let size = split.next().copied().unwrap_or(usize::MAX);
        let end = at + size.max(1).min(bytes.len() - at);
        let chunk = bytes.slice(at..end);
        at = end;
        Some(chunk)
    })
}

/// The bytes of the chunks among `items`, joined.
pub fn joined(items: &[StageItem]) -> Vec<u8> {
    items
        .iter()
        .filter_map(|item| match item {
            StageItem::Chunk(chunk) => Some(chunk.as_ref()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

/// The media times a stage marked for pacing, in order.
pub fn media_times(items: &[StageItem]) -> Vec<std::time::Duration> {
    items
        .iter()
        .filter_map(|item| match item {
            StageItem::MediaTime(time) => Some(*time),
            _ => None,
        })
        .collect()
}

/// Feeds a new `S` `rounds` damaged versions of `good` (random bytes, `good` cut short,
/// `good` with bytes changed, some after a piece of `good`), each followed by `good` itself,
/// in chunks of random sizes. Whatever it makes of them, it must not panic.
pub fn feed_damaged_copies<S: Stage + Default>(good: &[u8], rounds: usize) {
    let mut random = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    for round in 0..rounds {
        let mut input = match round % 3 {
            0 => (0..(next() % 400))
                .map(|_| next() as u8)
                .collect::<Vec<u8>>(),
            1 => good[..(next() as usize % good.len())].to_vec(),
            _ => {
                let mut damaged = good.to_vec();
                for _ in 0..=(next() % 6) {
                    let at = next() as usize % damaged.len();
                    damaged[at] = next() as u8;
                }
                damaged
            }
        };
        if round % 5 == 0 {
            input.splice(0..0, good[..good.len().min(200)].iter().copied());
        }
        let mut stage = S::default();
        let splits = [(next() % 50) as usize + 1];
        let _ = run_stage(&mut stage, &fragment(1, "damaged-1"), &input, &splits);
        let _ = run_stage(&mut stage, &fragment(2, "damaged-2"), good, &splits);
    }
}

/// Publishes `fragments` (name, bytes) through `sink` in chunks of `chunk_size`, as the
/// runtime does when nothing fails (begin, chunks, end, each in turn), then closes it. The
/// first error stops it.
pub async fn publish(
    sink: &mut dyn Sink,
    fragments: &[(&str, &[u8])],
    chunk_size: usize,
) -> Result<(), SinkError> {
    for (index, (name, bytes)) in fragments.iter().enumerate() {
        let mut info = fragment(index as u64 + 1, name);
        info.length = Some(bytes.len() as u64);
        sink.begin_fragment(&info).await?;
        for chunk in chunks(bytes, &[chunk_size]) {
            sink.write_chunk(chunk).await?;
        }
        sink.end_fragment().await?;
    }
    sink.close().await
}

/// Counts on a [`StatusBoard`] as the runtime does, for tests of what reads it (metrics,
/// health, status): outside core, only the runtime writes stats, so these are the one way in.
pub mod stats {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::runtime::{PipelineStats, StatusBoard};

    /// A pipeline on `board`, as a starting pipeline is added.
    pub fn add_pipeline(board: &StatusBoard, name: &str) -> Arc<PipelineStats> {
        board.add(name)
    }

    /// A destination of a fan-out on `pipeline`.
    pub fn add_destination(
        pipeline: &PipelineStats,
        name: &str,
        required: bool,
    ) -> Arc<PipelineStats> {
        pipeline.add_sink(name, required)
    }

    /// A fragment `name` of `bytes` confirmed `latency` after it began.
    pub fn record_published(stats: &PipelineStats, name: &str, bytes: u64, latency: Duration) {
        stats.record_published(name, bytes, latency);
    }

    /// A fragment a destination skipped.
    pub fn record_skipped(stats: &PipelineStats) {
        stats.record_skipped();
    }
}
