//! The file sinks' I/O errors: what was attempted, on which path, and why it failed.

use std::io;
use std::path::Path;

use streampub_core::plugin::SinkError;

/// A failed file operation as a fatal sink error naming the action and the path.
pub(super) fn io_error(action: &str, path: &Path, error: io::Error) -> SinkError {
    SinkError::fatal(format!("{action} {}: {error}", path.display()))
}

/// Creates the directories leading to `path`.
pub(super) async fn create_parent(path: &Path) -> Result<(), SinkError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => tokio::fs::create_dir_all(parent)
            .await
            .map_err(|error| io_error("cannot create directory", parent, error)),
        _ => Ok(()),
    }
}
