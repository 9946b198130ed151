//! After a retryable sink failure: reconnect with backoff, then send every unconfirmed
//! fragment and the one in flight again, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::delivery::FragmentResult;
use super::failure::fail_fragment;
use super::input::ChunkInput;
use super::sink_driver::SinkDriver;
use crate::fragment::Fragment;
use crate::runtime::error::PipelineError;
use crate::runtime::stages::StageCall;
use crate::sink::{SessionReason, SinkError};
use crate::units::HumanDuration;

/// How a delivery that may involve reconnects ended.
pub(super) enum Recovery {
    Done,
    /// Shutdown came while the sink was reconnecting: what was not confirmed is left for the
    /// next start.
    Interrupted,
}

impl SinkDriver {
    /// After the sink failed: acknowledges what it confirmed up to its failure (ffmpeg's last
    /// progress report may confirm more), notes how far into the oldest fragment it did not
    /// confirm whole its output got (the waiting one, or else `in_flight`, the fragment the
    /// failure cut short, with its first media time), and takes the fragments it did not
    /// confirm, to be sent again.
    pub(super) async fn take_unconfirmed(
        &mut self,
        in_flight: Option<(u64, Option<Duration>)>,
    ) -> Result<VecDeque<Fragment>, PipelineError> {
        self.acknowledge_confirmed().await?;
        let first_unconfirmed = self
            .confirmations
            .first()
            .map(|(info, start)| (info.sequence, start))
            .or(in_flight);
        let confirmed = self.sink.confirmed_output_time();
        self.clock.session_failed(first_unconfirmed, confirmed);
        Ok(self.confirmations.take_all().collect())
    }

    /// Reconnects after `error` and sends `queue` again, in order, until it is all accepted.
    pub(super) async fn recover(
        &mut self,
        mut queue: VecDeque<Fragment>,
        mut error: SinkError,
    ) -> Result<Recovery, PipelineError> {
        loop {
            // Down until everything is sent again: a fan-out's dispatcher takes back what it
            // queued for this destination meanwhile.
            self.signal_down(true);
            self.stages.abort_fragment();
            if let Some(first) = queue.front() {
                self.stages.rewind(&first.info);
            }
            self.stats.set_last_error(&error.message);
            match self.reconnect(error).await {
                Ok(true) => {}
                Ok(false) => return Ok(Recovery::Interrupted),
                Err(fatal) => {
                    let message: Arc<str> = fatal.to_string().into();
                    for fragment in queue {
                        fail_fragment(
                            &self.pipeline,
                            &self.stats,
                            fragment,
                            "sink_failed",
                            Arc::clone(&message),
                        );
                    }
                    return Err(fatal);
                }
            }
            error = match self.resend(&mut queue).await? {
                None => {
                    self.signal_down(false);
                    return Ok(Recovery::Done);
                }
                Some(next) => next,
            };
            // Whatever the new session accepted before failing is unconfirmed again.
            let in_flight = queue.front().map(|fragment| {
                let sequence = fragment.info.sequence;
                (sequence, self.clock.fragment_start(sequence))
            });
            let mut retry = self.take_unconfirmed(in_flight).await?;
            retry.extend(queue.drain(..));
            queue = retry;
        }
    }

