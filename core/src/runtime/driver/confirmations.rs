//! Fragments the sink has accepted but not yet confirmed, and what confirming one means.
//!
//! A sink whose downstream takes bytes later than it accepts them (a process that reads ahead
//! before it publishes) only reports how many of the fragments it ended most recently it has
//! not really taken ([`crate::plugin::Sink::unconfirmed`]). Everything else about confirmation lives
//! here: which fragments those are, the pipeline state to save when they are confirmed (see
//! `pipeline_checkpoint`), acknowledging them oldest first, and handing them back for a resend when
//! the session fails.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::failure::fail_fragment;
use crate::checkpoint::CheckpointError;
use crate::fragment::{Fragment, FragmentInfo, FragmentOutcome};
use crate::runtime::error::PipelineError;
use crate::runtime::pipeline_checkpoint::{PipelineCheckpoint, Snapshot};
use crate::runtime::stats::PipelineStats;

/// How the sending of a fragment went, for the line and the counters when it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) bytes: u64,
    /// From the first chunk handed to the sink to the last one it accepted.
    pub(crate) transfer_time: Duration,
    /// Its first media time when sent whole, if a stage marks media times.
    pub(crate) media_start: Option<Duration>,
}

/// A fragment the sink accepted, how it was sent, and the state of the sink and stages right
/// after it.
#[derive(Debug)]
struct Waiting {
    fragment: Fragment,
    sent: Sent,
    after: Snapshot,
}

/// Accepted fragments waiting for the sink's confirmation, oldest first. A fragment counts as
/// published (logged `Published fragment …`, counted) only when confirmed.
#[derive(Debug)]
pub(crate) struct Confirmations {
    pipeline: String,
    stats: Arc<PipelineStats>,
    waiting: VecDeque<Waiting>,
    /// Saved before confirmed fragments are acknowledged; `None` without a `state_dir`.
    state: Option<PipelineCheckpoint>,
}

