//! The sink driver: feeds chunks through the stages into the sink, one fragment at a time,
//! acknowledges each fragment once the sink has fully taken it, and reconnects the sink when it
//! fails with a retryable error, sending the fragment in flight again from its start.
//!
//! - [`sink_driver`]: the driver's state, which the modules below add methods to;
//! - [`input`]: where a fragment's chunks come from (the chunking stage, or a re-read);
//! - [`delivery`]: one fragment through the stages into the sink;
//! - [`confirmations`]: accepted fragments waiting for the sink's confirmation;
//! - [`recovery`]: reconnecting and resending after a retryable failure;
//! - [`outages`]: failures counted per outage, and when a reconnect is done;
//! - [`resume`]: where a fragment cut short is sent again from;
//! - [`filler`]: filler on a paced sink while upstream is late ([`filler_state`]: what it
//!   knows of the gap);
//! - [`failure`]: how a fragment that failed is told.

mod confirmations;
mod delivery;
mod failure;
mod filler;
mod filler_state;
mod input;
mod outages;
mod recovery;
mod resume;
mod sink_driver;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::info;

pub(crate) use self::confirmations::{Confirmations, Sent};
use self::delivery::FragmentResult;
pub(crate) use self::failure::fail_fragment;
use self::input::ChunkInput;
pub(crate) use self::input::Events;
pub(crate) use self::outages::Outages;
use self::recovery::Recovery;
pub(crate) use self::sink_driver::SinkDriver;
use super::chunking::ChunkEvent;
use super::error::PipelineError;
pub(crate) use super::pacer::Pacer;
use super::pipeline_checkpoint::Snapshot;
use crate::fragment::{Fragment, FragmentInfo, FragmentOutcome};
use crate::sink::SinkError;
use crate::units::HumanDuration;

/// How often an idle driver asks the sink whether it has confirmed more fragments.
const CONFIRMATION_POLL: Duration = Duration::from_millis(100);

impl SinkDriver {
    /// Runs until the events end, shutdown, or the sink fails; closes the sink in every case.
    pub(crate) async fn run(mut self, mut events: Events) -> Result<(), PipelineError> {
        let delivered = self.deliver_all(&mut events).await;
        // Release the chunking stage (and with it every fragment still queued) before closing.
        drop(events);
        // At the end of the input the sink takes as long as it needs; after a shutdown request,
        // at most shutdown_timeout.
        let shutdown = self.shutdown.clone();
        let timeout = self.shutdown_timeout;
        let closed = tokio::select! {
            closed = self.close() => closed,
            () = shutdown_deadline(&shutdown, timeout) => Err(PipelineError::Sink(SinkError::fatal(format!(
                "closing the sink took longer than shutdown_timeout ({})",
                HumanDuration(timeout)
            )))),
        };
        delivered.and(closed)
    }

