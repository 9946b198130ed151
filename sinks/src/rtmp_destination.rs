//! Where an RTMP sink publishes: `url`, or `server_url` and `stream_name`. The options
//! `ffmpeg-rtmp` and `rtmp` share, with the checks that keep a stream key out of every error.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{ComponentError, Redactor};

/// The destination of an RTMP stream. Written beside the sink's own options (serde `flatten`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct RtmpDestination {
    /// The full RTMP URL, e.g. `rtmp://127.0.0.1:1935/live/${STREAM_KEY}`. Give either this or
    /// `server_url` (and optionally `stream_name`).
    #[serde(default)]
    pub url: Option<String>,
    /// The server and application, e.g. `rtmp://127.0.0.1/live` ;
    /// the stream name (`stream_name`) is appended.
    #[serde(default)]
    pub server_url: Option<String>,
    /// The stream name after `server_url`; default: the pipeline name.
    #[serde(default)]
    pub stream_name: Option<String>,
}

/// Hides the password and the stream key of RTMP URLs.
pub fn rtmp_redactor() -> Redactor {
    Redactor::with_secret_paths(["rtmp", "rtmps"])
}

/// The stream key of an RTMP URL: what follows the application in its path (`KEY` in
/// `rtmp://host/live/KEY`, query included).
pub fn stream_key(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let (_, path) = rest.split_once('/')?;
    let (_, key) = path.split_once('/')?;
    (!key.is_empty()).then_some(key)
}

impl RtmpDestination {
    /// The URL to publish to, before redaction; `pipeline` names the stream when
    /// `stream_name` is not given.
    pub fn publish_url(&self, pipeline: &str) -> Result<String, ComponentError> {
        let url =
            match (&self.url, &self.server_url) {
                (Some(_), Some(_)) => {
                    return Err(ComponentError::field(
                        "server_url",
                        "give either `url` or `server_url`, not both",
                    ))
                }
                (None, None) => return Err(ComponentError::field(
                    "url",
                    "missing: give `url` (rtmp://host/app/key) or `server_url` (rtmp://host/app)",
                )),
                (Some(url), None) => {
                    if self.stream_name.is_some() {
                        return Err(ComponentError::field(
                            "stream_name",
                            "only used with `server_url`",
                        ));
                    }
                    url.clone()
                }
                (None, Some(server)) => {
                    let name = self.stream_name.as_deref().unwrap_or(pipeline);
                    format!("{}/{name}", server.trim_end_matches('/'))
                }
            };
        let field = self.url_field();
        // Whatever its scheme, the URL given for the stream may hold its key.
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        let redacted = Redactor::with_secret_paths(["rtmp", "rtmps", scheme]).redact(&url);
        if !(url.starts_with("rtmp://") || url.starts_with("rtmps://")) {
            return Err(ComponentError::field(
                field,
                format!("`{redacted}` is not an rtmp:// or rtmps:// URL"),
            ));
        }
        if stream_key(&url).is_none() {
            return Err(ComponentError::field(
                field,
                format!("`{redacted}` has no stream name; write it as rtmp://host/app/name"),
            ));
        }
        Ok(url)
    }

    /// The field an error about the URL belongs to.
    pub fn url_field(&self) -> &'static str {
        if self.url.is_some() {
            "url"
        } else {
            "server_url"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_key_is_the_path_after_the_application() {
        assert_eq!(
            stream_key("rtmp://127.0.0.1:1935/live/secret"),
            Some("secret")
        );
        assert_eq!(stream_key("rtmps://h/app/a/b?token=x"), Some("a/b?token=x"));
        assert_eq!(stream_key("rtmp://h/live/"), None);
        assert_eq!(stream_key("rtmp://h/live"), None);
    }
}
