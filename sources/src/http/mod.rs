//! The `http` source: upstream pipelines upload fragments over HTTP.
//!
//! The source mounts its upload routes on the runtime's shared listeners (`streampub-http`);
//! `uploads` receives what they let through into the `spool` (durably, before answering);
//! this module's source publishes spooled fragments in sequence order and records, for each,
//! whether its sink took it. `docs/sources.md` ("Source `http`") describes the API.

mod config;
mod spool;
#[cfg(test)]
mod tests;
mod uploads;

#[cfg(fuzzing)]
pub use self::spool::open_for_fuzzing;

use std::sync::Arc;

use futures::stream::{FuturesOrdered, StreamExt};
use streampub_core::plugin::{
    async_trait, check_duration, CancellationToken, ComponentContext, ComponentError, Fragment,
    FragmentBody, FragmentInfo, FragmentOutcome, Source, SourceConfig, SourceError,
};
use streampub_core::register_source;
use tokio::sync::mpsc;
use tracing::{debug, error, info};

use streampub_http::{HttpListeners, UploadRoutes};

pub use self::config::HttpSourceConfig;
use self::config::MAX_SPOOL_LIMIT;
use self::spool::{Record, Spool};
use self::uploads::SpoolUploads;

register_source!(
    HttpSourceConfig,
    "http",
    "Accepts fragments uploaded over HTTP, spools them durably and publishes them in order",
);

#[async_trait]
impl SourceConfig for HttpSourceConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        let token = self.token()?;
        if token.is_some() && self.allow_unauthenticated {
            return Err(ComponentError::field(
                "allow_unauthenticated",
                "a token is configured (`token_env`); remove `allow_unauthenticated`",
            ));
        }
        if token.is_none() && !self.listen.ip().is_loopback() && !self.allow_unauthenticated {
            return Err(ComponentError::field(
                "listen",
                format!(
                    "{} is reachable from other machines and no token is configured; set `token_env`, listen on 127.0.0.1, or set `allow_unauthenticated: true`",
                    self.listen
                ),
            ));
        }
        if self.max_fragment_size.bytes() == 0 {
            return Err(ComponentError::field(
                "max_fragment_size",
                "must be more than 0 bytes",
            ));
        }
        check_duration("upload_timeout", self.upload_timeout, false)?;
        if self.spool_limit > MAX_SPOOL_LIMIT {
            return Err(ComponentError::field(
                "spool_limit",
                format!("must be at most {MAX_SPOOL_LIMIT}"),
            ));
        }
        self.spool_dir(context).map(drop)
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Source>, ComponentError> {
        let directory = self.spool_dir(context)?;
        let backlog_limit = context.fragment_buffer_size + self.spool_limit;
        let (spool, queue) = Spool::open(&directory, backlog_limit)
            .map_err(|error| ComponentError::field("spool_dir", error.to_string()))?;
        let routes = UploadRoutes {
            token: self.token()?,
            uploads: Arc::new(SpoolUploads {
                pipeline: context.pipeline.clone(),
                spool: Arc::clone(&spool),
                max_fragment_size: self.max_fragment_size.bytes(),
                upload_timeout: self.upload_timeout.get(),
            }),
        };
        let listeners = HttpListeners::shared(&context.services);
        listeners
            .mount(self.listen, &context.pipeline, routes)
            .map_err(|error| {
                ComponentError::field(
                    "listen",
                    format!("cannot listen on {}: {error}", self.listen),
                )
            })?;
        Ok(Box::new(HttpSource {
            pipeline: context.pipeline.clone(),
            spool,
            queue,
            listeners,
            listen: self.listen,
        }))
    }
}

pub(crate) struct HttpSource {
    pipeline: String,
    spool: Arc<Spool>,
    /// Spooled fragments in sequence order: those left from the last run first, then uploads.
    queue: mpsc::UnboundedReceiver<Record>,
    /// Where its upload API is mounted; unmounted when it stops, which also lets go of the
    /// spool (and its lock) for a new version of the pipeline.
    listeners: Arc<HttpListeners>,
    listen: std::net::SocketAddr,
}

#[async_trait]
impl Source for HttpSource {
    async fn run(
        mut self: Box<Self>,
        output: mpsc::Sender<Fragment>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        if !self.queue.is_empty() {
            info!(
                event = "spool_recovered",
                pipeline = %self.pipeline,
                fragments = self.queue.len(),
                "Publishing {} spooled fragments left from the last run",
                self.queue.len()
            );
        }
        let mut deliveries = FuturesOrdered::new();
        let mut next: Option<Record> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some((record, outcome)) = deliveries.next(), if !deliveries.is_empty() => {
                    self.settle(record, outcome).await;
                }
                Some(record) = self.queue.recv(), if next.is_none() => next = Some(record),
                permit = output.reserve(), if next.is_some() => {
                    let Ok(permit) = permit else { break };
                    let record = next.take().expect("reserved for it");
                    let info = FragmentInfo {
                        sequence: record.sequence,
                        name: record.name.clone(),
                        length: Some(record.bytes),
                    };
                    let body = FragmentBody::File(self.spool.fragment_path(record.sequence));
                    let (fragment, delivery) = Fragment::new(info, body);
                    let fragment = fragment.with_if_failed(
                        "it stays spooled (its status says the error) and is tried again on \
                         the next start",
                    );
                    self.spool.publishing(&record.name);
                    deliveries.push_back(async move { (record, delivery.await) });
                    permit.send(fragment);
                }
            }
        }
        drop(output);
        self.listeners.unmount(self.listen, &self.pipeline);
        while let Some((record, outcome)) = deliveries.next().await {
            self.settle(record, outcome).await;
        }
        Ok(())
    }
}

impl HttpSource {
    async fn settle(&self, record: Record, outcome: FragmentOutcome) {
        let spool = Arc::clone(&self.spool);
        let name = record.name.clone();
        let noted = match outcome {
            FragmentOutcome::Delivered => {
                tokio::task::spawn_blocking(move || spool.published(&record)).await
            }
            // The runtime's `fragment_failed` line said what happened and what happens now.
            FragmentOutcome::Failed(message) => {
                debug!(pipeline = %self.pipeline, "Fragment {name} failed: {message}");
                tokio::task::spawn_blocking(move || spool.failed(&record, &message)).await
            }
            FragmentOutcome::Abandoned => {
                debug!(pipeline = %self.pipeline, "Fragment {name} abandoned; it is published on the next start");
                spool.abandoned(&name);
                return;
            }
        };
        match noted {
            Ok(Ok(())) => {}
            Ok(Err(io_error)) => error!(
                pipeline = %self.pipeline,
                "Cannot record the outcome of fragment {name} in the spool journal: {io_error}"
            ),
            Err(panic) => {
                error!(pipeline = %self.pipeline, "Recording fragment {name} failed: {panic}")
            }
        }
    }
}
