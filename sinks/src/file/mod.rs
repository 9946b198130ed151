//! The `file` sink: the archive of a stream.
//!
//! - `append`: every fragment onto the end of one file, which continues across restarts
//!   exactly where the last acknowledged fragment ended.
//! - `per_fragment`: each fragment to `.<name>.part` in a directory, renamed to `<name>` when
//!   complete, so readers never see a partial file.

mod append;
mod file_errors;
mod per_fragment;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{async_trait, ComponentContext, ComponentError, Sink, SinkConfig};
use streampub_core::register_sink;

use self::append::AppendFileSink;
use self::per_fragment::PerFragmentFileSink;

register_sink!(
    FileSinkConfig,
    "file",
    "Writes fragments to one continuous file or to one file per fragment",
);

/// Writes fragments to disk.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// `append`: the file to write; `per_fragment`: the directory to write into. Missing parent
    /// directories are created.
    pub path: PathBuf,
    /// `append`: one continuous file; `per_fragment`: one file per fragment, named after it.
    #[serde(default)]
    pub mode: FileMode,
    /// Sync every fragment to stable storage before acknowledging it. Default: `true` for
    /// `append` (the pipeline's state records the archive's length, which must not be ahead
    /// of the disk), `false` for `per_fragment`.
    #[serde(default)]
    pub fsync: Option<bool>,
}

/// How fragments map to files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Every fragment appended to one file.
    #[default]
    Append,
    /// Each fragment written atomically to its own file in a directory.
    PerFragment,
}

#[async_trait]
impl SinkConfig for FileSinkConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        let path = context.resolve_path(&self.path);
        match self.mode {
            FileMode::Append if path.is_dir() => Err(ComponentError::field(
                "path",
                format!(
                    "{} is a directory; `mode: append` writes one file (use `mode: per_fragment` for a directory)",
                    path.display()
                ),
            )),
            FileMode::PerFragment if path.exists() && !path.is_dir() => Err(ComponentError::field(
                "path",
                format!("{} is not a directory; `mode: per_fragment` writes into a directory", path.display()),
            )),
            _ => Ok(()),
        }?;
        let directory = match self.mode {
            FileMode::Append => path.parent().unwrap_or(Path::new("/")),
            FileMode::PerFragment => &path,
        };
        let existing = directory.ancestors().find(|ancestor| ancestor.exists());
        match existing {
            Some(ancestor) if !ancestor.is_dir() => Err(ComponentError::field(
                "path",
                format!("{} is not a directory", ancestor.display()),
            )),
            _ => Ok(()),
        }
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
        let path = context.resolve_path(&self.path);
        Ok(match self.mode {
            FileMode::Append => Box::new(AppendFileSink::new(path, self.fsync.unwrap_or(true))),
            FileMode::PerFragment => {
                Box::new(PerFragmentFileSink::new(path, self.fsync.unwrap_or(false)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use streampub_core::plugin::FragmentInfo;

    use super::*;

    fn context(directory: &Path) -> ComponentContext {
        ComponentContext::new("test", directory)
    }

    fn info(name: &str) -> FragmentInfo {
        FragmentInfo {
            sequence: 1,
            name: name.into(),
            length: None,
        }
    }

    #[tokio::test]
    async fn unusable_paths_are_clear_errors() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("plain-file"), b"x").unwrap();
        let context = context(directory.path());

        let into_file = FileSinkConfig {
            path: "plain-file/archive.mp4".into(),
            mode: FileMode::Append,
            fsync: None,
        };
        let error = into_file.validate(&context).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("path"));
        assert!(error.message.contains("is not a directory"), "{error}");

        let append_to_directory = FileSinkConfig {
            path: ".".into(),
            mode: FileMode::Append,
            fsync: None,
        };
        assert!(append_to_directory.validate(&context).is_err());

        let bad_name = FileSinkConfig {
            path: "out".into(),
            mode: FileMode::PerFragment,
            fsync: None,
        };
        let mut sink = bad_name.build(&context).await.unwrap();
        let error = sink.begin_fragment(&info("../escape")).await.err().unwrap();
        assert!(
            error.message.contains("cannot be used as a file name"),
            "{error}"
        );
    }
}
