//! Runs pipelines: builds their components, wires source → chunking stage → stages → sink, and
//! reports how each one ended.
//!
//! Each pipeline runs as its own tasks with its own bounded queues, so a slow or failed
//! pipeline never stalls another.

pub mod chunking;
mod driver;
mod error;
mod fan_out;
mod lane;
mod lane_queue;
mod latency;
mod pacer;
mod pipeline_checkpoint;
pub(crate) mod reload;
mod stages;
mod stats;
mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use self::chunking::ChunkingStage;
use self::driver::Events;
pub(crate) use self::error::PipelineError;
use self::fan_out::{Dispatcher, LaneChange};
use self::lane::{build_lane, BuiltLane, LaneContext};
pub use self::latency::HistogramSnapshot;
pub use self::stats::{LatencySummary, PipelineReport, PipelineState, PipelineStats};
pub use self::status::{Health, Readiness, StatusBoard};
use crate::component::ComponentError;
use crate::config::{ConfigError, LoadedConfig, PipelinePlan};
use crate::services::Services;
use crate::source::Source;

/// How long the chunking stage may take to notice that the sink driver is done.
const CHUNKING_STOP_GRACE: Duration = Duration::from_secs(1);

/// Chunk events queued between the chunking stage and the sink driver. Bytes are bounded by
/// `max_in_flight`; this only bounds the count of small events (begin, end).
const CHUNK_EVENT_QUEUE: usize = 64;

/// Cancelled when the runtime is asked to stop: a [`Services`] entry for services that run
/// tasks of their own (listeners) and must stop with the runtime.
#[derive(Debug, Clone, Default)]
pub struct RuntimeShutdown(pub CancellationToken);

/// Running pipelines.
pub struct Runtime {
    services: Services,
    shutdown: CancellationToken,
    board: StatusBoard,
    pipelines: Vec<RunningPipeline>,
    /// How pipelines that a reload stopped ended, for the run's report.
    stopped: Vec<PipelineReport>,
}

/// A pipeline's task and what it was started from.
struct RunningPipeline {
    name: String,
    /// See [`PipelinePlan::fingerprint`].
    fingerprint: String,
    /// See [`PipelinePlan::shared_fingerprint`].
    shared_fingerprint: String,
    /// A fan-out's destinations, by name, with their fingerprints; empty for one destination.
    destinations: Vec<(String, String)>,
    /// Adds and removes a fan-out's destinations while it runs.
    changes: Option<mpsc::UnboundedSender<LaneChange>>,
    stats: Arc<PipelineStats>,
    /// Stops this pipeline alone (a reload); cancelled with the runtime's shutdown too.
    stop: CancellationToken,
    task: JoinHandle<PipelineReport>,
    /// How it ended, once it has.
    report: Option<PipelineReport>,
}

impl RunningPipeline {
    /// Waits until the pipeline has ended (cancel-safe: a wait cut short can be made again).
    async fn finished(&mut self) -> &PipelineReport {
        if self.report.is_none() {
            let report = (&mut self.task).await.unwrap_or_else(|panic| {
                let error = format!("the pipeline panicked: {panic}");
                ended(&self.stats, Err(PipelineError::Internal(error)))
            });
            self.report = Some(report);
        }
        self.report.as_ref().expect("just set")
    }
}

/// How a whole run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub pipelines: Vec<PipelineReport>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.pipelines
            .iter()
            .all(|pipeline| pipeline.error.is_none())
    }
}

/// The parts of one pipeline, built and not yet running.
struct BuiltPipeline {
    name: String,
    /// `directory → file`, for the start line.
    shape: String,
    chunking: ChunkingStage,
    fragment_buffer_size: usize,
    source: Box<dyn Source>,
    /// Its destinations: one, or a fan-out's.
    lanes: Vec<BuiltLane>,
    fans_out: bool,
}

impl Runtime {
    /// Validates and builds every pipeline, then starts them all. Nothing starts if any
    /// component fails to validate or build.
    pub async fn start(config: &LoadedConfig) -> Result<Self, ConfigError> {
        Self::start_with(config, Services::default()).await
    }

    /// Like [`Runtime::start`], with services the caller has prepared (a listener it bound
    /// before, to fail early). The runtime adds its [`StatusBoard`] and [`RuntimeShutdown`]
    /// unless they are there already.
    pub async fn start_with(
        config: &LoadedConfig,
        services: Services,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let shutdown = services
            .get_or_insert_with(RuntimeShutdown::default)
            .0
            .clone();
        let board = StatusBoard::clone(&services.get_or_insert_with(StatusBoard::default));
        let mut built = Vec::with_capacity(config.pipelines.len());
        for plan in &config.pipelines {
            built.push((build(config, plan, &services).await?, plan));
        }
        let mut runtime = Self {
            services,
            shutdown,
            board,
            pipelines: Vec::with_capacity(built.len()),
            stopped: Vec::new(),
        };
        for (pipeline, plan) in built {
            runtime.spawn(pipeline, plan, config.shutdown_timeout.get());
        }
        Ok(runtime)
    }

