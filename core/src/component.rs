//! What every plugin gets when it is validated and built, and the errors it reports then.

use std::path::{Path, PathBuf};

use crate::services::Services;
use crate::units::HumanDuration;

/// The longest duration any option takes: a day. Longer ones are mistakes, and they would
/// overflow timer and backoff arithmetic.
pub const MAX_DURATION: HumanDuration = HumanDuration::from_secs(24 * 60 * 60);

/// Checks a duration option: at most a day (`MAX_DURATION`), and more than zero unless `zero_allowed`.
pub fn check_duration(
    field: &str,
    value: HumanDuration,
    zero_allowed: bool,
) -> Result<(), ComponentError> {
    if value > MAX_DURATION {
        return Err(ComponentError::field(
            field,
            format!("must be at most {MAX_DURATION}"),
        ));
    }
    if !zero_allowed && value.get().is_zero() {
        return Err(ComponentError::field(field, "must be longer than 0s"));
    }
    Ok(())
}

/// Default `fragment_buffer_size`: fragments queued between a pipeline's source and its sink.
pub const DEFAULT_FRAGMENT_BUFFER_SIZE: usize = 3;

/// The environment of one plugin instance: its pipeline, where relative paths start and where
/// state may be kept.
#[derive(Debug, Clone)]
pub struct ComponentContext {
    /// The pipeline's name (its stream id).
    pub pipeline: String,
    /// Relative paths in the config resolve against this directory: the config file's own.
    pub base_dir: PathBuf,
    /// Top-level `state_dir`, resolved; `None` means nothing is remembered across runs.
    pub state_dir: Option<PathBuf>,
    /// What the components of this runtime share (an HTTP listener hub, named channels), by
    /// type. Validation gets a map of its own, so nothing made there outlives it.
    pub services: Services,
    /// The pipeline's `fragment_buffer_size`: fragments queued between source and sink.
    pub fragment_buffer_size: usize,
    /// The destination's name in a fan-out (`sinks:`), for the `sink` field of a sink's log
    /// lines; `None` for a pipeline's one sink and for sources and stages.
    pub sink: Option<String>,
}

impl ComponentContext {
    /// A context for `pipeline` with relative paths starting at `base_dir`, no state directory
    /// and services of its own (what a plugin's own tests need).
    pub fn new(pipeline: &str, base_dir: &Path) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            base_dir: base_dir.to_path_buf(),
            state_dir: None,
            services: Services::default(),
            fragment_buffer_size: DEFAULT_FRAGMENT_BUFFER_SIZE,
            sink: None,
        }
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The file where a component of this pipeline keeps its state, if a `state_dir` is set:
    /// `<state_dir>/<pipeline>/<component>.json`.
    pub fn state_file(&self, component: &str) -> Option<PathBuf> {
        self.state_dir
            .as_ref()
            .map(|dir| dir.join(&self.pipeline).join(format!("{component}.json")))
    }
}

/// A plugin's complaint about its own config or environment, found while validating or
/// building it. The runtime adds the file, line, pipeline and component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    /// The offending option, when one is to blame.
    pub field: Option<String>,
    /// What is wrong and how to fix it, for the user.
    pub message: String,
}

impl ComponentError {
    /// An error about one option, e.g. `ComponentError::field("path", "does not exist")`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// An error about the component as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}
