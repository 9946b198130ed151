//! Where a fragment's chunks come from: the chunking stage, or the fragment's own body when it
//! is sent again after a reconnect.

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::runtime::chunking::{BodyReader, ChunkData, ChunkEvent};
use crate::runtime::error::PipelineError;

/// Where a fragment's chunks come from: the chunking stage, or the fragment's own body when it
/// is sent again after a reconnect.
pub(super) enum ChunkInput<'a> {
    Chunker {
        events: &'a mut mpsc::Receiver<ChunkEvent>,
        finished: bool,
    },
    Reread {
        reader: BodyReader,
        chunk_size: usize,
    },
}

/// One step of a fragment's input.
pub(super) enum InputItem {
    /// A chunk, with its share of the in-flight budget when it came through the chunking stage.
    Chunk(ChunkData, Option<OwnedSemaphorePermit>),
    End,
    Failed(String),
}

impl ChunkInput<'_> {
    pub(super) async fn next(&mut self) -> Result<InputItem, PipelineError> {
        match self {
            Self::Chunker { events, finished } => {
                let item = match events.recv().await {
                    Some(ChunkEvent::Chunk(chunk)) => {
                        let (data, budget) = chunk.into_parts();
                        InputItem::Chunk(data, Some(budget))
                    }
                    Some(ChunkEvent::End) => InputItem::End,
                    Some(ChunkEvent::Failed(message)) => InputItem::Failed(message),
                    None => {
                        return Err(PipelineError::Internal(
                            "the chunking stage stopped mid-fragment".into(),
                        ))
                    }
                    Some(other) => {
                        return Err(PipelineError::Internal(format!(
                            "chunk event {other:?} inside a fragment"
                        )))
                    }
                };
                *finished = !matches!(item, InputItem::Chunk(..));
                Ok(item)
            }
            Self::Reread { reader, chunk_size } => Ok(match reader.next_chunk(*chunk_size).await {
                Ok(Some(bytes)) => InputItem::Chunk(ChunkData::Bytes(bytes), None),
                Ok(None) => InputItem::End,
                Err(error) => {
                    InputItem::Failed(format!("reading the fragment again failed: {error}"))
                }
            }),
        }
    }

    /// Consumes what is left of the current fragment, so the next event is the next fragment's.
    pub(super) async fn skip_rest(&mut self) {
        if let Self::Chunker { events, finished } = self {
            while !*finished {
                match events.recv().await {
                    Some(ChunkEvent::Chunk(_)) => {}
                    _ => *finished = true,
                }
            }
        }
    }
}
