//! Sending one fragment through the stages into the sink, once.

use std::time::Instant;

use tracing::{debug, warn};

use super::confirmations::Sent;
use super::input::{ChunkInput, InputItem};
use super::sink_driver::SinkDriver;
use crate::fragment::FragmentInfo;
use crate::runtime::chunking::ChunkData;
use crate::runtime::error::PipelineError;
use crate::runtime::pipeline_checkpoint::PARTIAL_SAVE_STEP;
use crate::runtime::stages::StageCall;
use crate::sink::{SessionReason, SinkError};
use crate::stage::StageItem;

/// Chunk progress is logged at DEBUG every this many chunks.
const PROGRESS_EVERY_CHUNKS: u64 = 10;

/// How one delivery of a fragment ended, short of a sink failure.
pub(super) enum FragmentResult {
    /// The sink accepted every byte.
    Delivered(Sent),
    /// Its input was bad (unreadable, rejected by a stage): it fails alone, the pipeline goes on.
    /// Its input or a stage failed: the reason (`unreadable`, `refused`) and why.
    InputFailed(&'static str, String),
}

impl SinkDriver {
    /// Sends one fragment's chunks through the stages into the sink, once.
    pub(super) async fn deliver(
        &mut self,
        info: &FragmentInfo,
        input: &mut ChunkInput<'_>,
    ) -> Result<FragmentResult, PipelineError> {
        let mut items = Vec::new();
        self.clock.delivery_started(info.sequence);
        if let Some(offset) = self.clock.resume_offset(info.sequence) {
            self.stages.resume_fragment(offset);
        }
        self.sink.begin_fragment(info).await?;
        let mut started = None;
        let stage_call = StageCall::Begin(info);
        if let Err(message) = self
            .run_stages(stage_call, &mut items, &mut started)
            .await?
        {
            return self.abort(input, "refused", message).await;
        }

        let (mut chunks, mut bytes) = (0u64, 0u64);
        loop {
            match input.next().await? {
                InputItem::Chunk(data, budget) => {
                    chunks += 1;
                    bytes += data.len() as u64;
                    match data {
                        ChunkData::Bytes(data) => {
                            let stage_call = StageCall::Chunk(data);
                            if let Err(message) = self
                                .run_stages(stage_call, &mut items, &mut started)
                                .await?
                            {
                                return self.abort(input, "refused", message).await;
                            }
                        }
                        // Only sent when there are no stages: straight to the sink.
                        ChunkData::File(range) => {
                            started.get_or_insert_with(Instant::now);
                            self.sink.write_file_range(range).await?;
                        }
                    }
                    drop(budget);
                    self.acknowledge_confirmed().await?;
                    self.save_progress(Some(info)).await?;
                    if chunks % PROGRESS_EVERY_CHUNKS == 0 {
                        debug!(
                            pipeline = %self.pipeline,
                            sink = self.stats.sink(),
                            "Streamed {chunks} chunks ({} KiB) for fragment {}",
                            bytes / 1024,
                            info.sequence
                        );
                    }
                }
                InputItem::End => {
                    let stage_call = StageCall::End;
                    if let Err(message) = self
                        .run_stages(stage_call, &mut items, &mut started)
                        .await?
                    {
                        return self.abort(input, "refused", message).await;
                    }
                    let transfer_time =
                        started.map(|started| started.elapsed()).unwrap_or_default();
                    self.sink.end_fragment().await?;
                    debug!(
                        pipeline = %self.pipeline,
                        sink = self.stats.sink(),
                        "Completed streaming {chunks} chunks ({} KiB) for fragment {}",
                        bytes / 1024,
                        info.sequence
                    );
                    return Ok(FragmentResult::Delivered(Sent {
                        bytes,
                        transfer_time,
                        media_start: self.clock.fragment_start(info.sequence),
                    }));
                }
                InputItem::Failed(message) => {
                    return self.abort(input, "unreadable", message).await
                }
            }
        }
    }

