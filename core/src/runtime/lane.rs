//! One destination of a pipeline, built and not yet running, and how it starts: its checkpoint
//! loaded, its sink resumed from it, and the sink driver that runs it made.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::driver::{Confirmations, Outages, Pacer, SinkDriver};
use super::error::PipelineError;
use super::lane_queue::LaneSignal;
use super::pipeline_checkpoint::{PipelineCheckpoint, Snapshot};
use super::stages::StageChain;
use super::stats::PipelineStats;
use crate::component::ComponentContext;
use crate::config::{ConfigError, Destination, LoadedConfig, PipelinePlan};
use crate::sink::{ResumeFrom, Sink};
use crate::stage::Stage;

/// A destination's parts, built.
pub(crate) struct BuiltLane {
    pub(crate) name: String,
    pub(crate) required: bool,
    pub(crate) max_lag: usize,
    /// The pipeline's listed stages (its own copy), then the destination's own and those its
    /// sink implies.
    stages: Vec<Box<dyn Stage>>,
    /// The stages' types, in order.
    stage_types: Vec<String>,
    pub(crate) sink: Box<dyn Sink>,
    /// Its checkpoint: `<state_dir>/<pipeline>/pipeline.json` for the destination of `sink:`,
    /// `sink-<name>.json` beside it for each of `sinks:`.
    checkpoint_file: Option<PathBuf>,
}

/// What every destination of a pipeline starts with.
#[derive(Debug, Clone)]
pub(crate) struct LaneContext {
    pub(crate) pipeline: String,
    /// For reading a fragment again.
    pub(crate) chunk_size: usize,
    pub(crate) shutdown_timeout: Duration,
}

/// Builds one destination of `plan`: a copy of the listed stages, its own and implied stages,
/// its sink.
pub(crate) async fn build_lane(
    config: &LoadedConfig,
    plan: &PipelinePlan,
    destination: &Destination,
    context: &ComponentContext,
) -> Result<BuiltLane, ConfigError> {
    let mut stages = Vec::new();
    let mut stage_types = Vec::new();
    for stage in plan.stages.iter().chain(&destination.stages) {
        stages.push(config.check(plan, stage, stage.config.build(context).await)?);
        stage_types.push(stage.type_name.clone());
    }
    let sink = &destination.sink;
    let mut sink_context = context.clone();
    sink_context.sink = plan.fans_out().then(|| destination.name.clone());
    let sink = config.check(plan, sink, sink.config.build(&sink_context).await)?;
    let checkpoint_file = match plan.sinks_listed {
        false => context.state_file("pipeline"),
        true => context.state_file(&format!("sink-{}", destination.name)),
    };
    Ok(BuiltLane {
        name: destination.name.clone(),
        required: destination.required,
        max_lag: destination.max_lag,
        stages,
        stage_types,
        sink,
        checkpoint_file,
    })
}

impl BuiltLane {
    /// Whether the destination has stages (which rewrite the bytes a splicing sink would take
    /// from the file).
    pub(crate) fn has_stages(&self) -> bool {
        !self.stages.is_empty()
    }

    /// Resumes the sink from the destination's checkpoint and makes the driver that runs it
    /// until `shutdown`; `signal` for a fan-out's destination.
    pub(crate) async fn start(
        self,
        context: &LaneContext,
        stats: Arc<PipelineStats>,
        shutdown: CancellationToken,
        signal: Option<Arc<LaneSignal>>,
    ) -> Result<SinkDriver, PipelineError> {
        let mut sink = self.sink;
        let mut stages = StageChain::new(self.stages);
        let checkpoint = resume(
            &mut sink,
            &mut stages,
            self.checkpoint_file,
            self.stage_types,
        )
        .await?;
        let pacer = sink.capabilities().pacing.map(Pacer::new);
        if let Some(signal) = &signal {
            signal.set_paced(pacer.is_some());
        }
        Ok(SinkDriver {
            pipeline: context.pipeline.clone(),
            sink,
            stages,
            stats: Arc::clone(&stats),
            chunk_size: context.chunk_size,
            shutdown,
            shutdown_timeout: context.shutdown_timeout,
            confirmations: Confirmations::new(&context.pipeline, Arc::clone(&stats), checkpoint),
            outages: Outages::new(stats.fragments_published()),
            pacer,
            filler: Default::default(),
            clock: Default::default(),
            signal,
        })
    }
}

/// Loads the destination's checkpoint (with a `state_dir`) and lets the sink resume from it;
/// when the sink continues its earlier output, the stages get their saved state back.
async fn resume(
    sink: &mut Box<dyn Sink>,
    stages: &mut StageChain,
    checkpoint_file: Option<PathBuf>,
    stage_types: Vec<String>,
) -> Result<Option<PipelineCheckpoint>, PipelineError> {
    let Some(path) = checkpoint_file else {
        sink.resume(ResumeFrom::Nothing).await?;
        return Ok(None);
    };
    let loaded =
        tokio::task::spawn_blocking(move || PipelineCheckpoint::load(path, stage_types)).await;
    let mut checkpoint = loaded
        .map_err(|panic| PipelineError::Internal(panic.to_string()))?
        .map_err(|error| PipelineError::State(error.to_string()))?;
    let resume_from = checkpoint.resume_from();
    let starting = resume_from == ResumeFrom::Start;
    if sink.resume(resume_from).await? {
        let states = checkpoint.stage_states().map_err(PipelineError::State)?;
        stages
            .restore(states)
            .map_err(|error| PipelineError::State(format!("a stage cannot resume: {error}")))?;
    } else if let (true, Some(state)) = (starting, sink.checkpoint()) {
        // Where a new output starts is saved before it takes a byte: a crash in its first
        // fragment then cuts back to it, instead of leaving an output the state knows nothing
        // of (which the next start would refuse).
        let start = Snapshot {
            sink: Some(state),
            stages: stages.checkpoint(),
        };
        let (saved, result) = checkpoint
            .write_in_background(move |state| state.record([], start))
            .await
            .map_err(|panic| PipelineError::Internal(panic.to_string()))?;
        result.map_err(|error| PipelineError::State(error.to_string()))?;
        checkpoint = saved;
    }
    Ok(Some(checkpoint))
}
