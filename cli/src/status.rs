//! `streampub status`: what a running instance is doing, one row per pipeline, read from its
//! `/healthz` (served on `metrics.listen`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use streampub_core::plugin::{ByteSize, HumanDuration};

use crate::{write_stdout, EXIT_RUNTIME_FAILURE, EXIT_SUCCESS};

/// The default instance: `metrics.listen` as the guide writes it.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:9090";
/// How long the instance may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `/healthz` as the instance writes it.
#[derive(Debug, Deserialize)]
struct Health {
    status: String,
    pipelines: serde_json::Map<String, serde_json::Value>,
}

/// One pipeline's row.
#[derive(Debug, Deserialize)]
struct PipelineRow {
    state: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    fragments_published: u64,
    #[serde(default)]
    fragments_failed: u64,
    #[serde(default)]
    last_fragment: Option<String>,
    #[serde(default)]
    last_publish_unix_seconds: Option<f64>,
    #[serde(default)]
    bytes_in_flight: u64,
    #[serde(default)]
    sink_reconnects: u64,
    #[serde(default)]
    filler_seconds: f64,
    #[serde(default)]
    output_lead_seconds: Option<f64>,
    #[serde(default)]
    fragments_skipped: u64,
    /// A fan-out's destinations.
    #[serde(default)]
    sinks: serde_json::Map<String, serde_json::Value>,
    /// A destination's lag.
    #[serde(default)]
    lag_fragments: Option<u64>,
    #[serde(default)]
    lag_seconds: Option<f64>,
    #[serde(default)]
    last_error: Option<String>,
}

/// Prints the status of the instance at `url`: a table, or its JSON as it came with `json`.
/// Exit 0 if every pipeline runs, 1 if one does not or the instance cannot be reached.
pub(crate) fn print(url: &str, json: bool) -> u8 {
    let health_url = format!("{}/healthz", url.trim_end_matches('/'));
    let body = match fetch(&health_url) {
        Ok(body) => body,
        Err(error) => {
            eprintln!(
                "error: cannot read {health_url}: {error}; is streampub running with \
                 `metrics: {{listen: …}}` set to that address? (give it with --url)"
            );
            return EXIT_RUNTIME_FAILURE;
        }
    };
    let health: Health = match serde_json::from_str(&body) {
        Ok(health) => health,
        Err(error) => {
            eprintln!("error: {health_url} did not answer as streampub does ({error})");
            return EXIT_RUNTIME_FAILURE;
        }
    };
    let output = if json {
        format!("{body}\n")
    } else {
        table(&health, SystemTime::now())
    };
    let written = write_stdout(output.as_bytes());
    if written != EXIT_SUCCESS {
        return written;
    }
    if health.status == "ok" {
        EXIT_SUCCESS
    } else {
        EXIT_RUNTIME_FAILURE
    }
}

fn fetch(url: &str) -> Result<String, ureq::Error> {
    let config = ureq::Agent::config_builder()
        // A failing instance answers 503 with the same JSON.
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    agent.get(url).call()?.body_mut().read_to_string()
}

