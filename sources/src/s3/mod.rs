//! The `s3` source: publishes the objects under a prefix of an S3 (or S3-compatible) bucket in
//! key order, following new ones.
//!
//! - `config`: the options;
//! - `credentials`: where the keys come from (environment, shared credentials file);
//! - `client`: the requests and what the store's errors mean;
//! - `signing`: AWS Signature Version 4 in the `Authorization` header;
//! - `object`: an object as a fragment body, read with ranged GETs as the pipeline takes it;
//! - `source`: listing, sending in order, checkpointing and `on_done`.
//!
//! An object counts as published once every required destination has confirmed it; only
//! then is it checkpointed, and then `on_done` applied.

mod client;
mod config;
mod credentials;
mod object;
mod signing;
mod source;
mod store_error;

use std::sync::Arc;

use streampub_core::plugin::{
    async_trait, check_duration, CheckpointFile, ComponentContext, ComponentError, Source,
    SourceConfig,
};
use streampub_core::register_source;
use tracing::{info, warn};

use self::client::S3Client;
pub use self::config::{OnDone, S3SourceConfig};
use self::credentials::{find_credentials, FoundCredentials, ProcessEnvironment};
use self::source::S3Source;
use self::store_error::StoreError;
use crate::name_order::compile_name_globs;

register_source!(
    S3SourceConfig,
    "s3",
    "Publishes the objects under a prefix of an S3 or S3-compatible bucket in key order, following new ones",
);

impl S3SourceConfig {
    /// The store's URL: `endpoint`, else AWS S3 in `region`.
    fn endpoint_url(&self) -> Result<url::Url, ComponentError> {
        let endpoint = match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        };
        let url = url::Url::parse(&endpoint).map_err(|error| {
            ComponentError::field(
                "endpoint",
                format!("`{endpoint}` is not a URL ({error}); write it like http://127.0.0.1:9000"),
            )
        })?;
        match url.scheme() {
            "http" | "https" => Ok(url),
            other => Err(ComponentError::field(
                "endpoint",
                format!(
                    "`{other}://` is not served; the store's URL starts with http:// or https://"
                ),
            )),
        }
    }

    fn path_style(&self) -> bool {
        self.path_style.unwrap_or(self.endpoint.is_some())
    }

    fn client(&self, found: FoundCredentials) -> Result<S3Client, ComponentError> {
        S3Client::new(
            self.endpoint_url()?,
            self.path_style(),
            &self.bucket,
            &self.region,
            found.credentials,
            found.origin,
        )
        .map_err(|error| ComponentError::field("bucket", error))
    }
}

#[async_trait]
impl SourceConfig for S3SourceConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        if self.bucket.is_empty() {
            return Err(ComponentError::field("bucket", "give the bucket's name"));
        }
        compile_name_globs(&self.pattern, self.init_pattern.as_ref())?;
        match (self.on_done, &self.done_prefix) {
            (OnDone::Move, None) => Err(ComponentError::field(
                "on_done",
                "`on_done: move` needs `done_prefix`, the prefix to move published objects under",
            )),
            (OnDone::Keep | OnDone::Delete, Some(_)) => Err(ComponentError::field(
                "done_prefix",
                "`done_prefix` is only used with `on_done: move`",
            )),
            (OnDone::Move, Some(done)) if !done.ends_with('/') => Err(ComponentError::field(
                "done_prefix",
                format!("`{done}` does not end with `/`; write `{done}/`, the folder objects go into"),
            )),
            (OnDone::Move, Some(done)) if self.prefix.starts_with(done.as_str()) => {
                Err(ComponentError::field(
                    "done_prefix",
                    format!(
                        "`{done}` holds `prefix` (`{}`): the objects to publish would count as done; \
                         give a prefix outside it, e.g. `done/`",
                        self.prefix
                    ),
                ))
            }
            _ => Ok(()),
        }?;
        check_duration("poll_interval", self.poll_interval, false)?;
        check_duration("retry_for", self.retry_for, true)?;
        let found = find_credentials(self.profile.as_deref(), &ProcessEnvironment)
            .map_err(|error| ComponentError::field("credentials", error))?;
        info!(
            event = "credentials_found",
            pipeline = %context.pipeline,
            credentials = %found.origin,
            "The s3 source signs with the credentials from {}",
            found.origin
        );
        self.client(found).map(drop)
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Source>, ComponentError> {
        let found = find_credentials(self.profile.as_deref(), &ProcessEnvironment)
            .map_err(|error| ComponentError::field("credentials", error))?;
        let client = Arc::new(self.client(found)?);
        // One small listing at the start: refused credentials or a missing bucket stop the
        // start with the store's words; an unavailable store is waited for by the source.
        let probe = Arc::clone(&client);
        let prefix = self.prefix.clone();
        match tokio::task::spawn_blocking(move || probe.list(&prefix, Some(1))).await {
            Ok(Err(StoreError::Lasting(message))) => {
                return Err(ComponentError::field("bucket", message))
            }
            Ok(Err(StoreError::Passing(message))) => warn!(
                event = "store_unavailable",
                pipeline = %context.pipeline,
                error = %message,
                "{message}; the source starts and lists again until the store answers"
            ),
            Ok(Ok(_)) | Err(_) => {}
        }
        let (pattern, init_pattern) =
            compile_name_globs(&self.pattern, self.init_pattern.as_ref())?;
        Ok(Box::new(S3Source {
            pipeline: context.pipeline.clone(),
            client,
            prefix: self.prefix.clone(),
            pattern,
            init_pattern,
            follow: self.follow,
            poll_interval: self.poll_interval.get(),
            on_done: self.on_done,
            done_prefix: self.done_prefix.clone(),
            retry_for: self.retry_for.get(),
            checkpoint: context.state_file("s3").map(CheckpointFile::new),
        }))
    }
}
