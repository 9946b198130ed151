//! Reloading a pipeline file into a running runtime: added pipelines start, removed ones stop
//! gracefully, changed ones restart, and unchanged ones are not touched (their processes and
//! sessions stay up, their state goes on). A fan-out whose destinations alone changed keeps
//! running: the destinations added, removed or changed start, stop or restart, the others are
//! not touched.

use tracing::{error, info};

use super::fan_out::LaneChange;
use super::lane::build_lane;
use super::{build, RunningPipeline, Runtime};
use crate::config::{ConfigError, LoadedConfig, PipelinePlan};

/// What a reload did, by pipeline name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
    /// Fan-outs that went on running with destinations started, stopped or restarted, as
    /// `pipeline/destination` with `+` (started), `-` (stopped) or `~` (restarted) before it.
    pub reconfigured: Vec<String>,
    /// Pipelines that could not be started from the new file (a component failed to build),
    /// with why; the old version of a changed one was stopped already.
    pub failed: Vec<(String, String)>,
}

impl Runtime {
    /// Applies `config` to the running pipelines. A file that does not validate changes
    /// nothing (the error says why). Pipelines to stop are stopped gracefully, and awaited,
    /// before the new ones are built, so that a changed pipeline's state directory, ports and
    /// locks are free for its new version.
    pub async fn reload(&mut self, config: &LoadedConfig) -> Result<Reloaded, ConfigError> {
        config.validate()?;
        let mut reloaded = Reloaded::default();
        let mut running = Vec::with_capacity(self.pipelines.len());
        let mut stopping = Vec::new();
        for mut pipeline in self.pipelines.drain(..) {
            let wanted = config
                .pipelines
                .iter()
                .find(|plan| plan.name == pipeline.name);
            match wanted {
                Some(plan) if plan.fingerprint == pipeline.fingerprint => {
                    reloaded.unchanged.push(pipeline.name.clone());
                    running.push(pipeline);
                }
                Some(plan) if reconfigurable(&pipeline, plan) => {
                    let changes = reconfigure(&mut pipeline, plan, config, &self.services).await;
                    reloaded.reconfigured.extend(changes.0);
                    reloaded.failed.extend(changes.1);
                    running.push(pipeline);
                }
                Some(_) => {
                    reloaded.restarted.push(pipeline.name.clone());
                    stopping.push(pipeline);
                }
                None => {
                    reloaded.stopped.push(pipeline.name.clone());
                    stopping.push(pipeline);
                }
            }
        }
        self.pipelines = running;
        for pipeline in &stopping {
            pipeline.stop.cancel();
        }
        for mut pipeline in stopping {
            let report = pipeline.finished().await.clone();
            self.board.remove(&pipeline.name);
            self.stopped.push(report);
        }
        for plan in &config.pipelines {
            if self
                .pipelines
                .iter()
                .any(|pipeline| pipeline.name == plan.name)
            {
                continue;
            }
            if !reloaded.restarted.contains(&plan.name) {
                reloaded.started.push(plan.name.clone());
            }
            match build(config, plan, &self.services).await {
                Ok(built) => self.spawn(built, plan, config.shutdown_timeout.get()),
                Err(build_error) => {
                    error!(
                        event = "pipeline_not_started",
                        pipeline = %plan.name,
                        error = %build_error,
                        "Pipeline {} could not be started from the reloaded file: {build_error}",
                        plan.name
                    );
                    reloaded
                        .failed
                        .push((plan.name.clone(), build_error.to_string()));
                }
            }
        }
        info!(
            event = "config_reloaded",
            started = %reloaded.started.join(","),
            stopped = %reloaded.stopped.join(","),
            restarted = %reloaded.restarted.join(","),
            unchanged = %reloaded.unchanged.join(","),
            reconfigured = %reloaded.reconfigured.join(","),
            "Reloaded {}: started {:?}, stopped {:?}, restarted {:?}, unchanged {:?}, destinations changed {:?}",
            config.path.display(),
            reloaded.started,
            reloaded.stopped,
            reloaded.restarted,
            reloaded.unchanged,
            reloaded.reconfigured,
        );
        Ok(reloaded)
    }
}

/// Whether a running fan-out can take `plan` by changing destinations only.
fn reconfigurable(pipeline: &RunningPipeline, plan: &PipelinePlan) -> bool {
    pipeline.changes.is_some()
        && !pipeline.task.is_finished()
        && plan.fans_out()
        && plan.shared_fingerprint == pipeline.shared_fingerprint
}

/// Starts, stops and restarts the destinations of a running fan-out that `plan` adds, removes
/// or changes. A destination that cannot be built is left as it was (a changed one keeps
/// running in its old form) and reported as failed.
async fn reconfigure(
    pipeline: &mut RunningPipeline,
    plan: &PipelinePlan,
    config: &LoadedConfig,
    services: &crate::services::Services,
) -> (Vec<String>, Vec<(String, String)>) {
    let (mut added, mut removed, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let changes = pipeline.changes.clone().expect("checked by reconfigurable");
    let context = config.context(plan, services);
    let old = std::mem::take(&mut pipeline.destinations);
    let mut kept = Vec::new();
    // Added and changed destinations first, so that a required one is there at every moment.
    for destination in &plan.destinations {
        let previous = old.iter().find(|(name, _)| *name == destination.name);
        if previous.is_some_and(|(_, fingerprint)| *fingerprint == destination.fingerprint) {
            kept.extend(previous.cloned());
            continue;
        }
        match build_lane(config, plan, destination, &context).await {
            Ok(built) => {
                let _ = changes.send(LaneChange::Add(built));
                let sign = if previous.is_some() { '~' } else { '+' };
                added.push(format!("{sign}{}/{}", plan.name, destination.name));
                kept.push((destination.name.clone(), destination.fingerprint.clone()));
            }
            Err(build_error) => {
                error!(
                    event = "sink_not_started",
                    pipeline = %plan.name,
                    sink = %destination.name,
                    error = %build_error,
                    "Destination {} of pipeline {} could not be started from the reloaded file: {build_error}",
                    destination.name,
                    plan.name
                );
                failed.push((
                    format!("{}/{}", plan.name, destination.name),
                    build_error.to_string(),
                ));
                // A changed one goes on in its old form.
                kept.extend(previous.cloned());
            }
        }
    }
    // Then those the file no longer has, unless no required destination of the file runs.
    let required_runs = plan.destinations.iter().any(|destination| {
        destination.required && kept.iter().any(|(name, _)| *name == destination.name)
    });
    for (name, fingerprint) in old {
        if plan.destinations.iter().any(|wanted| wanted.name == name) {
            continue;
        }
        if !required_runs {
            failed.push((
                format!("{}/{name}", plan.name),
                "kept running: no required destination of the reloaded file could start".into(),
            ));
            kept.push((name, fingerprint));
            continue;
        }
        let _ = changes.send(LaneChange::Remove(name.clone()));
        removed.push(format!("-{}/{name}", plan.name));
    }
    let done = removed.into_iter().chain(added).collect();
    pipeline.destinations = kept;
    // What runs now is what the file says, except destinations that failed to build: those
    // are tried again by the next reload that changes them.
    pipeline.fingerprint = match failed.is_empty() {
        true => plan.fingerprint.clone(),
        false => String::new(),
    };
    (done, failed)
}
