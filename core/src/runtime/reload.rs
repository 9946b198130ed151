//! Reloading a pipeline file into a running runtime: added pipelines start, removed ones stop
//! gracefully, changed ones restart, and unchanged ones are not touched (their processes and
//! sessions stay up, their state goes on).

use tracing::{error, info};

use super::{build, Runtime};
use crate::config::{ConfigError, LoadedConfig};

/// What a reload did, by pipeline name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
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
        for pipeline in self.pipelines.drain(..) {
            let wanted = config
                .pipelines
                .iter()
                .find(|plan| plan.name == pipeline.name);
            match wanted {
                Some(plan) if plan.fingerprint == pipeline.fingerprint => {
                    reloaded.unchanged.push(pipeline.name.clone());
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
                Ok(built) => self.spawn(
                    built,
                    plan.fingerprint.clone(),
                    config.shutdown_timeout.get(),
                ),
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
            "Reloaded {}: started {:?}, stopped {:?}, restarted {:?}, unchanged {:?}",
            config.path.display(),
            reloaded.started,
            reloaded.stopped,
            reloaded.restarted,
            reloaded.unchanged,
        );
        Ok(reloaded)
    }
}
