//! streampub's built-in sources.
//!
//! - `directory`: publishes the files of a directory in name order, following new ones.
//! - `channel`: publishes what an embedding program pushes through a named in-process channel.
//! - `http`: accepts fragments uploaded over HTTP, spooled durably until published.

pub mod channel;
pub mod directory;
pub mod http;

/// Forces this crate's plugins into a binary so `inventory` sees them; call it from `main`.
/// (The linker keeps only object files something refers to, so each plugin module is named.)
pub fn link() {
    channel::link();
    directory::link();
    http::link();
}
