//! Small JSON state files that survive crashes: written to a temporary name, synced, then
//! renamed over the old one, so a reader sees either the old state or the new, never half.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::durable_file::replace_file;

/// A state file at a fixed path.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state file {path} is corrupt ({source}); move it away to start without state")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl CheckpointFile {
    /// A checkpoint kept at `path` (nothing is read or written yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the state is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or `None` when nothing was saved yet.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, CheckpointError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| CheckpointError::Corrupt {
                path: self.path.clone(),
                source,
            })
    }

    /// Replaces the saved state atomically and durably.
    pub fn save<T: Serialize>(&self, state: &T) -> Result<(), CheckpointError> {
        let json = serde_json::to_vec_pretty(state).expect("state is plain data");
        replace_file(&self.path, |file| file.write_all(&json)).map_err(|source| {
            CheckpointError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_reports_corruption() {
        let directory = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(directory.path().join("pipeline/state.json"));
        assert_eq!(file.load::<Vec<String>>().unwrap(), None);
        file.save(&vec!["a".to_owned()]).unwrap();
        assert_eq!(
            file.load::<Vec<String>>().unwrap(),
            Some(vec!["a".to_owned()])
        );
        std::fs::write(file.path(), "{").unwrap();
        let error = file.load::<Vec<String>>().unwrap_err();
        assert!(error.to_string().contains("corrupt"), "{error}");
    }
}
