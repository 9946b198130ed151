//! How an `rtmps://` destination checks its server: the options `ffmpeg-rtmp` and `rtmp`
//! share, one definition, one set of docs, one check.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{ComponentContext, ComponentError};
use tracing::warn;

/// The server's certificate. Written beside the sink's own options (serde `flatten`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct TlsOptions {
    /// For `rtmps://`: check the server's certificate (and that it is for the URL's host)
    /// against `tls_ca_file`, or without one the system's trust store. A certificate that does
    /// not verify fails the pipeline at once, naming the problem. `false` turns the check off
    /// (logged at start: the stream key, an account credential, then goes to whoever answers).
    #[serde(default = "default_tls_verify")]
    pub tls_verify: bool,
    /// A PEM file of the CA certificates to trust for `rtmps://` instead of the system's (a
    /// private CA, or a server's self-signed certificate).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            tls_verify: default_tls_verify(),
            tls_ca_file: None,
        }
    }
}

fn default_tls_verify() -> bool {
    true
}

/// Whether `url` is published over TLS.
pub fn is_secure(url: &str) -> bool {
    url.starts_with("rtmps://")
}

impl TlsOptions {
    /// The options apply to `rtmps://` only; the CA file must hold a PEM certificate.
    pub fn validate(&self, url: &str, context: &ComponentContext) -> Result<(), ComponentError> {
        match &self.tls_ca_file {
            Some(_) if !is_secure(url) => Err(ComponentError::field(
                "tls_ca_file",
                "only used with rtmps:// URLs; remove it, or publish to rtmps://",
            )),
            Some(_) if !self.tls_verify => Err(ComponentError::field(
                "tls_ca_file",
                "unused with `tls_verify: false`; keep one of the two",
            )),
            Some(path) => self.read_ca_file(context).map(drop).map_err(|message| {
                ComponentError::field("tls_ca_file", format!("{}: {message}", path.display()))
            }),
            None => Ok(()),
        }
    }

    /// The CA file's text (resolved against the config's directory), checked to hold a PEM
    /// certificate; `None` without one.
    pub fn read_ca_file(&self, context: &ComponentContext) -> Result<Option<String>, String> {
        let Some(path) = &self.tls_ca_file else {
            return Ok(None);
        };
        let path = context.resolve_path(path);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => Ok(Some(text)),
            Ok(_) => Err(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the \
                 CA's certificate in PEM form"
                    .to_owned(),
            ),
            Err(error) => Err(format!("cannot read it: {error}")),
        }
    }

    /// Logs `tls_unverified` at start when an `rtmps://` destination is not checked.
    pub fn warn_if_unverified(&self, url: &str, pipeline: &str) {
        if is_secure(url) && !self.tls_verify {
            warn!(
                event = "tls_unverified",
                pipeline = %pipeline,
                "tls_verify: false: the RTMPS server's certificate is not checked, so the \
                 stream key goes to whoever answers at that address"
            );
        }
    }
}

/// What a refused certificate's error adds: the two ways out.
pub const CERTIFICATE_FIX: &str = "trust the server's CA with `tls_ca_file` (a PEM file), or \
     turn the check off with `tls_verify: false`";
