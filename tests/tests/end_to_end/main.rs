//! The end-to-end tests: the real `streampub` binary (and the programs it drives: ffmpeg,
//! nginx-rtmp, GStreamer, stunnel) on real files and loopback sockets, one module per feature.
//! One test binary, so the suite links once.

mod bench;
mod cli;
mod delivery;
mod directory;
mod documentation;
mod extending;
mod fan_out;
mod filler;
mod http;
mod long_run;
mod memory;
mod muxers;
mod native_rtmp;
mod object_store;
mod other_servers;
mod pacing;
mod packaging;
mod pipelines;
mod reload;
mod restarts;
mod resume;
mod rtmp;
mod rtmp_protocol;
mod sinks;
mod status;
mod timeline;
