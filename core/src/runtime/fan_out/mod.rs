//! Fan-out: one pipeline's fragments to several destinations, each its own lane (a sink driver
//! with its own stages, session, pacing, filler, reconnects and confirmations), from one read.
//!
//! The dispatcher hands every live destination the same chunk events: a chunk's bytes and its
//! share of the read budget are shared, never copied, so the slowest live destination holds
//! the budget. One that falls behind is detached ([`destination`]): its session failed, or it
//! holds chunks while the budget is used up and a paced destination has run out of them, or it
//! took nothing for 2 s while another waited. What it has queued is taken back (so it holds
//! none of the budget) and it reads the rest of its fragment, and every fragment after that,
//! from the fragment's body (`required: true`), or skips whole fragments (`required: false`).
//! Once it waits with nothing queued it is live again from the next fragment. A required
//! destination `max_lag` fragments behind holds the others back: the dispatcher reads no
//! further fragment until it catches up.
//!
//! A fragment is acknowledged to its source once every required destination is done with its
//! copy ([`join`]).

mod destination;
mod join;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::destination::{
    begin, detach, lane_ended, record_end, start_driver, Behind, Lane, LaneTask,
};
use self::join::{CopyOwner, SharedFragment};
use super::chunking::ChunkEvent;
use super::driver::{fail_fragment, Events};
use super::error::PipelineError;
use super::lane::{BuiltLane, LaneContext};
use super::lane_queue::{lane_queue, LaneSignal};
use super::stats::PipelineStats;
use crate::fragment::Fragment;

/// How often the dispatcher looks at its destinations.
const LANE_CHECK: Duration = Duration::from_millis(100);

/// A destination that has neither taken a chunk nor paced for this long, while another waits
/// for chunks, is behind (a hung sink, whichever the others are).
const LANE_STALL: Duration = Duration::from_secs(2);

/// A paced destination waiting this long for chunks that others hold while the budget is used
/// up is starved by them: well inside the 2 s a paced sink writes ahead, so it never fills.
const LANE_STARVED: Duration = Duration::from_millis(300);

/// A change to a running fan-out, from a reload.
pub(crate) enum LaneChange {
    /// Starts a destination (in place of one of the same name, once that one has finished); it
    /// joins at the next fragment, and a required one holds every fragment from then on.
    Add(BuiltLane),
    /// Stops a destination; what it holds no longer holds the source.
    Remove(String),
}

/// Hands one pipeline's chunk events to its destinations.
pub(crate) struct Dispatcher {
    context: LaneContext,
    stats: Arc<PipelineStats>,
    shutdown: CancellationToken,
    lanes: Vec<Lane>,
    /// Destinations a reload removed, still finishing, by name.
    stopping: Vec<(String, LaneTask)>,
    /// The fragment whose chunks are being dispatched.
    current: Option<SharedFragment>,
}

