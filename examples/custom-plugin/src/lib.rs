//! How to extend streampub from another crate.
//!
//! A plugin implements a config trait (`SinkConfig`, `StageConfig` or `SourceConfig`) and the
//! matching runtime trait, all from `streampub_core::plugin`, and registers with one macro
//! (`register_sink!` and the others), which also defines the module's `link()`. A binary that
//! calls `link()` (see `main.rs`) can then use the plugins from YAML by their `type`:
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

use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    async_trait, Bytes, ComponentContext, ComponentError, FragmentInfo, JsonSchema, Sink,
    SinkConfig, SinkError, Stage, StageConfig, StageError, StageOutput,
};
use tokio::io::AsyncWriteExt;

mod manifest {
    streampub_core::plugin::register_sink!(
        super::ManifestSinkConfig,
        "manifest",
        "Writes one line per fragment: sequence, name, bytes",
    );
}

mod header {
    streampub_core::plugin::register_stage!(
        super::HeaderStageConfig,
        "header",
        "Puts a fixed text before every fragment",
    );
}

/// Keeps this crate's plugins in the binary: the linker keeps only what something refers to.
pub fn link() {
    manifest::link();
    header::link();
}

/// Keeps a manifest of what was published instead of the bytes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "streampub_core::plugin::schemars")]
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
#[schemars(crate = "streampub_core::plugin::schemars")]
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

#[cfg(test)]
mod tests {
    use streampub_core::testing::{fragment, joined, publish, run_stage};

    use super::*;

    #[test]
    fn the_header_comes_before_every_fragment_however_it_is_cut() {
        let mut stage = HeaderStage {
            text: Bytes::from_static(b"--\n"),
        };
        for splits in [&[1][..], &[3, 7], &[1000]] {
            let (items, result) = run_stage(&mut stage, &fragment(1, "a"), b"one fragment", splits);
            assert!(result.is_ok());
            assert_eq!(joined(&items), b"--\none fragment");
        }
    }

    #[tokio::test]
    async fn the_manifest_has_a_line_per_fragment() {
        let directory = std::env::temp_dir().join(format!("manifest-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("manifest.txt");
        let config = ManifestSinkConfig { path: path.clone() };
        let context = ComponentContext::new("demo", &directory);
        config.validate(&context).unwrap();
        let mut sink = config.build(&context).await.unwrap();
        publish(sink.as_mut(), &[("a.mp4", b"12345"), ("b.mp4", b"")], 2)
            .await
            .unwrap();
        let manifest = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
        assert_eq!(manifest, "1 a.mp4 5\n2 b.mp4 0\n");
    }
}
