//! HTTP listeners shared by the components of a runtime.
//!
//! One [`HttpListeners`] hub per runtime, kept in its [`Services`]: the first component that
//! asks for an address binds it, later ones share it (several `http` sources on one `listen`, or the top-level `metrics`
//! listener on the same address). Every listener answers `GET /healthz` and `GET /metrics` for
//! all pipelines, and hands `/v1/pipelines/{pipeline}/…` to the routes that pipeline mounted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use streampub_core::plugin::async_trait;
use streampub_core::plugin::Bytes;
use streampub_core::plugin::CancellationToken;
use tracing::{debug, info, warn};

pub use hyper::{header, Method, StatusCode};

use streampub_core::plugin::Services;
use streampub_core::{PipelineState, RuntimeShutdown, StatusBoard};

use super::metrics::{render_metrics, METRICS_CONTENT_TYPE};

/// A request as the routes receive it; its body is read as it arrives.
pub type HttpRequest = hyper::Request<Incoming>;
/// A response; bodies are small (JSON answers, metrics).
pub type HttpResponse = hyper::Response<Full<Bytes>>;

/// A client that sends no complete request head within this long is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the pipeline routes start.
const PIPELINES_PREFIX: &str = "/v1/pipelines/";

/// The API one pipeline serves under `/v1/pipelines/{pipeline}/`.
#[async_trait]
pub trait PipelineRoutes: Send + Sync {
    /// Answers `request`; `path` is what follows `/v1/pipelines/{pipeline}/`, still
    /// percent-encoded.
    async fn handle(&self, path: &str, request: HttpRequest) -> HttpResponse;
}

/// The listeners of one process, by address.
#[derive(Clone, Default)]
pub struct HttpListeners {
    board: StatusBoard,
    shutdown: CancellationToken,
    listeners: Arc<Mutex<HashMap<SocketAddr, Arc<Listener>>>>,
}

impl std::fmt::Debug for HttpListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListeners").finish_non_exhaustive()
    }
}

/// One bound address and the pipelines mounted on it.
struct Listener {
    board: StatusBoard,
    routes: RwLock<HashMap<String, Mounted>>,
}

/// What a pipeline name leads to on a listener.
#[derive(Clone)]
enum Mounted {
    Serving(Arc<dyn PipelineRoutes>),
    /// Its source has stopped (a graceful stop, or a reload restarting it): clients are asked
    /// to retry.
    Stopped,
}

impl HttpListeners {
    /// Listeners that report on `board` and stop accepting once `shutdown` is cancelled.
    pub fn new(board: StatusBoard, shutdown: CancellationToken) -> Self {
        Self {
            board,
            shutdown,
            listeners: Arc::default(),
        }
    }

    /// The runtime's hub: it reports on the runtime's [`StatusBoard`] and stops with it.
    pub fn shared(services: &Services) -> Arc<Self> {
        services.get_or_insert_with(|| {
            let board = services.get_or_insert_with(StatusBoard::default);
            let shutdown = services.get_or_insert_with(RuntimeShutdown::default);
            Self::new(StatusBoard::clone(&board), shutdown.0.clone())
        })
    }

    /// Serves health and metrics on `address`, binding it unless it is bound already. Must be
    /// called within a Tokio runtime.
    pub fn listen(&self, address: SocketAddr) -> std::io::Result<()> {
        self.listener(address).map(drop)
    }

    /// Serves `routes` under `/v1/pipelines/{pipeline}/` on `address`.
    pub fn mount(
        &self,
        address: SocketAddr,
        pipeline: &str,
        routes: Arc<dyn PipelineRoutes>,
    ) -> std::io::Result<()> {
        let listener = self.listener(address)?;
        listener
            .routes
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(pipeline.to_owned(), Mounted::Serving(routes));
        Ok(())
    }

