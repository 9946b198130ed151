//! The real-time tier of the end-to-end tests: the real `streampub` binary paced by the wall
//! clock against real servers (nginx-rtmp, node-media-server, ffmpeg's listener, stunnel,
//! moto), with outages, late batches, kills and restarts at seeded moments. One module per
//! feature, one test binary so the suite links once. Built with the `real-time` feature
//! (`scripts/test --real-time` or `--all`); the fast tier is `end_to_end`.

mod delivery;
mod fan_out;
mod filler;
mod long_run;
mod muxers;
mod native_rtmp;
mod object_store;
mod other_servers;
mod pacing;
mod restarts;
mod resume;
mod rtmp;
mod rtmp_protocol;
mod timeline;