    /// Sends `queue` in order; returns the retryable error that stopped it, leaving the
    /// fragment it stopped at first in `queue`.
    async fn resend(
        &mut self,
        queue: &mut VecDeque<Fragment>,
    ) -> Result<Option<SinkError>, PipelineError> {
        while let Some(mut fragment) = queue.pop_front() {
            if !fragment.body.is_rereadable() {
                let error = PipelineError::Sink(SinkError::fatal(format!(
                    "fragment {} came from a one-shot reader and cannot be sent again after the reconnect",
                    fragment.info.name
                )));
                self.fail_for_sink(fragment, &error);
                return Err(error);
            }
            let mut input = match ChunkInput::reread(&mut fragment.body, self.chunk_size).await {
                Ok(input) => input,
                Err(message) => {
                    self.fail(
                        fragment,
                        "unreadable",
                        format!("{message} after the reconnect"),
                    );
                    continue;
                }
            };
            match self.deliver(&fragment.info, &mut input).await {
                Ok(FragmentResult::Delivered(sent)) => self.accepted(fragment, sent, true).await?,
                Ok(FragmentResult::InputFailed(reason, message)) => {
                    self.fail(fragment, reason, message)
                }
                Err(PipelineError::Sink(error)) if error.retryable => {
                    queue.push_front(fragment);
                    return Ok(Some(error));
                }
                Err(error) => {
                    self.fail_for_sink(fragment, &error);
                    return Err(error);
                }
            }
        }
        Ok(None)
    }

    /// Starts a new sink session after the current one failed with `error`, waiting per the
    /// sink's reconnect policy between attempts; the attempts count per outage (see
    /// [`super::outages`]). Returns `false` if shutdown came first.
    async fn reconnect(&mut self, mut error: SinkError) -> Result<bool, PipelineError> {
        let policy = self.sink.capabilities().reconnect;
        // Progress is media confirmed beyond what any session confirmed before: a session that
        // only replays what was confirmed already (it drops the stream before a fragment
        // ends, every time) does not end the outage.
        let progressed = self.clock.failed_session_progressed();
        self.outages
            .session_failed(self.stats.fragments_published(), progressed, &policy);
        loop {
            let attempt = self.outages.next_attempt();
            if !policy.allows(attempt) {
                let tried = attempt - 1;
                return Err(PipelineError::Sink(SinkError::fatal(if tried == 0 {
                    error.message
                } else {
                    format!(
                        "{} (gave up after {tried} reconnect attempts in {})",
                        error.message,
                        HumanDuration::millis(self.outages.outage_duration())
                    )
                })));
            }
            let delay = policy.delay(attempt);
            let of = match policy.max_attempts {
                None => String::new(),
                Some(max) => format!(" of {max}"),
            };
            warn!(
                event = "sink_reconnecting",
                pipeline = %self.pipeline,
                sink = self.stats.sink(),
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "Sink failed: {error}; reconnecting in {} ms (attempt {attempt}{of})",
                delay.as_millis()
            );
            self.stats.record_reconnect();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return Ok(false),
            }
            self.clock.session_started();
            let started = match self.sink.start_session(SessionReason::Reconnect).await {
                Ok(()) => self.replay_session_start().await,
                Err(error) => Err(error),
            };
            match started {
                Ok(()) => {
                    self.outages
                        .session_started(self.stats.fragments_published());
                    return Ok(true);
                }
                Err(next) if next.retryable => error = next,
                Err(fatal) => return Err(PipelineError::Sink(fatal)),
            }
        }
    }

    /// The session's output is live since `since`: if it is a reconnect, logs it with how
    /// long the outage lasted.
    pub(super) fn went_live(&mut self, since: Instant) {
        let Some(recovered) = self.outages.went_live(since) else {
            return;
        };
        let outage = HumanDuration::millis(recovered.outage);
        info!(
            event = "sink_reconnected",
            pipeline = %self.pipeline,
            sink = self.stats.sink(),
            attempt = recovered.attempts,
            outage_ms = recovered.outage.as_millis() as u64,
            "Sink reconnected: output live again after an outage of {outage} ({} attempts)",
            recovered.attempts
        );
    }

    /// Lets the stages emit what a new session needs first (an init segment).
    async fn replay_session_start(&mut self) -> Result<(), SinkError> {
        let mut items = Vec::new();
        self.stages
            .apply(StageCall::SessionStarted, &mut items)
            .map_err(|error| {
                SinkError::fatal(format!("a stage cannot start a new session: {error}"))
            })?;
        self.write(&mut items).await
    }
}