    async fn deliver_all(&mut self, events: &mut Events) -> Result<(), PipelineError> {
        loop {
            let filler_wake = self.filler_wake();
            let event = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                event = events.recv() => event,
                // Upstream is late and the media written so far has run out: fill.
                () = sleep_until(filler_wake), if filler_wake.is_some() => {
                    match self.fill_step().await? {
                        Recovery::Done => continue,
                        Recovery::Interrupted => return Ok(()),
                    }
                }
                // While idle, the sink may still confirm what it took last, or go live.
                () = tokio::time::sleep(CONFIRMATION_POLL), if !self.confirmations.is_empty() || self.outages.watching_live() => {
                    self.acknowledge_confirmed().await?;
                    self.save_progress(None).await?;
                    continue;
                }
            };
            let (fragment, from_body) = match event {
                None => return Ok(()),
                Some(ChunkEvent::Unreadable(fragment, reason, message)) => {
                    self.fail(fragment, reason, message);
                    continue;
                }
                Some(ChunkEvent::Begin(fragment))
                    if self.confirmations.already_published(&fragment.info) =>
                {
                    self.skip_published(fragment, Some(events)).await;
                    continue;
                }
                // Read from its body: no chunks of it to skip.
                Some(ChunkEvent::ReadBody(fragment))
                    if self.confirmations.already_published(&fragment.info) =>
                {
                    self.skip_published(fragment, None).await;
                    continue;
                }
                Some(ChunkEvent::Begin(fragment)) => (fragment, false),
                Some(ChunkEvent::ReadBody(fragment)) => (fragment, true),
                Some(other) => {
                    return Err(PipelineError::Internal(format!(
                        "chunk event {other:?} outside a fragment"
                    )))
                }
            };
            self.fragment_arrived(&fragment.info);
            self.resume_where_the_last_run_stopped(&fragment.info);
            let shutdown = self.shutdown.clone();
            let deadline = shutdown_deadline(&shutdown, self.shutdown_timeout);
            let result = tokio::select! {
                result = self.publish(fragment, events, from_body) => result,
                () = deadline => Err(PipelineError::ShutdownTimeout(self.shutdown_timeout)),
            };
            match result? {
                Recovery::Done => {}
                Recovery::Interrupted => return Ok(()),
            }
        }
    }

    /// Closes the sink; fragments it took are acknowledged. A retryable failure with fragments
    /// unconfirmed sends them to a new session and closes again.
    async fn close(&mut self) -> Result<(), PipelineError> {
        loop {
            match self.sink.close().await {
                Ok(()) => {
                    // A session that finished cleanly was live, even if closing came first.
                    if self.outages.watching_live() {
                        self.went_live(Instant::now());
                    }
                    return self.confirmations.confirm_all().await;
                }
                Err(error) if error.retryable && !self.confirmations.is_empty() => {
                    let queue = self.take_unconfirmed(None).await?;
                    match self.recover(queue, error).await? {
                        Recovery::Done => {}
                        Recovery::Interrupted => return Ok(()),
                    }
                }
                Err(error) => {
                    self.confirmations.fail_all(&error.message.clone().into());
                    return Err(PipelineError::Sink(error));
                }
            }
        }
    }

    /// Acknowledges, oldest first, the fragments the sink now confirms; logs a reconnect as
    /// done once the new session's output is live.
    async fn acknowledge_confirmed(&mut self) -> Result<(), PipelineError> {
        if self.outages.watching_live() {
            if let Some(since) = self.sink.output_live_since() {
                self.went_live(since);
            }
        }
        // Called after every chunk: ask the sink only when something waits for it.
        if self.confirmations.is_empty() {
            return Ok(());
        }
        let unconfirmed = self.sink.unconfirmed();
        if let Some(last) = self.confirmations.confirm_all_but(unconfirmed).await? {
            self.stages.published(&last);
            self.clock.published(last.sequence);
        }
        Ok(())
    }

    /// A fragment that an earlier run's output confirmed part of before it stopped is sent
    /// from there (its last keyframe before that point).
    fn resume_where_the_last_run_stopped(&mut self, fragment: &FragmentInfo) {
        let Some(offset) = self.confirmations.take_partial(fragment) else {
            return;
        };
        info!(
            event = "fragment_resumed",
            pipeline = %self.pipeline,
            sink = self.stats.sink(),
            fragment = %fragment.name,
            sequence = fragment.sequence,
            confirmed_ms = offset.as_millis() as u64,
            "Fragment {} was confirmed up to {} before the last stop; sending it from its last \
             keyframe before that",
            fragment.name,
            HumanDuration::millis(offset)
        );
        self.clock.resume_after_restart(fragment.sequence, offset);
    }

    /// Acknowledges a fragment that an earlier run published although its source offers it
    /// again, without sending it (skipping its chunks in `events`, when it comes with chunks).
    async fn skip_published(&mut self, mut fragment: Fragment, events: Option<&mut Events>) {
        if let Some(events) = events {
            ChunkInput::chunker(events, &mut fragment.body, self.chunk_size)
                .skip_rest()
                .await;
        }
        info!(
            event = "fragment_skipped",
            pipeline = %self.pipeline,
            sink = self.stats.sink(),
            fragment = %fragment.info.name,
            reason = "already_published",
            "Fragment {} was published before the last stop; acknowledged without sending it again",
            fragment.info.name
        );
        self.stats.record_skipped();
        fragment.acknowledge(FragmentOutcome::Delivered);
    }

    /// Keeps a fragment the sink has accepted ("sent"), with the sink's and the stages' state
    /// after it, until the sink confirms it ("published"). A fragment the sink does not confirm
    /// at once (a process still reading ahead) is logged as sent.
    async fn accepted(
        &mut self,
        fragment: Fragment,
        sent: Sent,
        resent: bool,
    ) -> Result<(), PipelineError> {
        let info = fragment.info.clone();
        // Before the fragment can be confirmed (and its resume point forgotten).
        let resumed_at_ms = self
            .clock
            .resumed_at(info.sequence)
            .map(|at| at.as_millis() as u64);
        let after = if self.confirmations.records_state() {
            Snapshot {
                sink: self.sink.checkpoint(),
                stages: self.stages.checkpoint(),
            }
        } else {
            Snapshot::default()
        };
        self.confirmations.push(fragment, sent, after);
        self.acknowledge_confirmed().await?;
        let waiting = self.confirmations.is_waiting(info.sequence);
        let (event, what) = match (resent, waiting) {
            (true, _) => ("fragment_resent", "Resent fragment"),
            (false, true) => ("fragment_sent", "Sent fragment"),
            (false, false) => return Ok(()),
        };
        info!(
            event,
            pipeline = %self.pipeline,
            sink = self.stats.sink(),
            fragment = %info.name,
            sequence = info.sequence,
            bytes = sent.bytes,
            transfer_ms = sent.transfer_time.as_millis() as u64,
            resumed_at_ms,
            "{what} {} ({:.2} KiB in {} ms{}){}",
            info.sequence,
            sent.bytes as f64 / 1024.0,
            sent.transfer_time.as_millis(),
            match resumed_at_ms {
                Some(at) => format!(", from its keyframe at {:.3} s", at as f64 / 1000.0),
                None => String::new(),
            },
            if waiting {
                "; published once the sink confirms it"
            } else {
                ""
            },
        );
        Ok(())
    }

    /// Delivers one fragment from the chunking stage, or read from its body (`from_body`: a
    /// fan-out's destination that fell behind); on a retryable sink failure, reconnects and
    /// resends it together with every fragment not yet confirmed.
    async fn publish(
        &mut self,
        mut fragment: Fragment,
        events: &mut Events,
        from_body: bool,
    ) -> Result<Recovery, PipelineError> {
        let mut input = if from_body {
            match ChunkInput::reread(&mut fragment.body, self.chunk_size).await {
                Ok(input) => input,
                Err(message) => {
                    self.fail(fragment, "unreadable", message);
                    return Ok(Recovery::Done);
                }
            }
        } else {
            ChunkInput::chunker(events, &mut fragment.body, self.chunk_size)
        };
        let error = match self.deliver(&fragment.info, &mut input).await {
            Ok(FragmentResult::Delivered(sent)) => {
                self.accepted(fragment, sent, false).await?;
                return Ok(Recovery::Done);
            }
            Ok(FragmentResult::InputFailed(reason, message)) => {
                self.fail(fragment, reason, message);
                return Ok(Recovery::Done);
            }
            Err(PipelineError::Sink(error)) if error.retryable => error,
            Err(error) => {
                self.fail_for_sink(fragment, &error);
                return Err(error);
            }
        };
        // Before waiting for the rest of the fragment: a fan-out's dispatcher then takes the
        // rest back instead of streaming it to a destination that is down.
        self.signal_down(true);
        input.skip_rest().await;
        let in_flight = (
            fragment.info.sequence,
            self.clock.fragment_start(fragment.info.sequence),
        );
        let mut queue = self.take_unconfirmed(Some(in_flight)).await?;
        queue.push_back(fragment);
        self.recover(queue, error).await
    }
}

/// Completes at `wake`; never if there is none.
async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(wake) => tokio::time::sleep_until(wake).await,
        None => std::future::pending().await,
    }
}

/// Completes `timeout` after shutdown was requested; never before.
async fn shutdown_deadline(shutdown: &CancellationToken, timeout: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(timeout).await;
}
