//! streampub's built-in sinks.
//!
//! - `file`: one continuous archive file, or one file per fragment.
//! - `null`: consumes and counts; the reference for benchmarks.

pub mod file;
pub mod null;

/// Forces this crate into a binary so `inventory` sees its plugins; call it from `main`.
pub fn link() {}