/// The rows, aligned, with a header.
fn table(health: &Health, now: SystemTime) -> String {
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut rows = vec![[
        "PIPELINE".to_owned(),
        "STATE".to_owned(),
        "PUBLISHED".to_owned(),
        "FAILED".to_owned(),
        "LAST FRAGMENT".to_owned(),
        "AGO".to_owned(),
        "IN FLIGHT".to_owned(),
        "RECONNECTS".to_owned(),
        "SKIPPED".to_owned(),
        "LAG".to_owned(),
        "FILLER".to_owned(),
        "LEAD".to_owned(),
    ]];
    for (name, value) in &health.pipelines {
        let Ok(row) = serde_json::from_value::<PipelineRow>(value.clone()) else {
            continue;
        };
        rows.push(cells(name, &row, now));
        // A fan-out's destinations, under it.
        for (sink, value) in &row.sinks {
            if let Ok(sink_row) = serde_json::from_value::<PipelineRow>(value.clone()) {
                rows.push(cells(&format!("  {name}/{sink}"), &sink_row, now));
            }
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// One row's cells, in the header's order.
fn cells(name: &str, row: &PipelineRow, now: f64) -> [String; 12] {
    let ago = row
        .last_publish_unix_seconds
        .map_or("-".to_owned(), |then| {
            HumanDuration(Duration::from_secs_f64((now - then).max(0.0).round())).to_string()
        });
    let state = match (&row.error, &row.last_error) {
        (Some(error), _) => format!("{} ({error})", row.state),
        (None, Some(error)) if row.state != "live" => format!("{} ({error})", row.state),
        _ => row.state.clone(),
    };
    let lag = match (row.lag_fragments, row.lag_seconds) {
        (Some(fragments), Some(seconds)) => format!("{fragments} ({seconds:.0}s)"),
        _ => "-".to_owned(),
    };
    [
        name.to_owned(),
        state,
        row.fragments_published.to_string(),
        row.fragments_failed.to_string(),
        row.last_fragment.clone().unwrap_or_else(|| "-".to_owned()),
        ago,
        ByteSize(row.bytes_in_flight).to_string(),
        row.sink_reconnects.to_string(),
        row.fragments_skipped.to_string(),
        lag,
        HumanDuration(Duration::from_secs_f64(row.filler_seconds.max(0.0).round())).to_string(),
        row.output_lead_seconds
            .map_or("-".to_owned(), |lead| format!("{lead:.1}s")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned_and_say_how_long_ago() {
        let health: Health = serde_json::from_value(serde_json::json!({
            "status": "failing",
            "pipelines": {
                "channel-1": {"state": "running", "fragments_published": 12, "fragments_failed": 0,
                    "last_fragment": "batch-11.mp4", "last_publish_unix_seconds": 1000.0,
                    "bytes_in_flight": 1048576, "sink_reconnects": 1,
                    "filler_seconds": 15.2, "output_lead_seconds": 1.84},
                "b": {"state": "failed", "error": "sink failed", "fragments_published": 0},
            },
        }))
        .unwrap();
        let text = table(&health, UNIX_EPOCH + Duration::from_secs(1003));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PIPELINE   STATE"), "{text}");
        assert!(
            lines[1].contains("batch-11.mp4") && lines[1].contains("3s"),
            "{text}"
        );
        assert!(lines[1].contains("1MiB"), "{text}");
        assert!(lines[1].contains("15s"), "filler: {text}");
        assert!(lines[1].ends_with("1.8s"), "lead: {text}");
        assert!(lines[2].trim_end().ends_with('-'), "not paced: {text}");
        assert!(lines[2].contains("failed (sink failed)"), "{text}");
    }

    #[test]
    fn a_fan_out_has_a_row_per_destination_under_its_pipeline() {
        let health: Health = serde_json::from_value(serde_json::json!({
            "status": "ok",
            "pipelines": {
                "channel-1": {"state": "running", "fragments_published": 7,
                    "sinks": {
                        "own": {"state": "live", "fragments_published": 7, "lag_fragments": 1,
                            "lag_seconds": 4.2},
                        "youtube": {"state": "reconnecting", "fragments_published": 3,
                            "fragments_skipped": 2, "lag_fragments": 0, "lag_seconds": 0.0,
                            "last_error": "connection refused"},
                    }},
            },
        }))
        .unwrap();
        let text = table(&health, UNIX_EPOCH + Duration::from_secs(1003));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("channel-1 "), "{text}");
        assert!(lines[2].starts_with("  channel-1/own "), "{text}");
        assert!(lines[2].contains("1 (4s)"), "lag: {text}");
        assert!(lines[3].starts_with("  channel-1/youtube "), "{text}");
        assert!(
            lines[3].contains("reconnecting (connection refused)"),
            "{text}"
        );
    }
}
