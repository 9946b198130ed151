//! Where a fragment's chunks come from: the chunking stage (directly, or through a fan-out's
//! queue for this destination), or the fragment's own body when it is sent again after a
//! reconnect or read by a destination that fell behind.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::fragment::FragmentBody;
use crate::runtime::chunking::{BodyReader, BufferPool, ChunkData, ChunkEvent};
use crate::runtime::error::PipelineError;
use crate::runtime::lane_queue::LaneReceiver;

/// The chunk events a sink driver reads: the chunking stage's own channel when the pipeline has
/// one destination, this destination's queue in a fan-out.
pub(crate) enum Events {
    Channel(mpsc::Receiver<ChunkEvent>),
    Lane(LaneReceiver),
}

impl Events {
    pub(super) async fn recv(&mut self) -> Option<ChunkEvent> {
        match self {
            Self::Channel(receiver) => receiver.recv().await,
            Self::Lane(receiver) => receiver.recv().await,
        }
    }
}

/// Where a fragment's chunks come from: the chunking stage, or the fragment's own body.
pub(super) enum ChunkInput<'a> {
    Chunker {
        events: &'a mut Events,
        finished: bool,
        /// Bytes taken as chunks so far, where a [`ChunkEvent::ReadRest`] goes on from.
        taken: u64,
        /// For a [`ChunkEvent::ReadRest`].
        body: &'a mut FragmentBody,
        chunk_size: usize,
    },
    Reread {
        reader: BodyReader,
        chunk_size: usize,
    },
}

/// One step of a fragment's input.
pub(super) enum InputItem {
    /// A chunk, with its share of the in-flight budget when it came through the chunking stage.
    Chunk(ChunkData, Option<Arc<OwnedSemaphorePermit>>),
    End,
    Failed(String),
}

impl<'a> ChunkInput<'a> {
    /// The chunks of a fragment read from the chunking stage's `events`.
    pub(super) fn chunker(
        events: &'a mut Events,
        body: &'a mut FragmentBody,
        chunk_size: usize,
    ) -> Self {
        Self::Chunker {
            events,
            finished: false,
            taken: 0,
            body,
            chunk_size,
        }
    }

    /// The chunks of a fragment read again from its body; the error says why it cannot be.
    pub(super) async fn reread(body: &mut FragmentBody, chunk_size: usize) -> Result<Self, String> {
        let reader = BodyReader::open(body, &BufferPool::default())
            .await
            .map_err(|error| format!("cannot read {} again: {error}", body.describe()))?;
        Ok(Self::Reread { reader, chunk_size })
    }

    pub(super) async fn next(&mut self) -> Result<InputItem, PipelineError> {
        match self {
            Self::Chunker {
                events,
                finished,
                taken,
                body,
                chunk_size,
            } => {
                let item = match events.recv().await {
                    Some(ChunkEvent::Chunk(chunk)) => {
                        let (data, budget) = chunk.into_parts();
                        *taken += data.len() as u64;
                        InputItem::Chunk(data, Some(budget))
                    }
                    Some(ChunkEvent::End) => InputItem::End,
                    Some(ChunkEvent::Failed(message)) => InputItem::Failed(message),
                    Some(ChunkEvent::ReadRest) => {
                        *finished = true;
                        let (skip, chunk_size) = (*taken, *chunk_size);
                        let mut rest = match Self::reread(body, chunk_size).await {
                            Ok(rest) => rest,
                            Err(message) => return Ok(InputItem::Failed(message)),
                        };
                        if let Self::Reread { reader, .. } = &mut rest {
                            if let Err(error) = reader.skip(skip) {
                                return Ok(InputItem::Failed(error.to_string()));
                            }
                        }
                        *self = rest;
                        return Box::pin(self.next()).await;
                    }
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
        if let Self::Chunker {
            events, finished, ..
        } = self
        {
            while !*finished {
                match events.recv().await {
                    Some(ChunkEvent::Chunk(_)) => {}
                    _ => *finished = true,
                }
            }
        }
    }
}