    /// With a `state_dir`, saves how far into the oldest fragment not confirmed whole (a
    /// waiting one, or `in_flight`) the output is confirmed, every `PARTIAL_SAVE_STEP` of
    /// media, so that after a crash that fragment resumes there.
    pub(super) async fn save_progress(
        &mut self,
        in_flight: Option<&FragmentInfo>,
    ) -> Result<(), PipelineError> {
        if !self.confirmations.records_state() {
            return Ok(());
        }
        // An archive confirms whole fragments: nothing to save.
        let Some(confirmed) = self.sink.confirmed_output_time() else {
            return Ok(());
        };
        let (fragment, start) = match (self.confirmations.first(), in_flight) {
            (Some((fragment, start)), _) => (fragment, start),
            (None, Some(fragment)) => (fragment, self.clock.fragment_start(fragment.sequence)),
            (None, None) => return Ok(()),
        };
        let Some(offset) = self.clock.confirmed_offset(start, Some(confirmed)) else {
            return Ok(());
        };
        let fragment = fragment.clone();
        if !self
            .clock
            .progress_to_save(fragment.sequence, offset, PARTIAL_SAVE_STEP)
        {
            return Ok(());
        }
        self.confirmations.record_partial(fragment, offset).await
    }

    /// Gives up on the current fragment: skips the rest of its chunks and lets the stages and
    /// the sink undo what they can.
    async fn abort(
        &mut self,
        input: &mut ChunkInput<'_>,
        reason: &'static str,
        message: String,
    ) -> Result<FragmentResult, PipelineError> {
        input.skip_rest().await;
        self.stages.abort_fragment();
        self.sink.abort_fragment().await?;
        Ok(FragmentResult::InputFailed(reason, message))
    }

    /// Runs the stages and writes what they produced (also what a failing stage emitted before
    /// its error), noting when the first chunk went to the sink. The inner error is the stage's.
    async fn run_stages(
        &mut self,
        call: StageCall<'_>,
        items: &mut Vec<StageItem>,
        started: &mut Option<Instant>,
    ) -> Result<Result<(), String>, SinkError> {
        let staged = self.stages.apply(call, items);
        if !items.is_empty() {
            started.get_or_insert_with(Instant::now);
        }
        self.write(items).await?;
        Ok(staged.map_err(|error| error.message))
    }

    pub(super) async fn write(&mut self, items: &mut Vec<StageItem>) -> Result<(), SinkError> {
        for item in items.drain(..) {
            match item {
                StageItem::Chunk(chunk) => self.sink.write_chunk(chunk).await?,
                StageItem::MediaSpan(span) => {
                    self.filler.written_until(span.end);
                    let span = self.clock.span_for_sink(span);
                    self.sink.media_span(span);
                }
                StageItem::MediaTime(time) => {
                    self.clock.media_written(time);
                    if let Some(pacer) = &mut self.pacer {
                        if let Some(signal) = &self.signal {
                            signal.set_pacing(true);
                        }
                        pacer.wait_for(time, &self.shutdown).await;
                        if let Some(signal) = &self.signal {
                            signal.set_pacing(false);
                        }
                        if let Some(due) = pacer.due(time) {
                            let now = tokio::time::Instant::now();
                            match due.checked_duration_since(now) {
                                Some(ahead) => self.stats.record_paced(ahead, false),
                                None => self.stats.record_paced(now - due, true),
                            }
                        }
                    }
                }
                StageItem::NewSession { change } => {
                    warn!(
                        event = "session_started",
                        pipeline = %self.pipeline,
                        sink = self.stats.sink(),
                        reason = "stream_changed",
                        change = %change,
                        "The stream changed ({change}): starting a new sink session"
                    );
                    self.sink
                        .start_session(SessionReason::StreamChanged { change })
                        .await?;
                    self.clock.session_started();
                }
            }
        }
        Ok(())
    }
}
