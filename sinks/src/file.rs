//! The `file` sink: the archive of a stream.
//!
//! `append` writes every fragment onto the end of one file; a restart appends again, never
//! truncates. If a fragment fails half-way (its input was unreadable, a stage rejected it, the
//! disk filled up), the file is cut back to where that fragment began, so the archive never holds
//! half a fragment. `per_fragment` writes each fragment to `.<name>.part` in a directory and
//! renames it to `<name>` when complete, so readers never see a partial file.

use std::io;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::{
    async_trait, Bytes, ComponentContext, ComponentError, FragmentInfo, PluginRegistration, Sink,
    SinkConfig, SinkError,
};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

inventory::submit! {
    PluginRegistration::sink::<FileSinkConfig>(
        "file",
        "Writes fragments to one continuous file or to one file per fragment",
    )
}

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
    /// Sync every fragment to stable storage before acknowledging it.
    #[serde(default)]
    pub fsync: bool,
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
            FileMode::Append => Box::new(AppendFileSink {
                path,
                fsync: self.fsync,
                file: None,
                fragment_start: 0,
            }),
            FileMode::PerFragment => Box::new(PerFragmentFileSink {
                directory: path,
                fsync: self.fsync,
                current: None,
            }),
        })
    }
}

fn io_error(action: &str, path: &Path, error: io::Error) -> SinkError {
    SinkError::fatal(format!("{action} {}: {error}", path.display()))
}

/// Creates the directories leading to `path`.
async fn create_parent(path: &Path) -> Result<(), SinkError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => tokio::fs::create_dir_all(parent)
            .await
            .map_err(|error| io_error("cannot create directory", parent, error)),
        _ => Ok(()),
    }
}

/// `mode: append`.
struct AppendFileSink {
    path: PathBuf,
    fsync: bool,
    /// Opened at the first fragment, so a path problem fails that fragment (unacknowledged).
    file: Option<File>,
    /// The file's length when the current fragment began: where to cut back to on failure.
    fragment_start: u64,
}

impl AppendFileSink {
    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("begin_fragment opens the file")
    }

    /// Cuts the file back to where the current fragment began.
    async fn roll_back(&mut self) -> Result<(), SinkError> {
        let start = self.fragment_start;
        let file = self.file();
        let _ = file.flush().await;
        let truncated = file.set_len(start).await;
        truncated
            .map_err(|error| io_error("cannot remove a partial fragment from", &self.path, error))
    }
}

#[async_trait]
impl Sink for AppendFileSink {
    async fn begin_fragment(&mut self, _fragment: &FragmentInfo) -> Result<(), SinkError> {
        if self.file.is_none() {
            create_parent(&self.path).await?;
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await;
            self.file = Some(opened.map_err(|error| io_error("cannot open", &self.path, error))?);
        }
        let length = self.file().metadata().await.map(|metadata| metadata.len());
        self.fragment_start = length.map_err(|error| io_error("cannot stat", &self.path, error))?;
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        if let Err(error) = self.file().write_all(&chunk).await {
            let _ = self.roll_back().await;
            return Err(io_error("cannot write", &self.path, error));
        }
        Ok(())
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        let fsync = self.fsync;
        let file = self.file();
        let mut result = file.flush().await;
        if fsync && result.is_ok() {
            result = file.sync_data().await;
        }
        if let Err(error) = result {
            let _ = self.roll_back().await;
            return Err(io_error("cannot write", &self.path, error));
        }
        Ok(())
    }

    async fn abort_fragment(&mut self) -> Result<(), SinkError> {
        self.roll_back().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if let Some(file) = &mut self.file {
            let flushed = file.flush().await;
            flushed.map_err(|error| io_error("cannot write", &self.path, error))?;
        }
        Ok(())
    }
}

/// `mode: per_fragment`.
struct PerFragmentFileSink {
    directory: PathBuf,
    fsync: bool,
    /// The file being written: its temporary path, final path and handle.
    current: Option<(PathBuf, PathBuf, File)>,
}

impl PerFragmentFileSink {
    fn current(&mut self) -> &mut (PathBuf, PathBuf, File) {
        self.current
            .as_mut()
            .expect("begin_fragment creates the file")
    }

    async fn discard(&mut self) {
        if let Some((temporary, _, _)) = self.current.take() {
            let _ = tokio::fs::remove_file(temporary).await;
        }
    }