    /// Starts a built pipeline.
    fn spawn(&mut self, pipeline: BuiltPipeline, plan: &PipelinePlan, shutdown_timeout: Duration) {
        let stats = self.board.add(&pipeline.name);
        let stop = self.shutdown.child_token();
        let name = pipeline.name.clone();
        let (changes, changes_rx) = match plan.fans_out() {
            true => {
                let (sender, receiver) = mpsc::unbounded_channel();
                (Some(sender), Some(receiver))
            }
            false => (None, None),
        };
        let task = tokio::spawn(run_pipeline(
            pipeline,
            Arc::clone(&stats),
            stop.clone(),
            shutdown_timeout,
            changes_rx,
        ));
        let destinations = match plan.fans_out() {
            true => plan
                .destinations
                .iter()
                .map(|destination| (destination.name.clone(), destination.fingerprint.clone()))
                .collect(),
            false => Vec::new(),
        };
        self.pipelines.push(RunningPipeline {
            name,
            fingerprint: plan.fingerprint.clone(),
            shared_fingerprint: plan.shared_fingerprint.clone(),
            destinations,
            changes,
            stats,
            stop,
            task,
            report: None,
        });
    }

    /// The services the runtime's components share (e.g. the `channel` source's channels).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Live counters of every pipeline, in config order.
    pub fn stats(&self) -> impl Iterator<Item = &PipelineStats> {
        self.pipelines
            .iter()
            .map(|pipeline| pipeline.stats.as_ref())
    }

    /// Every pipeline's stats and health, as `/metrics` and `/healthz` report them.
    pub fn status(&self) -> &StatusBoard {
        &self.board
    }

    /// Requests a graceful stop: sources stop, the fragment in flight finishes (bounded by
    /// `shutdown_timeout`), sinks close and sources save their state.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that is cancelled once shutdown was requested.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every pipeline has ended. Cancel-safe: a supervisor can wait for this and
    /// for signals at once, and reload in between.
    pub async fn finished(&mut self) {
        for pipeline in &mut self.pipelines {
            pipeline.finished().await;
        }
    }

    /// Waits until every pipeline has ended; reports them all, those a reload stopped first.
    pub async fn wait(mut self) -> RunReport {
        self.finished().await;
        let mut reports = self.stopped;
        reports.extend(
            self.pipelines
                .into_iter()
                .filter_map(|pipeline| pipeline.report),
        );
        RunReport { pipelines: reports }
    }
}

async fn build(
    config: &LoadedConfig,
    plan: &PipelinePlan,
    services: &Services,
) -> Result<BuiltPipeline, ConfigError> {
    let context = config.context(plan, services);
    let source = config.check(plan, &plan.source, plan.source.config.build(&context).await)?;
    let mut lanes = Vec::with_capacity(plan.destinations.len());
    for destination in &plan.destinations {
        lanes.push(build_lane(config, plan, destination, &context).await?);
    }
    let pipeline_stages = plan.pipeline_stages();
    let stages = pipeline_stages.iter().map(|stage| stage.type_name.as_str());
    let sinks = plan.destinations.iter().map(|destination| {
        let type_name = &destination.sink.type_name;
        match destination.name == *type_name {
            true => type_name.clone(),
            false => format!("{type_name} {}", destination.name),
        }
    });
    let sinks = sinks.collect::<Vec<_>>();
    let sinks = match plan.fans_out() {
        true => format!("[{}]", sinks.join(", ")),
        false => sinks.concat(),
    };
    let shape = std::iter::once(plan.source.type_name.as_str())
        .chain(stages)
        .chain(std::iter::once(sinks.as_str()))
        .collect::<Vec<_>>()
        .join(" → ");
    // Work on the body before it is read is shared by every destination: only the listed
    // stages' in a fan-out.
    if plan.fans_out() {
        for destination in &plan.destinations {
            for stage in &destination.stages {
                if stage.config.body_preparer(&context).is_some() {
                    let refused = Err(ComponentError::new(
                        "prepares each fragment's file before it is read, which in a fan-out \
                         every destination shares: list this stage in the pipeline's `stages`",
                    ));
                    config.check(plan, stage, refused)?;
                }
            }
        }
    }
    let preparers = pipeline_stages
        .iter()
        .filter_map(|stage| stage.config.body_preparer(&context))
        .collect();
    // Nothing rewrites the bytes between chunking stage and sink: a splicing sink can take
    // file ranges instead of bytes.
    let file_ranges = match lanes.as_slice() {
        [lane] => !lane.has_stages() && lane.sink.capabilities().file_ranges,
        _ => false,
    };
    let chunking = ChunkingStage::new(plan.chunk_size, plan.max_in_flight.bytes())
        .with_file_ranges(file_ranges)
        .with_preparers(preparers);
    Ok(BuiltPipeline {
        name: plan.name.clone(),
        shape,
        chunking,
        fragment_buffer_size: plan.fragment_buffer_size,
        source,
        lanes,
        fans_out: plan.fans_out(),
    })
}

