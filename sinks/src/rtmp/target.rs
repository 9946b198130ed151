//! The server an `rtmp://` or `rtmps://` URL names: host, port, application and stream name,
//! whether TLS carries the session, and the `tcUrl` that `connect` carries.

use streampub_core::plugin::ComponentError;

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
    pub(crate) fn parse(url: &str, field: &str) -> Result<Self, ComponentError> {
        let (scheme, rest) = url.split_once("://").unwrap_or_default();
        let secure = match scheme {
            "rtmp" => false,
            "rtmps" => true,
            _ => {
                return Err(ComponentError::field(
                    field,
                    "the `rtmp` sink publishes to rtmp:// and rtmps:// URLs",
                ))
            }
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| ComponentError::field(field, "no application in the URL"))?;
        let (app, stream_name) = path
            .split_once('/')
            .ok_or_else(|| ComponentError::field(field, "no stream name in the URL"))?;
        // A user and password before the host are not part of RTMP's handshake: refuse them
        // rather than send them nowhere.
        if authority.contains('@') {
            return Err(ComponentError::field(
                field,
                "credentials in the URL's host part are not sent by `rtmp`; put them in the \
                 stream key as the server expects (e.g. a query string)",
            ));
        }
        let (host, port) = match authority.strip_prefix('[') {
            // An IPv6 address: `[::1]` or `[::1]:1935`.
            Some(bracketed) => {
                let (host, rest) = bracketed.split_once(']').ok_or_else(|| {
                    ComponentError::field(field, "an IPv6 host needs its closing `]`")
                })?;
                (host, rest.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(port) => port.parse().map_err(|_| {
                ComponentError::field(field, format!("`{port}` is not a port number"))
            })?,
            None if secure => DEFAULT_SECURE_PORT,
            None => DEFAULT_PORT,
        };
        if host.is_empty() || app.is_empty() || stream_name.is_empty() {
            return Err(ComponentError::field(
                field,
                "write it as rtmp://host[:port]/application/stream",
            ));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            secure,
            app: app.to_owned(),
            stream_name: stream_name.to_owned(),
            tc_url: format!("{scheme}://{authority}/{app}"),
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
    }
}
