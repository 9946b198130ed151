//! One fragment shared by several destinations: each gets its own copy, and the fragment is
//! acknowledged to its source once every required destination is done with its copy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::fragment::{Fragment, FragmentAck, FragmentBody, FragmentInfo, FragmentOutcome};
use crate::runtime::stats::PipelineStats;

/// A fragment on its way to several destinations.
pub(crate) struct SharedFragment {
    if_failed: Option<Arc<str>>,
    join: Arc<Join>,
}

/// Waits for the required destinations' outcomes of one fragment.
struct Join {
    info: FragmentInfo,
    state: Mutex<JoinState>,
    /// The pipeline's own counters: a fragment counts as published once acknowledged.
    stats: Arc<PipelineStats>,
    /// The source's body, kept while any copy exists (a temporary file lives as long); in a
    /// mutex only because a one-shot reader's body is not `Sync`.
    body: Mutex<FragmentBody>,
}

struct JoinState {
    /// Required destinations that have not told their outcome yet.
    remaining: usize,
    failure: Option<Arc<str>>,
    abandoned: bool,
    acknowledgement: Option<FragmentAck>,
    started: Instant,
}

/// Who a copy reports to, and whether its outcome counts.
#[derive(Debug, Clone)]
pub(crate) struct CopyOwner {
    pub(crate) required: bool,
    /// Set when a reload removed the destination: its copies no longer hold the fragment.
    pub(crate) removed: Arc<AtomicBool>,
    /// The destination's counters, which track what it still owes.
    pub(crate) stats: Arc<PipelineStats>,
}

impl CopyOwner {
    pub(crate) fn new(required: bool, stats: Arc<PipelineStats>) -> Self {
        Self {
            required,
            removed: Default::default(),
            stats,
        }
    }
}

impl SharedFragment {
    /// Shares `fragment` among destinations of which `required` are required.
    pub(crate) fn new(fragment: Fragment, required: usize, stats: Arc<PipelineStats>) -> Self {
        let (info, body, if_failed, acknowledgement) = fragment.into_parts();
        let join = Join {
            info,
            state: Mutex::new(JoinState {
                remaining: required,
                failure: None,
                abandoned: false,
                acknowledgement: Some(acknowledgement),
                started: Instant::now(),
            }),
            stats,
            body: Mutex::new(body),
        };
        Self {
            if_failed,
            join: Arc::new(join),
        }
    }

    pub(crate) fn info(&self) -> &FragmentInfo {
        &self.join.info
    }

    /// A copy for one destination: the same body (a path or shared bytes; a one-shot reader's
    /// body was read by the chunking stage and cannot be read again), reporting to `owner`.
    pub(crate) fn copy_for(&self, owner: &CopyOwner) -> Fragment {
        let body = match &*self
            .join
            .body
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
        {
            FragmentBody::File(path) => FragmentBody::File(path.clone()),
            FragmentBody::Temporary(path) => FragmentBody::File(path.to_path_buf()),
            FragmentBody::Memory(bytes) => FragmentBody::Memory(bytes.clone()),
            FragmentBody::Remote(remote) => FragmentBody::Remote(Arc::clone(remote)),
            FragmentBody::Reader(_) | FragmentBody::Consumed => FragmentBody::Consumed,
        };
        let sequence = self.join.info.sequence;
        owner.stats.owe(sequence);
        let (join, owner) = (Arc::clone(&self.join), owner.clone());
        let acknowledge = Box::new(move |outcome: FragmentOutcome| {
            owner.stats.settled(sequence);
            if owner.required {
                // A removed destination's copies are dropped unsent: no longer its business.
                let outcome = match owner.removed.load(Ordering::Relaxed) {
                    true => FragmentOutcome::Delivered,
                    false => outcome,
                };
                join.report(outcome);
            }
        });
        Fragment::with_callback(
            self.join.info.clone(),
            body,
            self.if_failed.clone(),
            acknowledge,
        )
    }
}

impl Join {
    /// One required destination's outcome; the last one acknowledges the fragment: delivered
    /// if every one delivered it, else failed or abandoned (the source then offers it again).
    fn report(&self, outcome: FragmentOutcome) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match outcome {
            FragmentOutcome::Delivered => {}
            FragmentOutcome::Failed(message) => {
                state.failure.get_or_insert(message);
            }
            FragmentOutcome::Abandoned => state.abandoned = true,
        }
        state.remaining = state.remaining.saturating_sub(1);
        if state.remaining > 0 {
            return;
        }
        let Some(mut acknowledgement) = state.acknowledgement.take() else {
            return;
        };
        let outcome = match (state.abandoned, state.failure.take()) {
            (true, _) => FragmentOutcome::Abandoned,
            (false, Some(message)) => {
                self.stats.record_failed();
                FragmentOutcome::Failed(message)
            }
            (false, None) => FragmentOutcome::Delivered,
        };
        let started = state.started;
        drop(state);
        if outcome == FragmentOutcome::Delivered {
            let length = self.info.length.unwrap_or(0);
            self.stats
                .record_published(&self.info.name, length, started.elapsed());
        }
        acknowledgement.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn shared(required: usize) -> (SharedFragment, crate::fragment::FragmentDelivery) {
        let info = FragmentInfo {
            sequence: 1,
            name: "f1".into(),
            length: Some(3),
        };
        let (fragment, delivery) = Fragment::new(info, FragmentBody::Memory(Bytes::from("abc")));
        let stats = Arc::new(PipelineStats::new("p"));
        (SharedFragment::new(fragment, required, stats), delivery)
    }

    fn owner(required: bool) -> CopyOwner {
        CopyOwner {
            required,
            removed: Default::default(),
            stats: Arc::new(PipelineStats::new("p")).add_sink("s", required),
        }
    }

    #[tokio::test]
    async fn a_fragment_is_delivered_once_every_required_destination_delivered_it() {
        let (shared, mut delivery) = shared(2);
        let (first, second, optional) = (owner(true), owner(true), owner(false));
        let copies = [
            shared.copy_for(&first),
            shared.copy_for(&second),
            shared.copy_for(&optional),
        ];
        let [first_copy, second_copy, optional_copy] = copies;
        drop(optional_copy);
        first_copy.acknowledge(FragmentOutcome::Delivered);
        assert!(
            futures::poll!(&mut delivery).is_pending(),
            "one required is not done"
        );
        second_copy.acknowledge(FragmentOutcome::Delivered);
        assert_eq!(delivery.await, FragmentOutcome::Delivered);
        assert_eq!(first.stats.lag_fragments(), 0);
    }

    #[tokio::test]
    async fn a_required_destination_that_stops_leaves_the_fragment_for_the_next_start() {
        let (shared, delivery) = shared(2);
        let (first, second) = (owner(true), owner(true));
        shared
            .copy_for(&first)
            .acknowledge(FragmentOutcome::Delivered);
        drop(shared.copy_for(&second));
        assert_eq!(delivery.await, FragmentOutcome::Abandoned);
    }

    #[tokio::test]
    async fn a_removed_destination_holds_nothing() {
        let (shared, delivery) = shared(2);
        let (first, removed) = (owner(true), owner(true));
        let copy = shared.copy_for(&removed);
        shared
            .copy_for(&first)
            .acknowledge(FragmentOutcome::Delivered);
        removed.removed.store(true, Ordering::Relaxed);
        drop(copy);
        assert_eq!(delivery.await, FragmentOutcome::Delivered);
    }
}
