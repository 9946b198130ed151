//! The RTMP publishing protocol without I/O, in the style of `rustls` and `quinn-proto`: state
//! machines that take the server's bytes and give the bytes to send and what happened. A
//! driver (streampub's `rtmp` sink) owns the socket, TLS, timers and the media.
//!
//! - [`amf0`]: the encoding of commands and metadata;
//! - [`handshake`]: the simple handshake;
//! - [`chunk`]: messages as chunks, extended timestamps included;
//! - [`control`]: chunk size, acknowledgements, peer bandwidth, pings;
//! - [`command`]: `connect` (with enhanced RTMP's codec lists), `createStream`, `publish`, and
//!   the server's `_result`, `_error` and `onStatus`;
//! - [`acknowledgements`]: what the server's acknowledgements say it received, whichever way
//!   it counts;
//! - [`publish`]: the whole publishing sequence as one session.
//!
//! The media it carries are FLV tags' bodies; `streampub-flv` reads them out of a timeline
//! stage's output.
//!
//! Written here rather than taken from a crate: none gives the server's acknowledgements,
//! correct extended timestamps and enhanced RTMP's `connect` together (`shiguredo_rtmp` hides
//! the acknowledgements and drops a connection they lag behind, which cuts nginx-rtmp and SRS
//! sessions after about 4 GB; `rml_rtmp` has a fixed `connect`; `rtmp-rs` writes absolute
//! times as extended deltas and stops reading while publishing). The survey with the evidence
//! is `docs/rtmp-crates.md`.

pub mod acknowledgements;
pub mod amf0;
pub mod chunk;
pub mod command;
pub mod control;
pub mod handshake;
pub mod publish;

pub use crate::publish::{PublishEvent, PublishRequest, PublishSession};