async fn run_pipeline(
    pipeline: BuiltPipeline,
    stats: Arc<PipelineStats>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
    changes: Option<mpsc::UnboundedReceiver<LaneChange>>,
) -> PipelineReport {
    info!(
        event = "pipeline_started",
        pipeline = %pipeline.name,
        shape = %pipeline.shape,
        "Pipeline {} started: {}",
        pipeline.name,
        pipeline.shape
    );
    let result = run_to_end(pipeline, &stats, shutdown, shutdown_timeout, changes).await;
    ended(&stats, result)
}

/// Runs a pipeline until its input ends, shutdown, or it fails.
async fn run_to_end(
    pipeline: BuiltPipeline,
    stats: &Arc<PipelineStats>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
    changes: Option<mpsc::UnboundedReceiver<LaneChange>>,
) -> Result<(), PipelineError> {
    let lane_context = LaneContext {
        pipeline: pipeline.name.clone(),
        chunk_size: pipeline.chunking.chunk_size(),
        shutdown_timeout,
    };
    // Every destination resumes before the source starts: one that cannot fails the pipeline
    // before anything is read.
    let mut dispatcher = None;
    let mut driver = None;
    if pipeline.fans_out {
        let mut fan_out = Dispatcher::new(lane_context, Arc::clone(stats), shutdown.clone());
        for lane in pipeline.lanes {
            if let Err(error) = fan_out.add(lane).await {
                // The destinations started already stop before the pipeline reports.
                return fan_out.finish(Err(error)).await;
            }
        }
        dispatcher = Some(fan_out);
    } else {
        let lane = pipeline
            .lanes
            .into_iter()
            .next()
            .expect("a pipeline has a destination");
        stats.name_sink(&lane.name);
        let started = lane.start(&lane_context, Arc::clone(stats), shutdown.clone(), None);
        driver = Some(started.await?);
    }
    // Cancelled on shutdown, and also when this pipeline's sink fails, so its source stops.
    let stop_source = shutdown.child_token();
    let (fragment_tx, fragment_rx) = mpsc::channel(pipeline.fragment_buffer_size);
    let (event_tx, event_rx) = mpsc::channel(CHUNK_EVENT_QUEUE);
    let (budget, budget_size) = pipeline.chunking.budget();
    stats.attach_queues(&fragment_tx, budget, budget_size);
    let source_task = tokio::spawn(pipeline.source.run(fragment_tx, stop_source.clone()));
    let mut chunking_task = tokio::spawn(pipeline.chunking.run(fragment_rx, event_tx));
    let delivered = match (driver, dispatcher) {
        (Some(driver), _) => driver.run(Events::Channel(event_rx)).await,
        (None, Some(dispatcher)) => dispatcher.run(event_rx, changes).await,
        (None, None) => unreachable!("one of them was made above"),
    };
    if delivered.is_err() {
        stop_source.cancel();
    }
    // Nothing consumes chunks any more. The chunking task ends by itself once it tries to send,
    // but one stuck preparing a body (a remux that hangs) would never try: after a moment it is
    // stopped, which also kills a child process it waits for. A stopped task reports nothing,
    // which only understates what is left for the next start.
    let offered = match tokio::time::timeout(CHUNKING_STOP_GRACE, &mut chunking_task).await {
        Ok(offered) => offered.unwrap_or(0),
        Err(_) => {
            chunking_task.abort();
            0
        }
    };
    stats.record_offered(offered);
    let sourced = match source_task.await {
        Ok(result) => result.map_err(PipelineError::from),
        Err(panic) => Err(PipelineError::Internal(format!(
            "source task panicked: {panic}"
        ))),
    };
    delivered.and(sourced)
}

/// Records and logs how a pipeline ended, and makes its report.
fn ended(stats: &PipelineStats, result: Result<(), PipelineError>) -> PipelineReport {
    let error = result.err().map(|error| error.to_string());
    stats.set_state(match &error {
        None => PipelineState::Finished,
        Some(message) => PipelineState::Failed(message.clone()),
    });
    let report = PipelineReport::new(stats, error);
    match &report.error {
        None => info!(
            event = "pipeline_finished",
            pipeline = %report.name,
            fragments_published = report.fragments_published,
            fragments_failed = report.fragments_failed,
            fragments_skipped = report.fragments_skipped,
            fragments_left = report.fragments_left,
            bytes_published = report.bytes_published,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "Pipeline {} finished: {} fragments published ({:.2} MiB in {:.2} s, {:.1} MiB/s), {} failed, {} left for the next start",
            report.name,
            report.fragments_published,
            report.bytes_published as f64 / (1024.0 * 1024.0),
            report.elapsed.as_secs_f64(),
            report.throughput_mib_s(),
            report.fragments_failed,
            report.fragments_left,
        ),
        Some(message) => error!(
            event = "pipeline_failed",
            pipeline = %report.name,
            fragments_published = report.fragments_published,
            fragments_failed = report.fragments_failed,
            fragments_left = report.fragments_left,
            error = %message,
            "Pipeline {} failed after {} fragments published, {} failed, {} left for the next start: {message}",
            report.name,
            report.fragments_published,
            report.fragments_failed,
            report.fragments_left,
        ),
    }
    report
}
