//! streampub's built-in sources.
//!
//! - `directory`: publishes the files of a directory in name order, following new ones.
//! - `channel`: publishes what an embedding program pushes through a named in-process channel.
//! - `http`: accepts fragments uploaded over HTTP, spooled durably until published.
//! - `s3`: publishes the objects under a prefix of an S3 bucket in key order, following new ones.
//!
//! `name_order` and `source_state` hold what the directory and s3 sources share: which names
//! they take and in which order, and their checkpoint.

pub mod channel;
pub mod directory;
pub mod http;
mod name_order;
pub mod s3;
mod source_state;

/// Forces this crate's plugins into a binary so `inventory` sees them; call it from `main`.
/// (The linker keeps only object files something refers to, so each plugin module is named.)
pub fn link() {
    channel::link();
    directory::link();
    http::link();
    s3::link();
}