impl Dispatcher {
    pub(crate) fn new(
        context: LaneContext,
        stats: Arc<PipelineStats>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            context,
            stats,
            shutdown,
            lanes: Vec::new(),
            stopping: Vec::new(),
            current: None,
        }
    }

    /// Resumes a destination from its checkpoint and starts its driver, before the pipeline
    /// reads anything: it takes the first fragment's chunks.
    pub(crate) async fn add(&mut self, built: BuiltLane) -> Result<(), PipelineError> {
        let (name, required, max_lag) = (built.name.clone(), built.required, built.max_lag);
        let stats = self.stats.add_sink(&name, required);
        let signal = Arc::new(LaneSignal::default());
        let stop = self.shutdown.child_token();
        let driver = start_driver(built, &self.context, &stats, &stop, &signal).await?;
        let (queue, receiver) = lane_queue(signal);
        let task = tokio::spawn(driver.run(Events::Lane(receiver)));
        let owner = CopyOwner::new(required, stats);
        let mut lane = Lane::new(name, max_lag, queue, owner, stop, task);
        lane.live = true;
        self.lanes.push(lane);
        Ok(())
    }

    /// Adds a destination while the pipeline runs: its queue at once, holding `backlog` (what
    /// the destination it replaces had not sent) and, for a required one, every fragment from
    /// now on; its driver once `previous` (the one it replaces) has finished with their state
    /// file. One that cannot start is logged and shows as failed; its own copies hold nothing,
    /// those it took over are left for the next start.
    fn add_running(
        &mut self,
        built: BuiltLane,
        previous: Option<LaneTask>,
        backlog: Vec<Fragment>,
    ) {
        let (name, required, max_lag) = (built.name.clone(), built.required, built.max_lag);
        let stats = self.stats.add_sink(&name, required);
        let owner = CopyOwner::new(required, Arc::clone(&stats));
        let signal = Arc::new(LaneSignal::default());
        let stop = self.shutdown.child_token();
        let (queue, receiver) = lane_queue(Arc::clone(&signal));
        for fragment in backlog {
            queue.push(ChunkEvent::ReadBody(fragment));
        }
        let removed = Arc::clone(&owner.removed);
        let (context, lane_stats, lane_stop) = (self.context.clone(), stats, stop.clone());
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let started = start_driver(built, &context, &lane_stats, &lane_stop, &signal).await;
            let driver = match started {
                Ok(driver) => driver,
                Err(error) => {
                    // As if it were not in the file: what it was handed holds nothing.
                    removed.store(true, Ordering::Relaxed);
                    warn!(
                        event = "sink_not_started",
                        pipeline = %context.pipeline,
                        sink = lane_stats.sink(),
                        error = %error,
                        "Destination {} of pipeline {} could not start: {error}",
                        lane_stats.sink().unwrap_or_default(),
                        context.pipeline
                    );
                    return Ok(());
                }
            };
            info!(
                event = "sink_added",
                pipeline = %context.pipeline,
                sink = lane_stats.sink(),
                "Destination {} of pipeline {} started; it joins at the next fragment",
                lane_stats.sink().unwrap_or_default(),
                context.pipeline
            );
            driver.run(Events::Lane(receiver)).await
        });
        self.lanes
            .push(Lane::new(name, max_lag, queue, owner, stop, task));
    }

    /// Dispatches until the input ends, shutdown, or a required destination fails; then lets
    /// every destination finish and close.
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<ChunkEvent>,
        mut changes: Option<mpsc::UnboundedReceiver<LaneChange>>,
    ) -> Result<(), PipelineError> {
        let dispatched = self.dispatch_all(&mut events, &mut changes).await;
        // Release the chunking stage (and every fragment still queued) first.
        drop(events);
        self.finish(dispatched).await
    }

    async fn dispatch_all(
        &mut self,
        events: &mut mpsc::Receiver<ChunkEvent>,
        changes: &mut Option<mpsc::UnboundedReceiver<LaneChange>>,
    ) -> Result<(), PipelineError> {
        let mut check = tokio::time::interval(LANE_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            // Held back only between fragments, so that no destination waits inside one.
            let held = self.current.is_none() && self.held_back_by().is_some();
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(()),
                change = next_change(changes) => self.apply(change),
                _ = check.tick() => self.check_lanes().await?,
                event = events.recv(), if !held => match event {
                    None => return Ok(()),
                    Some(event) => self.dispatch(event)?,
                },
            }
        }
    }

    fn dispatch(&mut self, event: ChunkEvent) -> Result<(), PipelineError> {
        match event {
            ChunkEvent::Begin(fragment) => {
                let required = self.lanes.iter().filter(|lane| lane.owner.required).count();
                let shared = SharedFragment::new(fragment, required, Arc::clone(&self.stats));
                let live = self.lanes.iter().filter(|lane| lane.live).count();
                for lane in &mut self.lanes {
                    let others_live = live > usize::from(lane.live);
                    begin(lane, &shared, others_live, &self.context.pipeline);
                }
                self.current = Some(shared);
            }
            ChunkEvent::Chunk(chunk) => {
                for lane in self.lanes.iter().filter(|lane| lane.streaming) {
                    lane.queue.push(ChunkEvent::Chunk(chunk.share()));
                }
            }
            ChunkEvent::End | ChunkEvent::Failed(_) => {
                for lane in self.lanes.iter_mut().filter(|lane| lane.streaming) {
                    let copy = match &event {
                        ChunkEvent::Failed(message) => ChunkEvent::Failed(message.clone()),
                        _ => ChunkEvent::End,
                    };
                    lane.queue.push(copy);
                    lane.streaming = false;
                }
                self.current = None;
            }
            ChunkEvent::Unreadable(fragment, reason, message) => {
                // Failed for every destination alike.
                for lane in &self.lanes {
                    lane.stats().record_failed();
                }
                fail_fragment(
                    &self.context.pipeline,
                    &self.stats,
                    fragment,
                    reason,
                    message.into(),
                )
            }
            other => {
                return Err(PipelineError::Internal(format!(
                    "chunk event {other:?} from the chunking stage"
                )))
            }
        }
        Ok(())
    }

    /// Takes in destinations that ended (a required one that failed fails the pipeline),
    /// detaches those that fell behind, notes their state, and says whether one holds the
    /// others back.
    async fn check_lanes(&mut self) -> Result<(), PipelineError> {
        let mut index = 0;
        while index < self.lanes.len() {
            if !self.lanes[index].task.is_finished() {
                index += 1;
                continue;
            }
            let mut lane = self.lanes.remove(index);
            let ended = (&mut lane.task).await;
            lane_ended(&lane, ended, &self.context.pipeline)?;
        }
        let idle = |lane: &Lane, paced_only: bool, longer_than: Duration| {
            lane.live
                && (!paced_only || lane.queue.signal().is_paced())
                && lane
                    .queue
                    .idle_for()
                    .is_some_and(|idle| idle >= longer_than)
        };
        // A lane held at its gate waits too: for the others to reach its fragment.
        let someone_waits = self
            .lanes
            .iter()
            .any(|lane| idle(lane, false, Duration::ZERO) || lane.gated_on.is_some());
        let someone_starves = self.lanes.iter().any(|lane| idle(lane, true, LANE_STARVED));
        let budget_used_up = self
            .stats
            .budget_free()
            .is_some_and(|free| free < self.context.chunk_size as u64);
        let streaming = self.current.as_ref().map(|shared| shared.info().sequence);
        for lane in &mut self.lanes {
            let failures = lane.queue.signal().failures();
            let failed = lane.queue.signal().is_down() || failures != lane.failures_seen;
            lane.failures_seen = failures;
            let behind = if failed {
                Some(Behind::Down)
            } else if lane.gated_on.is_some() {
                // Held back on purpose until the others reach its first fragment.
                None
            } else if someone_starves && budget_used_up && !lane.queue.is_empty() {
                Some(Behind::Starving)
            } else if someone_waits && lane.queue.stalled(LANE_STALL) {
                Some(Behind::Stalled)
            } else {
                None
            };
            if let (true, Some(behind)) = (lane.live, behind) {
                detach(lane, streaming, behind, &self.context.pipeline);
            }
            lane.stats()
                .set_sink_state(match (lane.queue.signal().is_down(), lane.live) {
                    (true, _) => "reconnecting",
                    (false, true) => "live",
                    (false, false) => "behind",
                });
        }
        self.open_gates();
        self.note_waiting();
        Ok(())
    }

    /// Lets a destination that joined at a fragment's start take it once every other live
    /// destination has taken that start too: it then runs in step with them instead of a
    /// read budget ahead (where it would wait for chunks the others hold, and fill).
    fn open_gates(&mut self) {
        for index in 0..self.lanes.len() {
            let Some(sequence) = self.lanes[index].gated_on else {
                continue;
            };
            let others_there = self.lanes.iter().enumerate().all(|(other, lane)| {
                other == index
                    || !lane.live
                    || lane.gated_on.is_some()
                    || !lane.queue.holds_start_of(sequence)
            });
            if others_there {
                self.lanes[index].gated_on = None;
                self.lanes[index].queue.open_gate();
            }
        }
    }

    /// The required destination that holds the others back, being `max_lag` fragments behind.
    fn held_back_by(&self) -> Option<&Lane> {
        self.lanes
            .iter()
            .find(|lane| lane.owner.required && lane.queue.backlog() >= lane.max_lag)
    }

    /// Says in the pipeline's row, and once in the log, when a destination holds the others.
    fn note_waiting(&self) {
        let behind = self.held_back_by();
        let waiting_for = behind.map(|lane| {
            format!(
                "destination {} is {} fragments behind (max_lag {}); the others wait for it",
                lane.name,
                lane.queue.backlog(),
                lane.max_lag
            )
        });
        if waiting_for.is_some() != self.stats.waiting_for().is_some() {
            match &waiting_for {
                Some(reason) => warn!(
                    event = "pipeline_waiting",
                    pipeline = %self.context.pipeline,
                    sink = behind.map(|lane| lane.name.as_str()),
                    "Pipeline {} waits: {reason}",
                    self.context.pipeline
                ),
                None => info!(
                    event = "pipeline_resumed",
                    pipeline = %self.context.pipeline,
                    "Pipeline {} reads on: no required destination is max_lag behind",
                    self.context.pipeline
                ),
            }
        }
        self.stats.set_waiting_for(waiting_for);
    }

    fn apply(&mut self, change: LaneChange) {
        match change {
            LaneChange::Add(built) => {
                let name = built.name.clone();
                let backlog = self.hand_over(&name);
                let previous = self
                    .stopping
                    .iter()
                    .position(|(stopping, _)| *stopping == name)
                    .map(|index| self.stopping.remove(index).1);
                self.add_running(built, previous, backlog);
            }
            LaneChange::Remove(name) => {
                if self.remove(&name) {
                    info!(
                        event = "sink_removed",
                        pipeline = %self.context.pipeline,
                        sink = %name,
                        "Destination {name} of pipeline {} stops",
                        self.context.pipeline
                    );
                }
            }
        }
    }

    /// Stops the destination `name` that a new version replaces, and returns the fragments it
    /// had queued and not started: the new version sends them (its copies still hold the
    /// source, and so does what the old one finishes on its way out).
    fn hand_over(&mut self, name: &str) -> Vec<Fragment> {
        let Some(index) = self.lanes.iter().position(|lane| lane.name == name) else {
            return Vec::new();
        };
        let lane = self.lanes.remove(index);
        let streaming = self.current.as_ref().map(|shared| shared.info().sequence);
        lane.queue
            .detach(true, streaming.filter(|_| lane.streaming));
        let backlog = lane.queue.take_backlog();
        lane.stop.cancel();
        self.stats.remove_sink(name);
        self.stopping.push((lane.name, lane.task));
        backlog
    }

    /// Stops the destination `name`, if there is one; what it holds no longer holds the source.
    fn remove(&mut self, name: &str) -> bool {
        let Some(index) = self.lanes.iter().position(|lane| lane.name == name) else {
            return false;
        };
        let lane = self.lanes.remove(index);
        lane.owner.removed.store(true, Ordering::Relaxed);
        // What it has queued holds the budget no longer: it finishes its fragment from the
        // file and stops.
        let streaming = self.current.as_ref().map(|shared| shared.info().sequence);
        lane.queue
            .detach(false, streaming.filter(|_| lane.streaming));
        lane.stop.cancel();
        self.stats.remove_sink(name);
        self.stopping.push((lane.name, lane.task));
        true
    }

    /// Ends every destination's queue (each finishes what it has, or stops at once after a
    /// failure), waits for them, and reports the first required destination's failure.
    pub(crate) async fn finish(
        self,
        dispatched: Result<(), PipelineError>,
    ) -> Result<(), PipelineError> {
        let mut result = dispatched;
        for lane in &self.lanes {
            // Stopped inside a fragment (shutdown, a failure): the rest comes from its file.
            if lane.streaming {
                lane.queue.push(ChunkEvent::ReadRest);
            }
            if result.is_err() {
                lane.stop.cancel();
            }
        }
        // Every queue ends first: one destination still busy must not keep the others waiting
        // (and filling) for their end.
        let lanes: Vec<(LaneTask, CopyOwner)> = self
            .lanes
            .into_iter()
            .map(|lane| (lane.task, lane.owner))
            .collect();
        for (task, owner) in lanes {
            let lane_result = record_end(&owner, task.await);
            if owner.required && result.is_ok() {
                result = lane_result;
            }
        }
        for (_, task) in self.stopping {
            let _ = task.await;
        }
        result
    }
}

/// The next change from a reload; never, without a channel (or once it closed).
async fn next_change(changes: &mut Option<mpsc::UnboundedReceiver<LaneChange>>) -> LaneChange {
    if let Some(receiver) = changes {
        if let Some(change) = receiver.recv().await {
            return change;
        }
        *changes = None;
    }
    std::future::pending().await
}