    /// Stops serving `pipeline`'s routes on `address` (its source has stopped: a graceful stop,
    /// or a reload removing or replacing it), which lets go of what they hold (the spool);
    /// its requests get `503` with `Retry-After` until it is mounted again.
    pub fn unmount(&self, address: SocketAddr, pipeline: &str) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(listener) = listeners.get(&address) {
            listener
                .routes
                .write()
                .unwrap_or_else(|poison| poison.into_inner())
                .insert(pipeline.to_owned(), Mounted::Stopped);
        }
    }

    fn listener(&self, address: SocketAddr) -> std::io::Result<Arc<Listener>> {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(listener) = listeners.get(&address) {
            return Ok(Arc::clone(listener));
        }
        let socket = std::net::TcpListener::bind(address)?;
        socket.set_nonblocking(true)?;
        let socket = tokio::net::TcpListener::from_std(socket)?;
        let listener = Arc::new(Listener {
            board: self.board.clone(),
            routes: RwLock::default(),
        });
        info!(event = "http_listening", address = %address, "Listening for HTTP on {address}");
        tokio::spawn(accept(socket, Arc::clone(&listener), self.shutdown.clone()));
        listeners.insert(address, Arc::clone(&listener));
        Ok(listener)
    }
}

async fn accept(
    socket: tokio::net::TcpListener,
    listener: Arc<Listener>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = socket.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    warn!("Accepting an HTTP connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let listener = Arc::clone(&listener);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let listener = Arc::clone(&listener);
                async move { Ok::<_, Infallible>(listener.route(request).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                debug!("HTTP connection ended: {error}");
            }
        });
    }
}

impl Listener {
    async fn route(&self, request: HttpRequest) -> HttpResponse {
        let path = request.uri().path().to_owned();
        match path.as_str() {
            "/healthz" => only_get(&request).unwrap_or_else(|| self.health()),
            "/metrics" => only_get(&request).unwrap_or_else(|| {
                text_response(
                    StatusCode::OK,
                    METRICS_CONTENT_TYPE,
                    render_metrics(&self.board),
                )
            }),
            _ => {
                match path.strip_prefix(PIPELINES_PREFIX) {
                    Some(rest) => {
                        let (pipeline, rest) = rest.split_once('/').unwrap_or((rest, ""));
                        let pipeline = percent_decode(pipeline).unwrap_or_default();
                        let routes = self
                            .routes
                            .read()
                            .unwrap_or_else(|poison| poison.into_inner())
                            .get(&pipeline)
                            .cloned();
                        match routes {
                        Some(Mounted::Serving(routes)) => routes.handle(rest, request).await,
                        Some(Mounted::Stopped) => retry_later(format!(
                            "pipeline `{pipeline}` is stopped or restarting; retry later"
                        )),
                        None => error_response(
                            StatusCode::NOT_FOUND,
                            format!("no pipeline named `{pipeline}` accepts uploads on this listener"),
                        ),
                    }
                    }
                    None => error_response(StatusCode::NOT_FOUND, format!("nothing at {path}")),
                }
            }
        }
    }

    /// Each pipeline's state and the figures an operator looks at first (`streampub status`
    /// prints them).
    fn health(&self) -> HttpResponse {
        let health = self.board.health();
        let pipelines: serde_json::Map<String, serde_json::Value> = self
            .board
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
        let (status, word) = if health.healthy {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "failing")
        };
        json_response(
            status,
            &serde_json::json!({ "status": word, "pipelines": pipelines }),
        )
    }
}

/// `405 Method Not Allowed` unless the request is a GET.
fn only_get(request: &HttpRequest) -> Option<HttpResponse> {
    (request.method() != Method::GET).then(|| method_not_allowed("GET"))
}

/// `405 Method Not Allowed` naming the methods that are.
pub fn method_not_allowed(allowed: &'static str) -> HttpResponse {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here; use {allowed}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
    response
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    text_response(status, "application/json", format!("{body}\n"))
}

/// `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    json_response(status, &serde_json::json!({ "error": message.into() }))
}

/// Seconds a client is asked to wait before it retries (`Retry-After`).
const RETRY_AFTER_SECONDS: &str = "5";

/// `503 Service Unavailable` with `Retry-After`: the request may succeed a little later.
pub(crate) fn retry_later(message: impl Into<String>) -> HttpResponse {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

fn text_response(status: StatusCode, content_type: &'static str, body: String) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Decodes `%XX` escapes in one path segment; `None` if an escape is malformed or the result
/// is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("batch-1.mp4").as_deref(),
            Some("batch-1.mp4")
        );
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%2e%2E").as_deref(), Some(".."));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
