//! HTTP for streampub.
//!
//! A runtime shares its listeners, one per address ([`HttpListeners`], kept in its
//! services): the first component that asks for an address binds it, later ones share it.
//! Every listener answers `GET /healthz`, `/readyz`, `/livez` and `/metrics` for all pipelines, and the upload
//! routes `GET` and `PUT /v1/pipelines/{pipeline}/fragments/{name}` of each pipeline that
//! mounted them ([`UploadRoutes`]; the `http` source does, with its spool behind
//! [`FragmentUploads`]). Routing is axum's; connections are hyper's, with a limit on how long
//! a request head may take.

mod health;
mod listeners;
mod metrics;
mod responses;
mod router;
mod uploads;

pub use axum::body::Body;
pub use axum::http::{header, HeaderMap, StatusCode};
pub use axum::response::Response;

pub use self::listeners::{serve_metrics, HttpListeners};
pub use self::metrics::{render_metrics, METRICS_CONTENT_TYPE};
pub use self::responses::{error_response, json_response, retry_later};
pub use self::uploads::{FragmentUploads, UploadRoutes};
