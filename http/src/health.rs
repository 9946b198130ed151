//! `/healthz`: each pipeline's state and the figures an operator looks at first (`streampub
//! status` prints them); `503` while any pipeline is failing.

use axum::http::StatusCode;
use axum::response::Response;
use streampub_core::{PipelineState, StatusBoard};

use crate::responses::json_response;

pub(crate) fn health(board: &StatusBoard) -> Response {
    let pipelines: serde_json::Map<String, serde_json::Value> = board
        .pipelines()
        .iter()
        .map(|stats| {
            let state = stats.state();
            let mut entry = serde_json::json!({
                "state": state.label(),
                "fragments_published": stats.fragments_published(),
                "fragments_failed": stats.fragments_failed(),
                "last_fragment": stats.last_published(),
                "last_publish_unix_seconds": stats.last_publish_unix_seconds(),
                "bytes_in_flight": stats.bytes_in_flight(),
                "fragments_queued": stats.fragments_queued(),
                "sink_reconnects": stats.sink_reconnects(),
                "filler_seconds": stats.filler_seconds(),
                "output_lead_seconds": stats.output_lead_seconds(),
            });
            if let PipelineState::Failed(error) = &state {
                entry["error"] = error.as_str().into();
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
