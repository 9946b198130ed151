//! The server an `rtmp://` or `rtmps://` URL names: host, port, application and stream name,
//! whether TLS carries the session, and the `tcUrl` that `connect` carries.

use streampub_core::plugin::ComponentError;
use url::{Host, Url};

/// RTMP's port when an `rtmp://` URL gives none.
const DEFAULT_PORT: u16 = 1935;
/// The port when an `rtmps://` URL gives none: platforms' RTMPS ingest listens on 443.
const DEFAULT_SECURE_PORT: u16 = 443;

/// Where a session connects and what it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    /// `rtmps://`: the session runs over TLS.
    pub secure: bool,
    /// The application: the URL path's first segment (`live`).
    pub app: String,
    /// The rest of the path, query included: the stream key.
    pub stream_name: String,
    /// `rtmp[s]://host:port/app`.
    pub tc_url: String,
}

impl Target {
    /// Reads `url` (`rtmp[s]://host[:port]/app/name`); `field` is the option it came from.
    ///
    /// The `url` crate reads the scheme, host and port; the application and stream name are
    /// taken from the text as written, because `url` would percent-encode a stream key's
    /// spaces or braces and the server would be sent another name than the one configured.
    pub(crate) fn parse(text: &str, field: &str) -> Result<Self, ComponentError> {
        let shape =
            || ComponentError::field(field, "write it as rtmp://host[:port]/application/stream");
        // `url` forgives what a server would not: spaces around the URL, a missing `//`.
        let Some((_, after_scheme)) = text.split_once("://").filter(|_| text.trim() == text) else {
            return Err(shape());
        };
        let url = Url::parse(text).map_err(|error| {
            ComponentError::field(
                field,
                format!("{error}: write it as rtmp://host[:port]/application/stream"),
            )
        })?;
        let secure = match url.scheme() {
            "rtmp" => false,
            "rtmps" => true,
            _ => {
                return Err(ComponentError::field(
                    field,
                    "the `rtmp` sink publishes to rtmp:// and rtmps:// URLs",
                ))
            }
        };
        // What follows the authority, exactly as written: `app/stream?query`.
        let (authority, path) = after_scheme
            .split_once('/')
            .ok_or_else(|| ComponentError::field(field, "no application in the URL"))?;
        // A user and password before the host are not part of RTMP's handshake: refuse them
        // rather than send them nowhere.
        if authority.contains('@') {
            return Err(ComponentError::field(
                field,
                "credentials in the URL's host part are not sent by `rtmp`; put them in the \
                 stream key as the server expects (e.g. a query string)",
            ));
        }
        let host = match url.host() {
            Some(Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        if host.is_empty() || authority.ends_with(':') {
            return Err(shape());
        }
        let default_port = if secure {
            DEFAULT_SECURE_PORT
        } else {
            DEFAULT_PORT
        };
        let (app, stream_name) = path
            .split_once('/')
            .ok_or_else(|| ComponentError::field(field, "no stream name in the URL"))?;
        if app.is_empty() || stream_name.is_empty() {
            return Err(shape());
        }
        Ok(Self {
            tc_url: format!("{}://{authority}/{app}", url.scheme()),
            host,
            port: url.port().unwrap_or(default_port),
            secure,
            app: app.to_owned(),
            stream_name: stream_name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_application_and_stream_are_read() {
        let target = Target::parse("rtmp://127.0.0.1:1940/live/key?token=a", "url").unwrap();
        assert_eq!(
            target,
            Target {
                host: "127.0.0.1".into(),
                port: 1940,
                secure: false,
                app: "live".into(),
                stream_name: "key?token=a".into(),
                tc_url: "rtmp://127.0.0.1:1940/live".into(),
            }
        );
        let target = Target::parse("rtmp://[::1]/app/a/b", "url").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 1935));
        assert_eq!(target.stream_name, "a/b");
        let target = Target::parse("rtmps://ingest.example.com/live2/key", "url").unwrap();
        assert_eq!((target.port, target.secure), (443, true));
        assert_eq!(target.tc_url, "rtmps://ingest.example.com/live2");
        assert!(Target::parse("srt://host/live/key", "url").is_err());
        assert!(Target::parse("rtmp://user:pw@host/live/key", "url").is_err());
        assert!(Target::parse("rtmp://host:99999/live/key", "url").is_err());
        assert!(Target::parse("rtmp://host/live", "url").is_err());
        assert!(Target::parse("rtmp:///live/key", "url").is_err());
        // Not URLs a server could be reached at: no `//`, spaces around, an empty user or port.
        for text in [
            "rtmp:",
            "rtmps:x",
            "rtmp:a€",
            " rtmp://h/a/b",
            "rtmp://@h/a/b",
            "rtmp://h:/a/b",
        ] {
            assert!(Target::parse(text, "url").is_err(), "{text}");
        }
        // The stream key goes to the server as written, not percent-encoded.
        let target = Target::parse("rtmp://host/live/a key{1}?x=ü", "url").unwrap();
        assert_eq!(target.stream_name, "a key{1}?x=ü");
    }
}
