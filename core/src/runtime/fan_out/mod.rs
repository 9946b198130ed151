//! Fan-out: one pipeline's fragments to several destinations, each its own lane (a sink driver
//! with its own stages, session, pacing, filler, reconnects and confirmations), from one read.
//!
//! The dispatcher hands every live destination the same chunk events: a chunk's bytes and its
//! share of the read budget are shared, never copied. A destination that fails or stops
//! taking chunks while another waits for them is detached: what it has queued is taken back
//! (so it holds none of the budget) and it reads the rest of its fragment, and every fragment
//! after that, from the fragment's body (`required: true`), or skips whole fragments
//! (`required: false`). Once it waits with nothing queued it is live again from the next
//! fragment. A required destination more than `max_lag` fragments behind holds the others
//! back: the dispatcher stops reading until it catches up.
//!
//! A fragment is acknowledged to its source once every required destination is done with its
//! copy ([`join`]).

mod join;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::join::{CopyOwner, SharedFragment};
use super::chunking::ChunkEvent;
use super::driver::{fail_fragment, Events};
use super::error::PipelineError;
use super::lane::{BuiltLane, LaneContext};
use super::lane_queue::{lane_queue, LaneQueue, LaneSignal};
use super::stats::PipelineStats;

/// How often the dispatcher looks at its destinations.
const LANE_CHECK: Duration = Duration::from_millis(100);

/// A destination that has neither taken a chunk nor paced for this long, while another waits
/// for chunks, is behind: longer than a paced sink's wait between two chunks, shorter than the
/// lead a paced sink keeps, so the others neither starve nor fill.
const LANE_STALL: Duration = Duration::from_secs(2);

/// A change to a running fan-out, from a reload.
pub(crate) enum LaneChange {
    /// Starts a destination (in place of one of the same name); it joins at the next fragment.
    Add(BuiltLane),
    /// Stops a destination; what it holds no longer holds the source.
    Remove(String),
}

/// One destination, as the dispatcher sees it.
struct Lane {
    name: String,
    max_lag: usize,
    queue: LaneQueue,
    owner: CopyOwner,
    /// Takes the chunks of every fragment (else it reads from bodies, or skips).
    live: bool,
    /// The fragment being dispatched goes to it as chunks.
    streaming: bool,
    /// Fragments skipped since it fell behind.
    skipped: u64,
    stop: CancellationToken,
    task: JoinHandle<Result<(), PipelineError>>,
}

impl Lane {
    fn stats(&self) -> &PipelineStats {
        &self.owner.stats
    }
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
    /// Destinations a reload added, once started (in the background: one replacing another
    /// waits for it to finish first, and the others must not wait meanwhile).
    started: (
        mpsc::UnboundedSender<StartedLane>,
        mpsc::UnboundedReceiver<StartedLane>,
    ),
}

