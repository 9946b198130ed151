//! `/metrics`: every pipeline's stats in the OpenMetrics text format (which Prometheus scrapes
//! natively), one metric family per counter with a `pipeline` label; what is about a sink also
//! has a `sink` label (the destination's name), with a sample per destination in a fan-out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use streampub_core::HistogramSnapshot;
use streampub_core::{PipelineState, PipelineStats, StatusBoard};

/// The content type of [`render_metrics`].
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of every pipeline on `board`, in the OpenMetrics text format.
pub fn render_metrics(board: &StatusBoard) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BoardCollector(board.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct BoardCollector(StatusBoard);

/// One metric family: its name (without `_total`, which counters get when encoded), help and
/// how to read it from a pipeline.
struct Family {
    name: &'static str,
    help: &'static str,
    value: Value,
    /// Counted per destination: a fan-out has a sample per destination (`sink` label).
    per_sink: bool,
}

enum Value {
    Counter(fn(&PipelineStats) -> u64),
    SecondsCounter(fn(&PipelineStats) -> f64),
    Gauge(fn(&PipelineStats) -> f64),
    Histogram(fn(&PipelineStats) -> HistogramSnapshot),
}

const FAMILIES: &[Family] = &[
    Family {
        name: "streampub_fragments_published",
        help: "Fragments the sink has fully taken.",
        value: Value::Counter(PipelineStats::fragments_published),
        per_sink: true,
    },
    Family {
        name: "streampub_bytes_published",
        help: "Bytes of the fragments published.",
        value: Value::Counter(PipelineStats::bytes_published),
        per_sink: true,
    },
    Family {
        name: "streampub_fragments_failed",
        help: "Fragments that failed (unreadable, rejected by a stage, or the sink gave up).",
        value: Value::Counter(PipelineStats::fragments_failed),
        per_sink: true,
    },
    Family {
        name: "streampub_sink_reconnects",
        help: "New sink sessions started after a sink failure.",
        value: Value::Counter(PipelineStats::sink_reconnects),
        per_sink: true,
    },
    Family {
        name: "streampub_filler_seconds",
        help: "Seconds of filler a paced sink received while upstream was late.",
        value: Value::SecondsCounter(PipelineStats::filler_seconds),
        per_sink: true,
    },
    Family {
        name: "streampub_publish_latency_seconds",
        help: "Per fragment, from its first chunk handed to the sink to the sink taking the last.",
        value: Value::Histogram(|stats| stats.publish_latency().snapshot()),
        per_sink: true,
    },
    Family {
        name: "streampub_bytes_in_flight",
        help: "Bytes read from fragments and not yet taken by the sink (bounded by max_in_flight).",
        value: Value::Gauge(|stats| stats.bytes_in_flight() as f64),
        per_sink: false,
    },
    Family {
        name: "streampub_fragments_queued",
        help: "Fragments sent by the source and not yet opened (bounded by fragment_buffer_size).",
        value: Value::Gauge(|stats| stats.fragments_queued() as f64),
        per_sink: false,
    },
    Family {
        name: "streampub_last_publish_timestamp_seconds",
        help: "Unix time of the last fragment published; 0 before the first.",
        value: Value::Gauge(|stats| stats.last_publish_unix_seconds().unwrap_or(0.0)),
        per_sink: true,
    },
    Family {
        name: "streampub_output_lead_seconds",
        help: "Paced sinks: how far the media written runs ahead of the wall clock (negative: behind); 0 if not paced.",
        value: Value::Gauge(|stats| stats.output_lead_seconds().unwrap_or(0.0)),
        per_sink: true,
    },
    Family {
        name: "streampub_fragments_skipped",
        help: "Fragments not sent: published before a restart, or skipped by a destination with required: false while it was behind.",
        value: Value::Counter(PipelineStats::fragments_skipped),
        per_sink: true,
    },
    Family {
        name: "streampub_sink_lag_fragments",
        help: "Fan-out: fragments handed to the destination that it has not confirmed yet.",
        value: Value::Gauge(|stats| stats.lag_fragments() as f64),
        per_sink: true,
    },
    Family {
        name: "streampub_sink_lag_seconds",
        help: "Fan-out: how long ago the oldest fragment the destination has not confirmed was handed to it.",
        value: Value::Gauge(PipelineStats::lag_seconds),
        per_sink: true,
    },
    Family {
        name: "streampub_sink_up",
        help: "1 while the destination is live (in a fan-out: not behind, reconnecting or failed).",
        value: Value::Gauge(|stats| f64::from(u8::from(stats.sink_state() == "live"))),
        per_sink: true,
    },
    Family {
        name: "streampub_pipeline_up",
        help: "1 while the pipeline runs, 0 once it finished or failed.",
        value: Value::Gauge(|stats| f64::from(u8::from(stats.state() == PipelineState::Running))),
        per_sink: false,
    },
];

impl Collector for BoardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pipelines = self.0.pipelines();
        for family in FAMILIES {
            let metric_type = match family.value {
                Value::Counter(_) | Value::SecondsCounter(_) => MetricType::Counter,
                Value::Gauge(_) => MetricType::Gauge,
                Value::Histogram(_) => MetricType::Histogram,
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for pipeline in &pipelines {
                let sinks = pipeline.sinks();
                let rows = match family.per_sink && !sinks.is_empty() {
                    true => sinks,
                    false => vec![std::sync::Arc::clone(pipeline)],
                };
                for stats in &rows {
                    let mut labels = vec![("pipeline", stats.name())];
                    if family.per_sink {
                        labels.extend(stats.sink_label().map(|sink| ("sink", sink)));
                    }
                    let mut sample = metric.encode_family(&labels)?;
                    match family.value {
                        Value::Counter(read) => ConstCounter::new(read(stats)).encode(sample)?,
                        Value::SecondsCounter(read) => {
                            ConstCounter::new(read(stats)).encode(sample)?
                        }
                        Value::Gauge(read) => ConstGauge::new(read(stats)).encode(sample)?,
                        Value::Histogram(read) => {
                            let snapshot = read(stats);
                            sample.encode_histogram::<NoLabelSet>(
                                snapshot.sum_seconds,
                                snapshot.count,
                                &snapshot.buckets,
                                None,
                            )?
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streampub_core::testing::stats::{
        add_destination, add_pipeline, record_published, record_skipped,
    };

    use super::*;

    #[test]
    fn metrics_have_one_sample_per_pipeline() {
        let board = StatusBoard::default();
        let first = add_pipeline(&board, "first");
        add_pipeline(&board, "second");
        record_published(&first, "a", 1000, Duration::from_millis(20));
        record_published(&first, "b", 500, Duration::from_millis(30));
        let text = render_metrics(&board);
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
    fn a_fan_out_has_a_sample_per_destination_for_what_is_per_sink() {
        let board = StatusBoard::default();
        let pipeline = add_pipeline(&board, "channel-1");
        let own = add_destination(&pipeline, "own", true);
        record_skipped(&add_destination(&pipeline, "youtube", false));
        record_published(&own, "a", 1000, Duration::from_millis(20));
        let text = render_metrics(&board);
        for sample in [
            "streampub_fragments_published_total{pipeline=\"channel-1\",sink=\"own\"} 1\n",
            "streampub_fragments_published_total{pipeline=\"channel-1\",sink=\"youtube\"} 0\n",
            "streampub_fragments_skipped_total{pipeline=\"channel-1\",sink=\"youtube\"} 1\n",
            "streampub_sink_up{pipeline=\"channel-1\",sink=\"own\"} 1.0\n",
            // About the pipeline's reading: once.
            "streampub_pipeline_up{pipeline=\"channel-1\"} 1.0\n",
        ] {
            assert!(text.contains(sample), "{sample} missing: {text}");
        }
        assert!(!text.contains("streampub_fragments_published_total{pipeline=\"channel-1\"}"));
    }
}
