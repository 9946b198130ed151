//! How to extend streampub from another crate.
//!
//! A plugin implements a config trait (`SinkConfig`, `StageConfig` or `SourceConfig`) and the
//! matching runtime trait, and registers with `inventory::submit!`. A binary that links the crate
//! (see `main.rs`) can then use it from YAML by its `type`:
//!
//! ```yaml
//! stages:
//!   - type: header
//!     text: "--- next fragment ---\n"
//! sink:
//!   type: manifest
//!   path: ./out/manifest.txt
//! ```

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::{
    async_trait, Bytes, ComponentContext, ComponentError, FragmentInfo, PluginRegistration, Sink,
    SinkConfig, SinkError, Stage, StageConfig, StageError, StageOutput,
};
use tokio::io::AsyncWriteExt;

/// Forces this crate into the binary so `inventory` sees its plugins. The registrations are in
/// this module, so referring to this function is enough to keep them.
pub fn link() {}

inventory::submit! {
    PluginRegistration::sink::<ManifestSinkConfig>("manifest", "Writes one line per fragment: sequence, name, bytes")
}

inventory::submit! {
    PluginRegistration::stage::<HeaderStageConfig>("header", "Puts a fixed text before every fragment")
}

/// Keeps a manifest of what was published instead of the bytes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestSinkConfig {
    /// The manifest file; lines are appended.
    pub path: PathBuf,
}

#[async_trait]
impl SinkConfig for ManifestSinkConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        let path = context.resolve_path(&self.path);
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() && !parent.is_dir() => Err(
                ComponentError::field("path", format!("{} is not a directory", parent.display())),
            ),
            _ => Ok(()),
        }
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
        let path = context.resolve_path(&self.path);
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|error| {
                ComponentError::field("path", format!("cannot open {}: {error}", path.display()))
            })?;
        Ok(Box::new(ManifestSink {
            file,
            current: None,
        }))
    }
}

struct ManifestSink {
    file: tokio::fs::File,
    /// The fragment being counted and its bytes so far.
    current: Option<(FragmentInfo, u64)>,
}

fn write_error(error: std::io::Error) -> SinkError {
    SinkError::fatal(format!("cannot write the manifest: {error}"))
}

#[async_trait]
impl Sink for ManifestSink {
    async fn begin_fragment(&mut self, fragment: &FragmentInfo) -> Result<(), SinkError> {
        self.current = Some((fragment.clone(), 0));
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        if let Some((_, bytes)) = &mut self.current {
            *bytes += chunk.len() as u64;
        }
        Ok(())
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        let Some((fragment, bytes)) = self.current.take() else {
            return Ok(());
        };
        let line = format!("{} {} {bytes}\n", fragment.sequence, fragment.name);
        self.file
            .write_all(line.as_bytes())
            .await
            .map_err(write_error)?;
        self.file.flush().await.map_err(write_error)
    }

    async fn abort_fragment(&mut self) -> Result<(), SinkError> {
        self.current = None;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.file.flush().await.map_err(write_error)
    }
}

/// Emits `text` at the start of every fragment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderStageConfig {
    /// The text to put first.
    pub text: String,
}

#[async_trait]
impl StageConfig for HeaderStageConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        Ok(())
    }

    async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
        Ok(Box::new(HeaderStage {
            text: Bytes::from(self.text.clone()),
        }))
    }
}

struct HeaderStage {
    text: Bytes,
}

impl Stage for HeaderStage {
    fn begin_fragment(
        &mut self,
        _fragment: &FragmentInfo,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        output.push_chunk(self.text.clone());
        Ok(())
    }

    fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
        output.push_chunk(chunk);
        Ok(())
    }
}
