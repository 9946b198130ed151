//! `mode: per_fragment`: one file per fragment, renamed into place when complete.

use std::io;
use std::path::PathBuf;

use streampub_core::plugin::{async_trait, Bytes, FragmentInfo, Sink, SinkError};
use tokio::fs::File;
use tokio::io::AsyncWriteExt;

use super::file_errors::io_error;

/// `mode: per_fragment`.
pub(super) struct PerFragmentFileSink {
    directory: PathBuf,
    fsync: bool,
    /// The file being written: its temporary path, final path and handle.
    current: Option<(PathBuf, PathBuf, File)>,
}

impl PerFragmentFileSink {
    pub(super) fn new(directory: PathBuf, fsync: bool) -> Self {
        Self {
            directory,
            fsync,
            current: None,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    async fn write_fragment(sink: &mut dyn Sink, name: &str, chunks: &[&'static [u8]]) {
        let info = FragmentInfo {
            sequence: 1,
            name: name.into(),
            length: None,
        };
        sink.begin_fragment(&info).await.unwrap();
        for chunk in chunks {
            sink.write_chunk(Bytes::from_static(chunk)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn per_fragment_mode_renames_complete_files_only() {
        let directory = tempfile::tempdir().unwrap();
        let mut sink = PerFragmentFileSink::new(directory.path().join("fragments"), false);
        write_fragment(&mut sink, "batch-0.mp4", &[b"abc"]).await;
        sink.end_fragment().await.unwrap();
        write_fragment(&mut sink, "batch-1.mp4", &[b"partial"]).await;
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
}
