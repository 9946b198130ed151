//! The listeners of one runtime, by address, kept in its [`Services`]: several `http` sources
//! on one `listen`, and the top-level `metrics` listener, share one socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use streampub_core::plugin::{CancellationToken, Services};
use streampub_core::{RuntimeShutdown, StatusBoard};
use tracing::{debug, info, warn};

use crate::router::{router, Listener};
use crate::uploads::UploadRoutes;

/// A client that sends no complete request head within this long is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
        routes: UploadRoutes,
    ) -> std::io::Result<()> {
        self.listener(address)?.mount(pipeline, routes);
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
            listener.unmount(pipeline);
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
        let listener = Arc::new(Listener::new(self.board.clone()));
        info!(event = "http_listening", address = %address, "Listening for HTTP on {address}");
        tokio::spawn(accept(
            socket,
            router(Arc::clone(&listener)),
            self.shutdown.clone(),
        ));
        listeners.insert(address, Arc::clone(&listener));
        Ok(listener)
    }
}

/// Serves `/healthz`, `/readyz`, `/livez` and `/metrics` for every pipeline of the runtime that `services` belongs
/// to on `address` (sharing the listener if an `http` source listens there too). Call it
/// before [`Runtime::start_with`](streampub_core::Runtime::start_with) to fail before any
/// pipeline starts; must be called within a Tokio runtime.
pub fn serve_metrics(services: &Services, address: SocketAddr) -> std::io::Result<()> {
    HttpListeners::shared(services).listen(address)
}

/// Accepts connections until `shutdown`, each served by hyper (HTTP/1.1, with a time limit on
/// the request head) through `router`.
async fn accept(
    socket: tokio::net::TcpListener,
    router: axum::Router,
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
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
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
