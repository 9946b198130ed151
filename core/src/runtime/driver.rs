//! The sink driver: feeds chunks through the stages into the sink, one fragment at a time, and
//! acknowledges each fragment once the sink has fully taken it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::stages::{StageCall, StageChain};
use super::stats::PipelineStats;
use super::PipelineError;
use crate::chunking::ChunkEvent;
use crate::fragment::{Fragment, FragmentInfo, FragmentOutcome};
use crate::sink::{Sink, SinkError};
use crate::stage::StageItem;

/// Chunk progress is logged at DEBUG every this many chunks, as in the seed.
const PROGRESS_EVERY_CHUNKS: u64 = 10;

pub(crate) struct SinkDriver {
    pub(crate) pipeline: String,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) stages: StageChain,
    pub(crate) stats: Arc<PipelineStats>,
    /// Cancelled on shutdown: the fragment in flight may finish, no new one starts.
    pub(crate) shutdown: CancellationToken,
    pub(crate) shutdown_timeout: Duration,
}

/// How one fragment ended, short of a sink failure.
enum FragmentResult {
    Delivered {
        bytes: u64,
        started: Instant,
    },
    /// Its input was bad (unreadable, rejected by a stage): it fails alone, the pipeline goes on.
    InputFailed(String),
}

impl SinkDriver {
    /// Runs until the events end, shutdown, or the sink fails; closes the sink in every case.
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<ChunkEvent>,
    ) -> Result<(), PipelineError> {
        let result = self.deliver_all(&mut events).await;
        // Release the chunking stage (and with it every fragment still queued) before closing.
        drop(events);
        let closed = tokio::time::timeout(self.shutdown_timeout, self.sink.close()).await;
        match closed {
            Ok(Ok(())) => result,
            Ok(Err(error)) => result.and(Err(PipelineError::Sink(error))),
            Err(_) => result.and(Err(PipelineError::Sink(SinkError::fatal(format!(
                "closing the sink took longer than shutdown_timeout ({:?})",
                self.shutdown_timeout
            ))))),
        }
    }

    async fn deliver_all(
        &mut self,
        events: &mut mpsc::Receiver<ChunkEvent>,
    ) -> Result<(), PipelineError> {
        loop {
            let event = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                event = events.recv() => event,
            };
            match event {
                None => return Ok(()),
                Some(ChunkEvent::Unreadable(fragment, message)) => self.fail(fragment, message),
                Some(ChunkEvent::Begin(fragment)) => {
                    let shutdown = self.shutdown.clone();
                    let deadline = shutdown_deadline(&shutdown, self.shutdown_timeout);
                    let result = tokio::select! {
                        result = self.deliver(&fragment.info, events) => result,
                        () = deadline => Err(PipelineError::ShutdownTimeout(self.shutdown_timeout)),
                    };
                    match result {
                        Ok(FragmentResult::Delivered { bytes, started }) => {
                            let total = self.stats.record_published(bytes);
                            info!(
                                pipeline = %self.pipeline,
                                fragment = %fragment.info.name,
                                "Published fragment {} ({:.2} KB in {} ms, {} total)",
                                fragment.info.sequence,
                                bytes as f64 / 1024.0,
                                started.elapsed().as_millis(),
                                total,
                            );
                            fragment.acknowledge(FragmentOutcome::Delivered);
                        }
                        Ok(FragmentResult::InputFailed(message)) => self.fail(fragment, message),
                        Err(error) => {
                            self.stats.record_failed();
                            fragment.acknowledge(FragmentOutcome::Failed(error.to_string().into()));
                            return Err(error);
                        }
                    }
                }
                Some(other) => {
                    return Err(PipelineError::Internal(format!(
                        "chunk event {other:?} outside a fragment"
                    )))
                }
            }
        }
    }

    fn fail(&self, fragment: Fragment, message: String) {
        warn!(
            pipeline = %self.pipeline,
            fragment = %fragment.info.name,
            "Fragment {} failed and was skipped: {message}",
            fragment.info.sequence
        );
        self.stats.record_failed();
        fragment.acknowledge(FragmentOutcome::Failed(message.into()));
    }

    /// Sends one fragment's chunks through the stages into the sink.
    async fn deliver(
        &mut self,
        info: &FragmentInfo,
        events: &mut mpsc::Receiver<ChunkEvent>,
    ) -> Result<FragmentResult, PipelineError> {
        let mut items = Vec::new();
        self.sink.begin_fragment(info).await?;
        let started = Instant::now();
        if let Err(error) = self.stages.apply(StageCall::Begin(info), &mut items) {
            return self.abort(events, error.message).await;
        }
        self.write(&mut items).await?;

        let (mut chunks, mut bytes) = (0u64, 0u64);
        loop {
            let Some(event) = events.recv().await else {
                return Err(PipelineError::Internal(
                    "the chunking stage stopped mid-fragment".into(),
                ));
            };
            match event {
                ChunkEvent::Chunk(chunk) => {
                    let (data, budget) = chunk.into_parts();
                    chunks += 1;
                    bytes += data.len() as u64;
                    if let Err(error) = self.stages.apply(StageCall::Chunk(data), &mut items) {
                        return self.abort(events, error.message).await;
                    }
                    self.write(&mut items).await?;
                    drop(budget);
                    if chunks % PROGRESS_EVERY_CHUNKS == 0 {
                        debug!(
                            pipeline = %self.pipeline,
                            "Streamed {chunks} chunks ({} KB) for fragment {}",
                            bytes / 1024,
                            info.sequence
                        );
                    }
                }
                ChunkEvent::End => {
                    if let Err(error) = self.stages.apply(StageCall::End, &mut items) {
                        return self.abort(events, error.message).await;
                    }
                    self.write(&mut items).await?;
                    self.sink.end_fragment().await?;
                    debug!(
                        pipeline = %self.pipeline,
                        "Completed streaming {chunks} chunks ({} KB) for fragment {}",
                        bytes / 1024,
                        info.sequence
                    );
                    return Ok(FragmentResult::Delivered { bytes, started });
                }
                ChunkEvent::Failed(message) => return self.abort(events, message).await,
                other => {
                    return Err(PipelineError::Internal(format!(
                        "chunk event {other:?} inside a fragment"
                    )))
                }
            }
        }
    }

    /// Gives up on the current fragment: skips the rest of its chunks and lets the stages and
    /// the sink undo what they can.
    async fn abort(
        &mut self,
        events: &mut mpsc::Receiver<ChunkEvent>,
        message: String,
    ) -> Result<FragmentResult, PipelineError> {
        self.stages.abort_fragment();
        self.sink.abort_fragment().await?;
        while let Some(event) = events.recv().await {
            if matches!(event, ChunkEvent::End | ChunkEvent::Failed(_)) {
                break;
            }
        }
        Ok(FragmentResult::InputFailed(message))
    }

    async fn write(&mut self, items: &mut Vec<StageItem>) -> Result<(), SinkError> {
        for item in items.drain(..) {
            match item {
                StageItem::Chunk(chunk) => self.sink.write_chunk(chunk).await?,
                StageItem::NewSession => {
                    warn!(pipeline = %self.pipeline, "A stage requested a new sink session");
                    self.sink.start_session().await?;
                }
            }
        }
        Ok(())
    }
}

/// Completes `timeout` after shutdown was requested; never before.
async fn shutdown_deadline(shutdown: &CancellationToken, timeout: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(timeout).await;
}
