//! Fragments the sink has accepted but not yet confirmed, and what confirming one means.
//!
//! A sink whose downstream takes bytes later than it accepts them (a process that reads ahead
//! before it publishes) only reports how many of the fragments it ended most recently it has
//! not really taken ([`crate::Sink::unconfirmed`]). Everything else about confirmation lives
//! here: which fragments those are, the pipeline state to save when they are confirmed (see
//! `pipeline_checkpoint`), acknowledging them oldest first, and handing them back for a resend when
//! the session fails.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::fragment::{Fragment, FragmentInfo, FragmentOutcome};
use crate::runtime::pipeline_checkpoint::{PipelineCheckpoint, Snapshot};
use crate::runtime::PipelineError;

/// Accepted fragments waiting for the sink's confirmation, oldest first, each with the state
/// of the sink and stages right after it.
#[derive(Debug, Default)]
pub(crate) struct Confirmations {
    waiting: VecDeque<(Fragment, Snapshot)>,
    /// Saved before confirmed fragments are acknowledged; `None` without a `state_dir`.
    state: Option<PipelineCheckpoint>,
}

impl Confirmations {
    pub(crate) fn new(state: Option<PipelineCheckpoint>) -> Self {
        Self {
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

    /// Keeps a fragment the sink has accepted until it confirms it.
    pub(crate) fn push(&mut self, fragment: Fragment, after: Snapshot) {
        self.waiting.push_back((fragment, after));
    }

    /// Every waiting fragment but the `still_unconfirmed` newest is confirmed: saves the
    /// pipeline state after the last of them, then acknowledges them as delivered, oldest
    /// first. If the state cannot be saved, they are not acknowledged (they are published
    /// again on the next start) and the pipeline fails.
    pub(crate) async fn confirm_all_but(
        &mut self,
        still_unconfirmed: usize,
    ) -> Result<(), PipelineError> {
        let count = self.waiting.len().saturating_sub(still_unconfirmed);
        if count == 0 {
            return Ok(());
        }
        let confirmed: Vec<(Fragment, Snapshot)> = self.waiting.drain(..count).collect();
        if let Some(mut state) = self.state.take() {
            let infos: Vec<FragmentInfo> = confirmed
                .iter()
                .map(|(fragment, _)| fragment.info.clone())
                .collect();
            let after = confirmed.last().map(|(_, after)| after.clone());
            let recorded = tokio::task::spawn_blocking(move || {
                let result = state.record(&infos, after.unwrap_or_default());
                (state, result)
            })
            .await;
            let (state, result) =
                recorded.map_err(|panic| PipelineError::Internal(panic.to_string()))?;
            self.state = Some(state);
            result.map_err(|error| PipelineError::State(error.to_string()))?;
        }
        for (fragment, _) in confirmed {
            fragment.acknowledge(FragmentOutcome::Delivered);
        }
        Ok(())
    }

    /// The sink closed cleanly: everything it accepted is delivered.
    pub(crate) async fn confirm_all(&mut self) -> Result<(), PipelineError> {
        self.confirm_all_but(0).await
    }

    /// The sink failed for good: nothing waiting will be confirmed.
    pub(crate) fn fail_all(&mut self, message: &Arc<str>) {
        for (fragment, _) in self.waiting.drain(..) {
            fragment.acknowledge(FragmentOutcome::Failed(Arc::clone(message)));
        }
    }

    /// Takes every waiting fragment, oldest first, to be sent again in a new session.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Fragment> + '_ {
        self.waiting.drain(..).map(|(fragment, _)| fragment)
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

    #[tokio::test]
    async fn the_oldest_are_confirmed_first_and_the_rest_can_be_taken_back() {
        let mut confirmations = Confirmations::default();
        let (deliveries, fragments): (Vec<_>, Vec<_>) = (1..=3)
            .map(|sequence| {
                let (fragment, delivery) = fragment(sequence);
                (delivery, fragment)
            })
            .unzip();
        for fragment in fragments {
            confirmations.push(fragment, Snapshot::default());
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
        let mut confirmations = Confirmations::new(Some(state));
        let (first, delivery) = fragment(1);
        let after = Snapshot {
            sink: Some(serde_json::json!({"length": 5})),
            stages: Vec::new(),
        };
        confirmations.push(first, after);
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
        let mut confirmations = Confirmations::new(Some(state));
        let (second, delivery) = fragment(2);
        confirmations.push(second, Snapshot::default());
        assert!(confirmations.confirm_all().await.is_err());
        drop(confirmations);
        assert_eq!(delivery.await, FragmentOutcome::Abandoned);
    }
}