impl Confirmations {
    pub(crate) fn new(
        pipeline: &str,
        stats: Arc<PipelineStats>,
        state: Option<PipelineCheckpoint>,
    ) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            stats,
            waiting: VecDeque::new(),
            state,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether confirmed fragments are recorded with the sink's and stages' state (so a
    /// [`Snapshot`] is worth taking).
    pub(crate) fn records_state(&self) -> bool {
        self.state.is_some()
    }

    /// Whether `fragment` was published in an earlier run and only offered again because its
    /// source did not learn so before that run stopped.
    pub(crate) fn already_published(&mut self, fragment: &FragmentInfo) -> bool {
        self.state
            .as_mut()
            .is_some_and(|state| state.already_published(fragment))
    }

    /// Whether the fragment with this sequence number waits for the sink's confirmation.
    pub(crate) fn is_waiting(&self, sequence: u64) -> bool {
        self.waiting
            .iter()
            .any(|waiting| waiting.fragment.info.sequence == sequence)
    }

    /// The oldest waiting fragment and its first media time.
    pub(crate) fn first(&self) -> Option<(&FragmentInfo, Option<Duration>)> {
        self.waiting
            .front()
            .map(|waiting| (&waiting.fragment.info, waiting.sent.media_start))
    }

    /// How far into `fragment`, the run's first new one, an earlier run's output was
    /// confirmed, if that run was cut short in it.
    pub(crate) fn take_partial(&mut self, fragment: &FragmentInfo) -> Option<Duration> {
        self.state.as_mut()?.take_partial(fragment)
    }

    /// Saves that the output of `fragment`, the oldest not confirmed whole, was confirmed up to
    /// `confirmed` past its first media time; nothing without a `state_dir`.
    pub(crate) async fn record_partial(
        &mut self,
        fragment: FragmentInfo,
        confirmed: Duration,
    ) -> Result<(), PipelineError> {
        self.write_state(move |state| state.record_partial(&fragment, confirmed))
            .await
    }

    /// Runs `write` on the pipeline state off the async threads (it syncs a file); nothing
    /// without a `state_dir`.
    async fn write_state(
        &mut self,
        write: impl FnOnce(&mut PipelineCheckpoint) -> Result<(), CheckpointError> + Send + 'static,
    ) -> Result<(), PipelineError> {
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        let written = state.write_in_background(write).await;
        let (state, result) =
            written.map_err(|panic| PipelineError::Internal(panic.to_string()))?;
        self.state = Some(state);
        result.map_err(|error| PipelineError::State(error.to_string()))
    }

    /// Keeps a fragment the sink has accepted until it confirms it.
    pub(crate) fn push(&mut self, fragment: Fragment, sent: Sent, after: Snapshot) {
        self.waiting.push_back(Waiting {
            fragment,
            sent,
            after,
        });
    }

    /// Every waiting fragment but the `still_unconfirmed` newest is confirmed: saves the
    /// pipeline state after the last of them, then publishes them (logs, counts and
    /// acknowledges them as delivered), oldest first. If the state cannot be saved, they are not
    /// acknowledged (they are published again on the next start) and the pipeline fails.
    /// Returns the last fragment published, if any.
    pub(crate) async fn confirm_all_but(
        &mut self,
        still_unconfirmed: usize,
    ) -> Result<Option<FragmentInfo>, PipelineError> {
        let count = self.waiting.len().saturating_sub(still_unconfirmed);
        if count == 0 {
            return Ok(None);
        }
        let confirmed: Vec<Waiting> = self.waiting.drain(..count).collect();
        if self.records_state() {
            let infos: Vec<FragmentInfo> = confirmed
                .iter()
                .map(|waiting| waiting.fragment.info.clone())
                .collect();
            let after = confirmed.last().map(|waiting| waiting.after.clone());
            self.write_state(move |state| state.record(&infos, after.unwrap_or_default()))
                .await?;
        }
        let last = confirmed
            .last()
            .map(|waiting| waiting.fragment.info.clone());
        for Waiting { fragment, sent, .. } in confirmed {
            self.published(fragment, sent);
        }
        Ok(last)
    }

    fn published(&self, fragment: Fragment, sent: Sent) {
        let info = &fragment.info;
        let total = self
            .stats
            .record_published(&info.name, sent.bytes, sent.transfer_time);
        info!(
            event = "fragment_published",
            pipeline = %self.pipeline,
            sink = self.stats.sink(),
            fragment = %info.name,
            sequence = info.sequence,
            bytes = sent.bytes,
            transfer_ms = sent.transfer_time.as_millis() as u64,
            published_total = total,
            "Published fragment {} ({:.2} KiB in {} ms, {} total)",
            info.sequence,
            sent.bytes as f64 / 1024.0,
            sent.transfer_time.as_millis(),
            total,
        );
        fragment.acknowledge(FragmentOutcome::Delivered);
    }

    /// The sink closed cleanly: everything it accepted is delivered.
    pub(crate) async fn confirm_all(&mut self) -> Result<(), PipelineError> {
        self.confirm_all_but(0).await.map(drop)
    }

    /// The sink failed for good: nothing waiting will be confirmed.
    pub(crate) fn fail_all(&mut self, message: &Arc<str>) {
        for waiting in self.waiting.drain(..) {
            fail_fragment(
                &self.pipeline,
                &self.stats,
                waiting.fragment,
                "sink_failed",
                Arc::clone(message),
            );
        }
    }

    /// Takes every waiting fragment, oldest first, to be sent again in a new session.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Fragment> + '_ {
        self.waiting.drain(..).map(|waiting| waiting.fragment)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::fragment::{FragmentBody, FragmentDelivery};

    fn fragment(sequence: u64) -> (Fragment, FragmentDelivery) {
        let info = FragmentInfo {
            sequence,
            name: format!("f{sequence}"),
            length: None,
        };
        Fragment::new(info, FragmentBody::Memory(Bytes::new()))
    }

    fn waiting_for(state: Option<PipelineCheckpoint>) -> Confirmations {
        Confirmations::new("test", Arc::new(PipelineStats::new("test")), state)
    }

    const SENT: Sent = Sent {
        bytes: 3,
        transfer_time: Duration::from_millis(1),
        media_start: None,
    };

    #[tokio::test]
    async fn the_oldest_are_confirmed_first_and_the_rest_can_be_taken_back() {
        let mut confirmations = waiting_for(None);
        let (deliveries, fragments): (Vec<_>, Vec<_>) = (1..=3)
            .map(|sequence| {
                let (fragment, delivery) = fragment(sequence);
                (delivery, fragment)
            })
            .unzip();
        for fragment in fragments {
            confirmations.push(fragment, SENT, Snapshot::default());
        }
        confirmations.confirm_all_but(2).await.unwrap();
        let resent: Vec<u64> = confirmations
            .take_all()
            .map(|fragment| fragment.info.sequence)
            .collect();
        assert_eq!(resent, [2, 3]);
        assert!(confirmations.is_empty());
        let mut deliveries = deliveries.into_iter();
        assert_eq!(deliveries.next().unwrap().await, FragmentOutcome::Delivered);
    }

    #[tokio::test]
    async fn confirmed_fragments_are_recorded_before_they_are_acknowledged() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("pipeline.json");
        let state = PipelineCheckpoint::load(path.clone(), Vec::new()).unwrap();
        let mut confirmations = waiting_for(Some(state));
        let (first, delivery) = fragment(1);
        let after = Snapshot {
            sink: Some(serde_json::json!({"length": 5})),
            stages: Vec::new(),
        };
        confirmations.push(first, SENT, after);
        confirmations.confirm_all().await.unwrap();
        assert_eq!(delivery.await, FragmentOutcome::Delivered);
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["sink"]["length"], 5);
        assert_eq!(saved["recent"][0]["name"], "f1");

        // A state that cannot be saved: the fragment is not acknowledged.
        let blocked = directory.path().join("not-a-directory");
        let state = PipelineCheckpoint::load(blocked.join("pipeline.json"), Vec::new()).unwrap();
        std::fs::write(&blocked, b"").unwrap();
        let mut confirmations = waiting_for(Some(state));
        let (second, delivery) = fragment(2);
        confirmations.push(second, SENT, Snapshot::default());
        assert!(confirmations.confirm_all().await.is_err());
        drop(confirmations);
        assert_eq!(delivery.await, FragmentOutcome::Abandoned);
    }
}
