//! streampub's built-in sources.
//!
//! - `directory`: publishes the files of a directory in name order, following new ones.
//! - `channel`: publishes what an embedding program pushes through a named in-process channel.

pub mod channel;
pub mod directory;

/// Forces this crate into a binary so `inventory` sees its plugins; call it from `main`.
pub fn link() {}
