//! The `rtmp` sink: publishes to an RTMP server over streampub's own connection, with the
//! protocol of `streampub-rtmp`; no ffmpeg in the publishing path.
//!
//! - `config`: the options and the stages the sink puts in front of itself;
//! - `target`: host, port, application and stream of the URL;
//! - `tls`: the TLS client configuration for `rtmps://`, and what a refused certificate is called;
//! - `connection`: one session on its own task, reading the socket the whole time;
//! - `transport`: the socket as it is, or TLS over it;
//! - `closing`: how a finished session lets go of its socket;
//! - `enhanced`: enhanced RTMP's codecs at `connect`;
//! - `progress`: what a session has had confirmed;
//! - `rtmp_sink`: the sink the runtime drives.
//!
//! "Published" means the server's acknowledgements cover the fragment's last byte (a server
//! that sends none: the peer's TCP has acknowledged it). After a failure the runtime sends the
//! fragment cut short again from its last keyframe at or before the confirmed point, in a new
//! session that begins with metadata and sequence headers.

mod closing;
mod config;
mod connection;
mod enhanced;
mod progress;
mod rtmp_sink;
mod target;
mod tls;
mod transport;

use streampub_core::register_sink;

pub use self::config::RtmpSinkConfig;

register_sink!(
    RtmpSinkConfig,
    "rtmp",
    "Publishes to an RTMP server over streampub's own connection, confirmed by the server's acknowledgements",
);
