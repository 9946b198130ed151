//! What a running runtime knows about its pipelines: every pipeline's [`PipelineStats`] on one
//! [`StatusBoard`], whatever its source and sink, and their health.
//!
//! The board is one of the runtime's [`Services`](crate::plugin::Services), so a plugin that reports
//! (the HTTP listeners' `/metrics` and `/healthz`) finds it there; rendering a format is the
//! plugin's business.

use std::sync::{Arc, RwLock};

use super::stats::{PipelineState, PipelineStats};

/// The stats of every pipeline of a process.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    pipelines: Arc<RwLock<Vec<Arc<PipelineStats>>>>,
}

/// What `/healthz` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Every pipeline is running.
    pub healthy: bool,
    /// Each pipeline's name and state, in config order.
    pub pipelines: Vec<(String, PipelineState)>,
}

/// What `/readyz` reports: whether the process does its job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// No pipeline failed and no sink is in an outage.
    pub ready: bool,
    /// Why not, one line each (`channel-1/origin: reconnecting`).
    pub reasons: Vec<String>,
}

impl StatusBoard {
    /// Ready while no pipeline has failed and no sink (or destination of a fan-out) is in an
    /// outage or failed: a load balancer or Kubernetes then sends no work here, and nothing restarts
    /// the process for it (it reconnects by itself).
    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        for pipeline in self.pipelines() {
            if let PipelineState::Failed(error) = pipeline.state() {
                reasons.push(format!("{}: failed: {error}", pipeline.name()));
            }
            let sinks = pipeline.sinks();
            if sinks.is_empty() && pipeline.in_outage() {
                reasons.push(format!("{}: sink reconnecting", pipeline.name()));
            }
            for sink in &sinks {
                let name = sink.sink().unwrap_or_default();
                match sink.sink_state() {
                    "failed" => reasons.push(format!(
                        "{}/{name}: failed: {}",
                        pipeline.name(),
                        sink.last_error().unwrap_or_default()
                    )),
                    _ if sink.in_outage() => {
                        reasons.push(format!("{}/{name}: reconnecting", pipeline.name()))
                    }
                    _ => {}
                }
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }

    /// Adds a pipeline and returns the stats its runtime updates.
    pub(crate) fn add(&self, name: &str) -> Arc<PipelineStats> {
        let stats = Arc::new(PipelineStats::new(name));
        self.write().push(Arc::clone(&stats));
        stats
    }

    /// Removes a pipeline that has stopped for good (a reload removed or replaced it).
    pub fn remove(&self, name: &str) {
        self.write().retain(|stats| stats.name() != name);
    }

    /// Every pipeline's stats, in config order.
    pub fn pipelines(&self) -> Vec<Arc<PipelineStats>> {
        self.pipelines
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<PipelineStats>>> {
        self.pipelines
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn health(&self) -> Health {
        let pipelines: Vec<(String, PipelineState)> = self
            .pipelines()
            .iter()
            .map(|stats| (stats.name().to_owned(), stats.state()))
            .collect();
        Health {
            healthy: pipelines
                .iter()
                .all(|(_, state)| *state == PipelineState::Running),
            pipelines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_in_an_outage_makes_the_process_not_ready() {
        let board = StatusBoard::default();
        let pipeline = board.add("channel-1");
        let destination = pipeline.add_sink("origin", true);
        assert!(board.readiness().ready);
        destination.set_in_outage(true);
        assert_eq!(
            board.readiness().reasons,
            ["channel-1/origin: reconnecting".to_owned()]
        );
        destination.set_in_outage(false);
        board.add("single").set_in_outage(true);
        assert_eq!(
            board.readiness().reasons,
            ["single: sink reconnecting".to_owned()]
        );
    }

    #[test]
    fn health_names_pipelines_that_are_not_running() {
        let board = StatusBoard::default();
        board.add("ok");
        let broken = board.add("broken");
        assert!(board.health().healthy);
        broken.set_state(PipelineState::Failed("sink failed".into()));
        let health = board.health();
        assert!(!health.healthy);
        assert_eq!(
            health.pipelines[1],
            (
                "broken".to_owned(),
                PipelineState::Failed("sink failed".into())
            )
        );
    }
}
