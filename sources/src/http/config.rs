use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{ByteSize, ComponentContext, ComponentError, HumanDuration};

/// Default `max_fragment_size`.
pub const DEFAULT_MAX_FRAGMENT_SIZE: ByteSize = ByteSize::mib(64);
/// Default `upload_timeout`.
pub const DEFAULT_UPLOAD_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);
/// Default `spool_limit`.
pub const DEFAULT_SPOOL_LIMIT: usize = 32;

/// Accepts fragments uploaded over HTTP (`PUT /v1/pipelines/{pipeline}/fragments/{name}`),
/// spools them durably and publishes them in the order they were accepted.
///
/// Pipelines with the same `listen` share one server. Every listener also answers
/// `GET /healthz`, `/readyz`, `/livez` and `/metrics` (without a token). An upload answered `201` is on disk and
/// journaled: it is published even if the process stops first, on the next start.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// `host:port` to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token clients must send
    /// (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Accept uploads without a token on an address other than loopback. Without a token only
    /// loopback addresses are allowed unless this is `true`.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Larger uploads are refused with `413`.
    #[serde(default = "default_max_fragment_size")]
    pub max_fragment_size: ByteSize,
    /// Where uploads wait until published; one per pipeline. Default:
    /// `<state_dir>/<pipeline>/spool`.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// An upload that sends no bytes for this long is dropped (`408`) and nothing of it kept.
    #[serde(default = "default_upload_timeout")]
    pub upload_timeout: HumanDuration,
    /// Uploads that may wait in the spool beyond the pipeline's `fragment_buffer_size`; more
    /// are refused with `503` and `Retry-After`. At most 100000.
    #[serde(default = "default_spool_limit")]
    pub spool_limit: usize,
}

/// Largest `spool_limit`.
pub(super) const MAX_SPOOL_LIMIT: usize = 100_000;

fn default_max_fragment_size() -> ByteSize {
    DEFAULT_MAX_FRAGMENT_SIZE
}

fn default_upload_timeout() -> HumanDuration {
    DEFAULT_UPLOAD_TIMEOUT
}

fn default_spool_limit() -> usize {
    DEFAULT_SPOOL_LIMIT
}

impl HttpSourceConfig {
    pub(super) fn token(&self) -> Result<Option<String>, ComponentError> {
        let Some(variable) = &self.token_env else {
            return Ok(None);
        };
        match std::env::var(variable) {
            Ok(token) if !token.is_empty() => Ok(Some(token)),
            _ => Err(ComponentError::field(
                "token_env",
                format!("environment variable {variable} is not set or empty; set it to the bearer token clients send"),
            )),
        }
    }

    pub(super) fn spool_dir(&self, context: &ComponentContext) -> Result<PathBuf, ComponentError> {
        match (&self.spool_dir, &context.state_dir) {
            (Some(dir), _) => Ok(context.resolve_path(dir)),
            (None, Some(state_dir)) => Ok(state_dir.join(&context.pipeline).join("spool")),
            (None, None) => Err(ComponentError::field(
                "spool_dir",
                "the http source keeps uploads on disk until published; set `spool_dir` or the top-level `state_dir`",
            )),
        }
    }
}