    async fn finish(&mut self) -> io::Result<()> {
        let fsync = self.fsync;
        let (temporary, target, file) = self.current();
        file.flush().await?;
        if fsync {
            file.sync_all().await?;
        }
        tokio::fs::rename(&temporary, &target).await?;
        if fsync {
            File::open(&self.directory).await?.sync_all().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for PerFragmentFileSink {
    async fn begin_fragment(&mut self, fragment: &FragmentInfo) -> Result<(), SinkError> {
        let name = &fragment.name;
        if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
            return Err(SinkError::fatal(format!(
                "fragment name `{name}` cannot be used as a file name in {}",
                self.directory.display()
            )));
        }
        tokio::fs::create_dir_all(&self.directory)
            .await
            .map_err(|error| io_error("cannot create directory", &self.directory, error))?;
        let temporary = self.directory.join(format!(".{name}.part"));
        let file = File::create(&temporary)
            .await
            .map_err(|error| io_error("cannot create", &temporary, error))?;
        self.current = Some((temporary, self.directory.join(name), file));
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        let (temporary, _, file) = self.current();
        if let Err(error) = file.write_all(&chunk).await {
            let error = io_error("cannot write", temporary, error);
            self.discard().await;
            return Err(error);
        }
        Ok(())
    }

    async fn end_fragment(&mut self) -> Result<(), SinkError> {
        if let Err(error) = self.finish().await {
            let error = io_error("cannot write", &self.current().1.clone(), error);
            self.discard().await;
            return Err(error);
        }
        self.current = None;
        Ok(())
    }

    async fn abort_fragment(&mut self) -> Result<(), SinkError> {
        self.discard().await;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.discard().await;
        Ok(())
    }
}

/// Keeps this module (and its registration) in the binary; see the crate's `link`.
#[inline(never)]
pub fn link() {
    std::hint::black_box(module_path!());
}

#[cfg(test)]
mod tests {
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

    async fn write_fragment(sink: &mut dyn Sink, name: &str, chunks: &[&'static [u8]]) {
        sink.begin_fragment(&info(name)).await.unwrap();
        for chunk in chunks {
            sink.write_chunk(Bytes::from_static(chunk)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn append_mode_appends_across_restarts_and_rolls_back_aborted_fragments() {
        let directory = tempfile::tempdir().unwrap();
        let config = FileSinkConfig {
            path: "out/archive.bin".into(),
            mode: FileMode::Append,
            fsync: true,
        };
        let context = context(directory.path());
        config.validate(&context).unwrap();
        let mut sink = config.build(&context).await.unwrap();
        write_fragment(sink.as_mut(), "a", &[b"one", b"two"]).await;
        sink.end_fragment().await.unwrap();
        write_fragment(sink.as_mut(), "b", &[b"half"]).await;
        sink.abort_fragment().await.unwrap();
        sink.close().await.unwrap();

        let mut restarted = config.build(&context).await.unwrap();
        write_fragment(restarted.as_mut(), "c", &[b"three"]).await;
        restarted.end_fragment().await.unwrap();
        restarted.close().await.unwrap();

        let written = std::fs::read(directory.path().join("out/archive.bin")).unwrap();
        assert_eq!(written, b"onetwothree");
    }

    #[tokio::test]
    async fn per_fragment_mode_renames_complete_files_only() {
        let directory = tempfile::tempdir().unwrap();
        let config = FileSinkConfig {
            path: "fragments".into(),
            mode: FileMode::PerFragment,
            fsync: false,
        };
        let context = context(directory.path());
        let mut sink = config.build(&context).await.unwrap();
        write_fragment(sink.as_mut(), "batch-0.mp4", &[b"abc"]).await;
        sink.end_fragment().await.unwrap();
        write_fragment(sink.as_mut(), "batch-1.mp4", &[b"partial"]).await;
        sink.abort_fragment().await.unwrap();
        sink.close().await.unwrap();

        let mut names: Vec<String> = std::fs::read_dir(directory.path().join("fragments"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["batch-0.mp4"]);
        let written = std::fs::read(directory.path().join("fragments/batch-0.mp4")).unwrap();
        assert_eq!(written, b"abc");
    }

    #[tokio::test]
    async fn unusable_paths_are_clear_errors() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("plain-file"), b"x").unwrap();
        let context = context(directory.path());

        let into_file = FileSinkConfig {
            path: "plain-file/archive.mp4".into(),
            mode: FileMode::Append,
            fsync: false,
        };
        let error = into_file.validate(&context).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("path"));
        assert!(error.message.contains("is not a directory"), "{error}");

        let append_to_directory = FileSinkConfig {
            path: ".".into(),
            mode: FileMode::Append,
            fsync: false,
        };
        assert!(append_to_directory.validate(&context).is_err());

        let bad_name = FileSinkConfig {
            path: "out".into(),
            mode: FileMode::PerFragment,
            fsync: false,
        };
        let mut sink = bad_name.build(&context).await.unwrap();
        let error = sink.begin_fragment(&info("../escape")).await.err().unwrap();
        assert!(
            error.message.contains("cannot be used as a file name"),
            "{error}"
        );
    }
}
