//! What a listener answers: `/healthz`, `/readyz`, `/livez` and `/metrics` for every
//! pipeline, and the upload
//! routes of the pipelines mounted on it. Anything else is a JSON `404`; a method a route does
//! not take is a JSON `405` with `Allow`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use streampub_core::StatusBoard;

use crate::health::{health, readiness};
use crate::metrics::{render_metrics, METRICS_CONTENT_TYPE};
use crate::responses::{
    error_response, json_response, method_not_allowed, retry_later, text_response,
};
use crate::uploads::{check_fragment_name, unauthorized, UploadRoutes};

/// One fragment of one pipeline.
const FRAGMENT_ROUTE: &str = "/v1/pipelines/{pipeline}/fragments/{name}";

/// One bound address: the board it reports on and the pipelines mounted on it.
pub(crate) struct Listener {
    board: StatusBoard,
    mounted: RwLock<HashMap<String, Mounted>>,
}

/// What a pipeline name leads to on a listener.
#[derive(Clone)]
enum Mounted {
    Serving(Arc<UploadRoutes>),
    /// Its source has stopped (a graceful stop, or a reload restarting it): clients are asked
    /// to retry.
    Stopped,
}

impl Listener {
    pub(crate) fn new(board: StatusBoard) -> Self {
        Self {
            board,
            mounted: RwLock::default(),
        }
    }

    pub(crate) fn mount(&self, pipeline: &str, routes: UploadRoutes) {
        self.set(pipeline, Mounted::Serving(Arc::new(routes)));
    }

    /// Lets go of `pipeline`'s routes (and what they hold); its requests get `503` with
    /// `Retry-After` until it is mounted again.
    pub(crate) fn unmount(&self, pipeline: &str) {
        self.set(pipeline, Mounted::Stopped);
    }

    fn set(&self, pipeline: &str, mounted: Mounted) {
        self.mounted
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(pipeline.to_owned(), mounted);
    }

    /// The routes a fragment request goes to, and the fragment's name; or why it is refused:
    /// an unknown or stopped pipeline, a missing token, a name that is no plain file name (in
    /// this order, so that a client without the token learns nothing of names).
    fn admit(
        &self,
        path: Result<Path<(String, String)>, PathRejection>,
        headers: &HeaderMap,
    ) -> Result<(Arc<UploadRoutes>, String), Refusal> {
        let Path((pipeline, name)) = path.map_err(|_| Refusal::UndecodablePath)?;
        let mounted = self
            .mounted
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(&pipeline)
            .cloned();
        let routes = match mounted {
            Some(Mounted::Serving(routes)) => routes,
            Some(Mounted::Stopped) => return Err(Refusal::Stopped(pipeline)),
            None => return Err(Refusal::NoSuchPipeline(pipeline)),
        };
        if !routes.authorizes(headers) {
            return Err(Refusal::Unauthorized);
        }
        check_fragment_name(&name).map_err(Refusal::BadName)?;
        Ok((routes, name))
    }
}

/// Why a fragment request does not reach the pipeline's uploads.
enum Refusal {
    UndecodablePath,
    NoSuchPipeline(String),
    Stopped(String),
    Unauthorized,
    BadName(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::UndecodablePath => error_response(
                StatusCode::BAD_REQUEST,
                "the fragment name is not valid percent-encoded UTF-8",
            ),
            Refusal::NoSuchPipeline(pipeline) => error_response(
                StatusCode::NOT_FOUND,
                format!("no pipeline named `{pipeline}` accepts uploads on this listener"),
            ),
            Refusal::Stopped(pipeline) => retry_later(format!(
                "pipeline `{pipeline}` is stopped or restarting; retry later"
            )),
            Refusal::Unauthorized => unauthorized(),
            Refusal::BadName(problem) => error_response(StatusCode::BAD_REQUEST, problem),
        }
    }
}

/// The routes of `listener`.
pub(crate) fn router(listener: Arc<Listener>) -> Router {
    Router::new()
        .route("/healthz", get(healthz).fallback(only_get))
        .route("/readyz", get(readyz).fallback(only_get))
        .route("/livez", get(livez).fallback(only_get))
        .route("/metrics", get(metrics).fallback(only_get))
        .route(
            FRAGMENT_ROUTE,
            get(get_fragment)
                .put(put_fragment)
                .fallback(only_get_or_put),
        )
        .fallback(nothing_here)
        .with_state(listener)
}

async fn healthz(State(listener): State<Arc<Listener>>) -> Response {
    health(&listener.board)
}

async fn readyz(State(listener): State<Arc<Listener>>) -> Response {
    readiness(&listener.board)
}

async fn livez() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"status": "alive"}))
}

async fn metrics(State(listener): State<Arc<Listener>>) -> Response {
    text_response(
        StatusCode::OK,
        METRICS_CONTENT_TYPE,
        render_metrics(&listener.board),
    )
}

async fn get_fragment(
    State(listener): State<Arc<Listener>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    match listener.admit(path, &headers) {
        Ok((routes, name)) => routes.uploads.get(&name),
        Err(refusal) => refusal.into_response(),
    }
}

async fn put_fragment(
    State(listener): State<Arc<Listener>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match listener.admit(path, &headers) {
        Ok((routes, name)) => routes.uploads.put(name, headers, body).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn only_get() -> Response {
    method_not_allowed("GET")
}

async fn only_get_or_put() -> Response {
    method_not_allowed("GET, PUT")
}

async fn nothing_here(uri: Uri) -> Response {
    error_response(StatusCode::NOT_FOUND, format!("nothing at {}", uri.path()))
}
