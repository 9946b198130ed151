//! Filler while upstream is late: when the next fragment is not there as the media written so
//! far runs out on a paced sink, the stages continue the stream in small steps (see
//! [`crate::plugin::Stage::fill`]) until the fragment comes; it then takes over at once.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::filler_state::Gap;
use super::recovery::Recovery;
use super::sink_driver::SinkDriver;
use crate::fragment::FragmentInfo;
use crate::runtime::error::PipelineError;
use crate::runtime::stages::StageCall;
use crate::units::HumanDuration;

/// How much filler each step adds. A fragment that arrives meanwhile starts at most this far
/// ahead of the wall clock, so it is written at once; and a receiver's buffer never runs dry
/// by more than this.
pub(crate) const FILL_STEP: Duration = Duration::from_millis(200);

impl SinkDriver {
    /// When the next filler step is due, if the sink fills: as the media written so far
    /// reaches the wall clock.
    pub(super) fn filler_wake(&self) -> Option<Instant> {
        let pacer = self.pacer.as_ref().filter(|pacer| pacer.fills())?;
        if self.filler.failed {
            return None;
        }
        pacer.due(self.filler.timeline_end?)
    }

    /// Adds one step of filler; logs the start of a gap.
    pub(super) async fn fill_step(&mut self) -> Result<Recovery, PipelineError> {
        let (Some(end), Some(pacer)) = (self.filler.timeline_end, &self.pacer) else {
            return Ok(Recovery::Done);
        };
        if self.filler.gap.is_none() {
            let late = self.filler.last_sequence.map_or(1, |sequence| sequence + 1);
            warn!(
                event = "filler_started",
                pipeline = %self.pipeline,
                sink = self.stats.sink(),
                sequence = late,
                from_ms = end.as_millis() as u64,
                "Upstream late: filling from {} (fragment {late} not there)",
                HumanDuration::millis(end)
            );
            self.filler.gap = Some(Gap {
                from: end,
                due: pacer.due(end).unwrap_or_else(Instant::now),
            });
        }
        let until = end + FILL_STEP;
        let mut items = Vec::new();
        let filled = self.stages.apply(StageCall::Fill(until), &mut items);
        if let Err(error) = self.write(&mut items).await {
            if !error.retryable {
                return Err(PipelineError::Sink(error));
            }
            let queue = self.take_unconfirmed(None).await?;
            return self.recover(queue, error).await;
        }
        match filled {
            Ok(()) => {
                self.filler.timeline_end = Some(until);
                self.stats.record_filler(FILL_STEP);
            }
            Err(error) => {
                warn!(
                    event = "filler_failed",
                    pipeline = %self.pipeline,
                    sink = self.stats.sink(),
                    error = %error,
                    "Cannot fill while upstream is late ({error}); the output waits for the \
                     next fragment"
                );
                self.filler.failed = true;
            }
        }
        Ok(Recovery::Done)
    }

    /// `fragment` begins: if it ends a gap, says how late it came and how much filler ran.
    pub(super) fn fragment_arrived(&mut self, fragment: &FragmentInfo) {
        self.filler.last_sequence = Some(fragment.sequence);
        let Some(gap) = self.filler.gap.take() else {
            return;
        };
        let late = Instant::now().saturating_duration_since(gap.due);
        let filled = self
            .filler
            .timeline_end
            .map_or(Duration::ZERO, |end| end.saturating_sub(gap.from));
        info!(
            event = "filler_ended",
            pipeline = %self.pipeline,
            sink = self.stats.sink(),
            fragment = %fragment.name,
            sequence = fragment.sequence,
            late_ms = late.as_millis() as u64,
            filler_ms = filled.as_millis() as u64,
            "Fragment {} arrived {:.1} s late; filler ended",
            fragment.sequence,
            late.as_secs_f64(),
        );
    }
}
