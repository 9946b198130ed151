//! `/healthz`: each pipeline's state and the figures an operator looks at first (`streampub
//! status` prints them), with a row per destination of a fan-out under `sinks`; `503` while
//! any pipeline is failing. `/readyz`: `503` while a pipeline failed or a sink is in an outage
//! or failed (a readiness probe; the process reconnects by itself, so liveness asks `/livez`).

use axum::http::StatusCode;
use axum::response::Response;
use streampub_core::{PipelineState, PipelineStats, StatusBoard};

use crate::responses::json_response;

pub(crate) fn health(board: &StatusBoard) -> Response {
    let pipelines: serde_json::Map<String, serde_json::Value> = board
        .pipelines()
        .iter()
        .map(|stats| {
            let state = stats.state();
            let mut entry = row(stats);
            entry["state"] = state.label().into();
            entry["bytes_in_flight"] = stats.bytes_in_flight().into();
            entry["fragments_queued"] = stats.fragments_queued().into();
            if let PipelineState::Failed(error) = &state {
                entry["error"] = error.as_str().into();
            }
            if let Some(reason) = stats.waiting_for() {
                entry["waiting_for"] = reason.into();
            }
            let sinks = stats.sinks();
            if !sinks.is_empty() {
                let sinks: serde_json::Map<String, serde_json::Value> = sinks
                    .iter()
                    .map(|sink| {
                        let mut entry = row(sink);
                        entry["state"] = sink.sink_state().into();
                        entry["required"] = sink.sink_required().into();
                        entry["lag_fragments"] = sink.lag_fragments().into();
                        entry["lag_seconds"] = sink.lag_seconds().into();
                        entry["last_error"] = sink.last_error().into();
                        (sink.sink().unwrap_or_default().to_owned(), entry)
                    })
                    .collect();
                entry["sinks"] = sinks.into();
            }
            (stats.name().to_owned(), entry)
        })
        .collect();
    let (status, word) = if board.health().healthy {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    };
    json_response(
        status,
        &serde_json::json!({ "status": word, "pipelines": pipelines }),
    )
}

/// The figures a pipeline and each of a fan-out's destinations report alike.
fn row(stats: &PipelineStats) -> serde_json::Value {
    serde_json::json!({
        "fragments_published": stats.fragments_published(),
        "fragments_failed": stats.fragments_failed(),
        "fragments_skipped": stats.fragments_skipped(),
        "last_fragment": stats.last_published(),
        "last_publish_unix_seconds": stats.last_publish_unix_seconds(),
        "sink_reconnects": stats.sink_reconnects(),
        "filler_seconds": stats.filler_seconds(),
        "output_lead_seconds": stats.output_lead_seconds(),
    })
}

pub(crate) fn readiness(board: &StatusBoard) -> Response {
    let readiness = board.readiness();
    let (status, word) = match readiness.ready {
        true => (StatusCode::OK, "ready"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    json_response(
        status,
        &serde_json::json!({ "status": word, "reasons": readiness.reasons }),
    )
}
