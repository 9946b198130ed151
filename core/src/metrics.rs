//! What a running process tells the outside about its pipelines: Prometheus metrics and health.
//!
//! Every pipeline's [`PipelineStats`] is on one [`StatusBoard`], whatever its source and sink.
//! The board renders them in the OpenMetrics text format (which Prometheus scrapes natively),
//! one metric family per counter with a `pipeline` label, and answers health checks.

use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::runtime::{PipelineState, PipelineStats};

/// The content type of [`StatusBoard::render_metrics`].
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

impl StatusBoard {
    /// Adds a pipeline and returns the stats its runtime updates.
    pub fn add(&self, name: &str) -> Arc<PipelineStats> {
        let stats = Arc::new(PipelineStats::new(name));
        self.write().push(Arc::clone(&stats));
        stats
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

    /// The metrics of every pipeline in the OpenMetrics text format ([`METRICS_CONTENT_TYPE`]).
    pub fn render_metrics(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// One metric family: its name (without `_total`, which counters get when encoded), help and
/// how to read it from a pipeline.
struct Family {
    name: &'static str,
    help: &'static str,
    value: Value,
}

enum Value {
    Counter(fn(&PipelineStats) -> u64),
    Gauge(fn(&PipelineStats) -> f64),
    Histogram(fn(&PipelineStats) -> &Histogram),
}

const FAMILIES: &[Family] = &[
    Family {
        name: "streampub_fragments_published",
        help: "Fragments the sink has fully taken.",
        value: Value::Counter(PipelineStats::fragments_published),
    },
    Family {
        name: "streampub_bytes_published",
        help: "Bytes of the fragments published.",
        value: Value::Counter(PipelineStats::bytes_published),
    },
    Family {
        name: "streampub_fragments_failed",
        help: "Fragments that failed (unreadable, rejected by a stage, or the sink gave up).",
        value: Value::Counter(PipelineStats::fragments_failed),
    },
    Family {
        name: "streampub_sink_reconnects",
        help: "New sink sessions started after a sink failure.",
        value: Value::Counter(PipelineStats::sink_reconnects),
    },
    Family {
        name: "streampub_publish_latency_seconds",
        help: "Per fragment, from its first chunk handed to the sink to the sink taking the last.",
        value: Value::Histogram(PipelineStats::publish_latency),
    },
    Family {
        name: "streampub_bytes_in_flight",
        help: "Bytes read from fragments and not yet taken by the sink (bounded by max_in_flight).",
        value: Value::Gauge(|stats| stats.bytes_in_flight() as f64),
    },
    Family {
        name: "streampub_fragments_queued",
        help: "Fragments sent by the source and not yet opened (bounded by fragment_buffer_size).",
        value: Value::Gauge(|stats| stats.fragments_queued() as f64),
    },
    Family {
        name: "streampub_last_publish_timestamp_seconds",
        help: "Unix time of the last fragment published; 0 before the first.",
        value: Value::Gauge(|stats| stats.last_publish_unix_seconds().unwrap_or(0.0)),
    },
    Family {
        name: "streampub_pipeline_up",
        help: "1 while the pipeline runs, 0 once it finished or failed.",
        value: Value::Gauge(|stats| f64::from(u8::from(stats.state() == PipelineState::Running))),
    },
];

impl Collector for StatusBoard {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pipelines = self.pipelines();
        for family in FAMILIES {
            let metric_type = match family.value {
                Value::Counter(_) => MetricType::Counter,
                Value::Gauge(_) => MetricType::Gauge,
                Value::Histogram(_) => MetricType::Histogram,
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for stats in &pipelines {
                let labels = [("pipeline", stats.name())];
                let sample = metric.encode_family(&labels)?;
                match family.value {
                    Value::Counter(read) => ConstCounter::new(read(stats)).encode(sample)?,
                    Value::Gauge(read) => ConstGauge::new(read(stats)).encode(sample)?,
                    Value::Histogram(read) => read(stats).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn metrics_have_one_sample_per_pipeline() {
        let board = StatusBoard::default();
        let first = board.add("first");
        board.add("second");
        first.record_published(1000, Duration::from_millis(20));
        first.record_published(500, Duration::from_millis(30));
        let text = board.render_metrics();
        assert!(
            text.contains("streampub_fragments_published_total{pipeline=\"first\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("streampub_fragments_published_total{pipeline=\"second\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("streampub_bytes_published_total{pipeline=\"first\"} 1500\n"),
            "{text}"
        );
        assert!(
            text.contains("streampub_publish_latency_seconds_count{pipeline=\"first\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "streampub_publish_latency_seconds_bucket{le=\"0.04\",pipeline=\"first\"} 2\n"
            ) || text.contains(
                "streampub_publish_latency_seconds_bucket{pipeline=\"first\",le=\"0.04\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
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
