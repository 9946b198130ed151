//! The fast tier of the end-to-end tests: the real `streampub` binary (and the programs it
//! drives) on real files and loopback sockets, with no pacing, no real server and no outage
//! (waits of a second or two for a file to settle at most): the command line, the directory
//! and http sources, sinks, reloads, packaging, benchmarks, the documentation.
//! One module per feature, one test binary so the suite links once. What needs real time and
//! real servers is the `real_time` binary.

mod bench;
mod cli;
mod directory;
mod documentation;
mod extending;
mod http;
mod memory;
mod packaging;
mod pipelines;
mod reload;
mod sinks;
mod status;