type LaneTask = JoinHandle<Result<(), PipelineError>>;
type StartedLane = Result<Lane, PipelineError>;

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
            started: mpsc::unbounded_channel(),
        }
    }

    /// Resumes a destination from its checkpoint and starts its driver, before the pipeline
    /// reads anything: it takes the first fragment's chunks.
    pub(crate) async fn add(&mut self, built: BuiltLane) -> Result<(), PipelineError> {
        let mut lane = start_lane(
            built,
            self.context.clone(),
            Arc::clone(&self.stats),
            self.shutdown.child_token(),
        )
        .await?;
        lane.live = true;
        self.lanes.push(lane);
        Ok(())
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
            let held = self.current.is_none() && self.stats.waiting_for().is_some();
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(()),
                change = next_change(changes) => self.apply(change),
                Some(started) = self.started.1.recv() => self.attach(started),
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
                for lane in &mut self.lanes {
                    begin(lane, &shared, &self.context.pipeline);
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
            ChunkEvent::Unreadable(fragment, reason, message) => fail_fragment(
                &self.context.pipeline,
                &self.stats,
                fragment,
                reason,
                message.into(),
            ),
            other => {
                return Err(PipelineError::Internal(format!(
                    "chunk event {other:?} from the chunking stage"
                )))
            }
        }
        Ok(())
    }

    /// Detaches destinations that fell behind, notes their state, says whether one holds the
    /// others back, and takes in those that ended (a required one that failed fails the
    /// pipeline).
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
        let someone_waits = self
            .lanes
            .iter()
            .any(|lane| lane.live && lane.queue.is_idle());
        let streaming = self.current.as_ref().map(|shared| shared.info().sequence);
        for lane in &mut self.lanes {
            let down = lane.queue.signal().is_down();
            if lane.live && (down || (someone_waits && lane.queue.stalled(LANE_STALL))) {
                detach(lane, streaming, down, &self.context.pipeline);
            }
            lane.stats().set_sink_state(match (down, lane.live) {
                (true, _) => "reconnecting",
                (false, true) => "live",
                (false, false) => "behind",
            });
        }
        let behind = self
            .lanes
            .iter()
            .find(|lane| lane.owner.required && lane.queue.backlog() >= lane.max_lag);
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
        Ok(())
    }

    fn apply(&mut self, change: LaneChange) {
        match change {
            LaneChange::Add(built) => {
                let name = built.name.clone();
                self.remove(&name);
                // A destination replacing one of its name starts once that one has finished
                // with their state file.
                let previous = self
                    .stopping
                    .iter()
                    .position(|(stopping, _)| *stopping == name)
                    .map(|index| self.stopping.remove(index).1);
                let (context, stats) = (self.context.clone(), Arc::clone(&self.stats));
                let (stop, started) = (self.shutdown.child_token(), self.started.0.clone());
                tokio::spawn(async move {
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    let _ = started.send(start_lane(built, context, stats, stop).await);
                });
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

    /// A destination a reload added has started (or could not): it joins at the next fragment.
    fn attach(&mut self, started: StartedLane) {
        match started {
            Ok(lane) => {
                info!(
                    event = "sink_added",
                    pipeline = %self.context.pipeline,
                    sink = %lane.name,
                    "Destination {} of pipeline {} started; it joins at the next fragment",
                    lane.name,
                    self.context.pipeline
                );
                self.lanes.push(lane);
            }
            Err(error) => warn!(
                event = "sink_not_started",
                pipeline = %self.context.pipeline,
                error = %error,
                "A destination of pipeline {} could not start: {error}",
                self.context.pipeline
            ),
        }
    }

    /// Stops the destination `name`, if there is one; what it holds no longer holds the source.
    fn remove(&mut self, name: &str) -> bool {
        let Some(index) = self.lanes.iter().position(|lane| lane.name == name) else {
            return false;
        };
        let lane = self.lanes.remove(index);
        lane.owner.removed.store(true, Ordering::Relaxed);
        lane.stop.cancel();
        self.stats.remove_sink(name);
        self.stopping.push((lane.name, lane.task));
        true
    }

    /// Ends every destination's queue (each finishes what it has, or stops at once after a
    /// failure), waits for them, and reports the first required destination's failure.
    async fn finish(self, dispatched: Result<(), PipelineError>) -> Result<(), PipelineError> {
        let mut result = dispatched;
        for lane in &self.lanes {
            if result.is_err() {
                lane.stop.cancel();
            }
        }
        for lane in self.lanes {
            let Lane {
                queue, task, owner, ..
            } = lane;
            drop(queue);
            let ended = task.await;
            let lane_result = match ended {
                Ok(Ok(())) => {
                    owner.stats.set_sink_state("finished");
                    Ok(())
                }
                Ok(Err(error)) => {
                    owner.stats.set_sink_state("failed");
                    owner.stats.set_last_error(&error.to_string());
                    Err(error)
                }
                Err(panic) => Err(PipelineError::Internal(format!(
                    "a destination panicked: {panic}"
                ))),
            };
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

/// Resumes a destination from its checkpoint and starts its driver, which runs until `stop`;
/// it is not live yet (see [`Dispatcher::add`]).
async fn start_lane(
    built: BuiltLane,
    context: LaneContext,
    pipeline_stats: Arc<PipelineStats>,
    stop: CancellationToken,
) -> Result<Lane, PipelineError> {
    let (name, required, max_lag) = (built.name.clone(), built.required, built.max_lag);
    let stats = pipeline_stats.add_sink(&name, required);
    let signal = Arc::new(LaneSignal::default());
    let started = built.start(
        &context,
        Arc::clone(&stats),
        stop.clone(),
        Some(Arc::clone(&signal)),
    );
    let driver = match started.await {
        Ok(driver) => driver,
        Err(error) => {
            stats.set_sink_state("failed");
            stats.set_last_error(&error.to_string());
            return Err(error);
        }
    };
    let (queue, receiver) = lane_queue(signal);
    let task = tokio::spawn(driver.run(Events::Lane(receiver)));
    Ok(Lane {
        name,
        max_lag,
        queue,
        owner: CopyOwner {
            required,
            removed: Default::default(),
            stats,
        },
        live: false,
        streaming: false,
        skipped: 0,
        stop,
        task,
    })
}

/// A new fragment starts: as chunks to a live destination (one that caught up becomes live
/// again), read from its body by a required one that is behind, skipped by another.
fn begin(lane: &mut Lane, shared: &SharedFragment, pipeline: &str) {
    if !lane.live && lane.queue.is_idle() && !lane.queue.signal().is_down() {
        lane.live = true;
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
        lane.queue
            .push(ChunkEvent::Begin(shared.copy_for(&lane.owner)));
        lane.streaming = true;
    } else if lane.owner.required {
        lane.queue
            .push(ChunkEvent::ReadBody(shared.copy_for(&lane.owner)));
    } else {
        lane.stats().record_skipped();
        lane.skipped += 1;
    }
}

/// Takes back what `lane` has queued: it fell behind (`down`: its session failed).
fn detach(lane: &mut Lane, streaming: Option<u64>, down: bool, pipeline: &str) {
    let streaming = streaming.filter(|_| lane.streaming);
    let detached = lane.queue.detach(lane.owner.required, streaming);
    lane.live = false;
    lane.streaming = false;
    let skipped = detached.skipped.len() as u64;
    for _ in 0..skipped {
        lane.stats().record_skipped();
    }
    lane.skipped += skipped;
    drop(detached);
    let then = match lane.owner.required {
        true => "it reads what it missed from the fragments' files and holds them until confirmed",
        false => "it skips whole fragments until it is back, then rejoins at the live edge",
    };
    warn!(
        event = "sink_behind",
        pipeline = %pipeline,
        sink = %lane.name,
        reason = if down { "reconnecting" } else { "slow" },
        required = lane.owner.required,
        "Destination {} fell behind ({}); the others go on; {then}",
        lane.name,
        if down { "its session failed" } else { "it took nothing for 2 s while others waited" },
    );
}

/// A destination whose driver ended while the pipeline runs: a required one that failed fails
/// the pipeline; another is logged and left out.
fn lane_ended(
    lane: &Lane,
    ended: Result<Result<(), PipelineError>, tokio::task::JoinError>,
    pipeline: &str,
) -> Result<(), PipelineError> {
    let error = match ended {
        Ok(Ok(())) => {
            lane.stats().set_sink_state("finished");
            return Ok(());
        }
        Ok(Err(error)) => error,
        Err(panic) => PipelineError::Internal(format!("a destination panicked: {panic}")),
    };
    lane.stats().set_sink_state("failed");
    lane.stats().set_last_error(&error.to_string());
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
