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
