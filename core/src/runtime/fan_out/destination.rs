//! One destination of a fan-out as the dispatcher sees it: its queue, whether it takes chunks,
//! and what happens when it falls behind, catches up or ends.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::join::{CopyOwner, SharedFragment};
use crate::runtime::chunking::ChunkEvent;
use crate::runtime::driver::SinkDriver;
use crate::runtime::error::PipelineError;
use crate::runtime::lane::{BuiltLane, LaneContext};
use crate::runtime::lane_queue::{LaneQueue, LaneSignal};
use crate::runtime::stats::PipelineStats;

pub(super) type LaneTask = JoinHandle<Result<(), PipelineError>>;

/// How a destination's task ended.
pub(super) type TaskEnd = Result<Result<(), PipelineError>, tokio::task::JoinError>;

/// Shows how a destination's driver ended in its row (`finished`, or `failed` with the
/// error) and returns the error. One that could not start (a reload added it) has said so
/// already and holds nothing.
pub(super) fn record_end(owner: &CopyOwner, ended: TaskEnd) -> Result<(), PipelineError> {
    if owner.removed.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let error = match ended {
        Ok(Ok(())) => {
            owner.stats.set_sink_state("finished");
            return Ok(());
        }
        Ok(Err(error)) => error,
        Err(panic) => PipelineError::Internal(format!("a destination panicked: {panic}")),
    };
    owner.stats.set_sink_state("failed");
    owner.stats.set_last_error(&error.to_string());
    Err(error)
}

/// One destination.
pub(super) struct Lane {
    pub(super) name: String,
    pub(super) max_lag: usize,
    pub(super) queue: LaneQueue,
    pub(super) owner: CopyOwner,
    /// Takes the chunks of every fragment (else it reads from bodies, or skips).
    pub(super) live: bool,
    /// The fragment being dispatched goes to it as chunks.
    pub(super) streaming: bool,
    /// Fragments skipped since it fell behind.
    skipped: u64,
    /// Its sessions' failures the dispatcher has seen.
    pub(super) failures_seen: u64,
    /// It joined (again) at the start of this fragment, and waits for the others to reach it.
    pub(super) gated_on: Option<u64>,
    pub(super) stop: CancellationToken,
    pub(super) task: LaneTask,
}

impl Lane {
    pub(super) fn new(
        name: String,
        max_lag: usize,
        queue: LaneQueue,
        owner: CopyOwner,
        stop: CancellationToken,
        task: LaneTask,
    ) -> Self {
        Self {
            name,
            max_lag,
            queue,
            owner,
            live: false,
            streaming: false,
            skipped: 0,
            failures_seen: 0,
            gated_on: None,
            stop,
            task,
        }
    }

    pub(super) fn stats(&self) -> &PipelineStats {
        &self.owner.stats
    }
}

/// Why a destination is detached.
#[derive(Debug, Clone, Copy)]
pub(super) enum Behind {
    /// Its session failed.
    Down,
    /// It holds chunks a paced destination waits for, with the budget used up.
    Starving,
    /// It took nothing for a while although chunks wait for it.
    Stalled,
}

impl Behind {
    fn label(self) -> &'static str {
        match self {
            Self::Down => "reconnecting",
            Self::Starving => "slower",
            Self::Stalled => "stalled",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Down => "its session failed",
            Self::Starving => "it holds chunks a paced destination has run out of",
            Self::Stalled => "it took nothing for 2 s while others waited",
        }
    }
}

/// Resumes a destination's sink from its checkpoint and makes its driver, which runs until
/// `stop`; a failure shows in the destination's row.
pub(super) async fn start_driver(
    built: BuiltLane,
    context: &LaneContext,
    stats: &Arc<PipelineStats>,
    stop: &CancellationToken,
    signal: &Arc<LaneSignal>,
) -> Result<SinkDriver, PipelineError> {
    let started = built.start(
        context,
        Arc::clone(stats),
        stop.clone(),
        Some(Arc::clone(signal)),
    );
    started.await.inspect_err(|error| {
        stats.set_sink_state("failed");
        stats.set_last_error(&error.to_string());
    })
}

/// A new fragment starts: as chunks to a live destination (one that caught up becomes live
/// again, behind a gate until the others reach this fragment: `others_live`), read from its
/// body by a required one that is behind, skipped by another.
pub(super) fn begin(lane: &mut Lane, shared: &SharedFragment, others_live: bool, pipeline: &str) {
    if !lane.live && lane.queue.is_idle() && !lane.queue.signal().is_down() {
        lane.live = true;
        if others_live {
            lane.gated_on = Some(shared.info().sequence);
            lane.queue.close_gate();
        }
        info!(
            event = "sink_caught_up",
            pipeline = %pipeline,
            sink = %lane.name,
            sequence = shared.info().sequence,
            fragments_skipped = lane.skipped,
            "Destination {} is live again from fragment {} ({} skipped while behind)",
            lane.name,
            shared.info().sequence,
            lane.skipped
        );
        lane.skipped = 0;
    }
    if lane.live {
        lane.streaming = lane
            .queue
            .push(ChunkEvent::Begin(shared.copy_for(&lane.owner)));
    } else if lane.owner.required {
        lane.queue
            .push(ChunkEvent::ReadBody(shared.copy_for(&lane.owner)));
    } else {
        lane.stats().record_skipped();
        lane.skipped += 1;
    }
}

/// Takes back what `lane` has queued: it fell behind.
pub(super) fn detach(lane: &mut Lane, streaming: Option<u64>, behind: Behind, pipeline: &str) {
    let streaming = streaming.filter(|_| lane.streaming);
    let skipped = lane.queue.detach(lane.owner.required, streaming);
    lane.live = false;
    lane.streaming = false;
    lane.gated_on = None;
    for _ in 0..skipped {
        lane.stats().record_skipped();
    }
    lane.skipped += skipped;
    let then = match lane.owner.required {
        true => "it reads what it missed from the fragments' files and holds them until confirmed",
        false => "it skips whole fragments until it is back, then rejoins at the live edge",
    };
    warn!(
        event = "sink_behind",
        pipeline = %pipeline,
        sink = %lane.name,
        reason = behind.label(),
        required = lane.owner.required,
        "Destination {} fell behind ({}); the others go on; {then}",
        lane.name,
        behind.describe(),
    );
}

/// A destination whose driver ended while the pipeline runs: a required one that failed fails
/// the pipeline; another is logged and left out.
pub(super) fn lane_ended(lane: &Lane, ended: TaskEnd, pipeline: &str) -> Result<(), PipelineError> {
    let Err(error) = record_end(&lane.owner, ended) else {
        return Ok(());
    };
    if lane.owner.required {
        return Err(error);
    }
    warn!(
        event = "sink_failed",
        pipeline = %pipeline,
        sink = %lane.name,
        error = %error,
        "Destination {} failed for good: {error}; it is not required, the others go on",
        lane.name
    );
    Ok(())
}
