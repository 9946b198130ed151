//! Reading one fragment's body, whatever it is, chunk by chunk.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::buffer_pool::BufferPool;
use super::events::ChunkData;
use crate::chunk::FileRange;
use crate::fragment::{FragmentBody, RemoteBody};

/// Reads a fragment's body chunk by chunk.
pub enum BodyReader {
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        /// The file's length when opened.
        length: u64,
        buffers: BufferPool,
    },
    Memory(Bytes),
    Remote {
        body: Arc<dyn RemoteBody>,
        offset: u64,
    },
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

impl BodyReader {
    /// Opens a body for reading from its start. A one-shot reader body is taken out of the
    /// fragment; opening it again fails.
    pub async fn open(body: &mut FragmentBody, buffers: &BufferPool) -> io::Result<Self> {
        match body {
            FragmentBody::File(_) | FragmentBody::Temporary(_) => {
                let path = match body {
                    FragmentBody::Temporary(path) => path.to_path_buf(),
                    FragmentBody::File(path) => path.clone(),
                    _ => unreachable!("matched above"),
                };
                let (file, length) = tokio::task::spawn_blocking(move || {
                    let file = std::fs::File::open(path)?;
                    let length = file.metadata()?.len();
                    Ok::<_, io::Error>((file, length))
                })
                .await
                .map_err(io::Error::other)??;
                Ok(Self::File {
                    file: Arc::new(file),
                    offset: 0,
                    length,
                    buffers: buffers.clone(),
                })
            }
            FragmentBody::Memory(bytes) => Ok(Self::Memory(bytes.clone())),
            FragmentBody::Remote(body) => Ok(Self::Remote {
                body: Arc::clone(body),
                offset: 0,
            }),
            FragmentBody::Reader(_) => {
                match std::mem::replace(body, FragmentBody::Consumed) {
                    FragmentBody::Reader(reader) => Ok(Self::Reader(reader)),
                    _ => unreachable!("matched as a reader above"),
                }
            }
            FragmentBody::Consumed => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the fragment came from a one-shot reader that was already read; it cannot be sent again",
            )),
        }
    }

    /// Skips the first `bytes` of the body (a destination of a fan-out that reads the rest of a
    /// fragment whose first part it took as chunks).
    pub fn skip(&mut self, bytes: u64) -> io::Result<()> {
        match self {
            Self::File { offset, .. } | Self::Remote { offset, .. } => *offset += bytes,
            Self::Memory(memory) => {
                let skipped = usize::try_from(bytes)
                    .unwrap_or(usize::MAX)
                    .min(memory.len());
                let _ = memory.split_to(skipped);
            }
            Self::Reader(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a one-shot reader cannot be read again from inside",
                ))
            }
        }
        Ok(())
    }

    /// The next chunk of at most `max` bytes, as a [`FileRange`] of a file body when
    /// `file_ranges` is set (the kernel is asked to read it ahead, since nothing here will),
    /// else as bytes; `None` at the end.
    pub async fn next_data(
        &mut self,
        max: usize,
        file_ranges: bool,
    ) -> io::Result<Option<ChunkData>> {
        match self {
            Self::File {
                file,
                offset,
                length,
                ..
            } if file_ranges => {
                let take = (*length - (*offset).min(*length)).min(max as u64) as usize;
                if take == 0 {
                    return Ok(None);
                }
                // Only a hint: a kernel that ignores it just reads later.
                let _ = rustix::fs::fadvise(
                    &**file,
                    *offset,
                    std::num::NonZeroU64::new(take as u64),
                    rustix::fs::Advice::WillNeed,
                );
                let range = FileRange {
                    file: Arc::clone(file),
                    offset: *offset,
                    length: take,
                };
                *offset += take as u64;
                Ok(Some(ChunkData::File(range)))
            }
            _ => Ok(self.next_chunk(max).await?.map(ChunkData::Bytes)),
        }
    }

    /// The next chunk of at most `max` bytes, or `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            Self::File {
                file,
                offset,
                buffers,
                ..
            } => {
                let (file, position, pool) = (Arc::clone(file), *offset, buffers.clone());
                let chunk = tokio::task::spawn_blocking(move || pool.read_at(&file, position, max))
                    .await
                    .map_err(io::Error::other)??;
                if let Some(chunk) = &chunk {
                    *offset += chunk.len() as u64;
                }
                Ok(chunk)
            }
            Self::Memory(bytes) => {
                if bytes.is_empty() {
                    return Ok(None);
                }
                Ok(Some(bytes.split_to(max.min(bytes.len()))))
            }
            Self::Remote { body, offset } => {
                let left = body.length().saturating_sub(*offset);
                if left == 0 {
                    return Ok(None);
                }
                let take = max.min(usize::try_from(left).unwrap_or(usize::MAX));
                let chunk = Arc::clone(body).read(*offset, take).await?;
                if chunk.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} ended at byte {offset} of {}",
                            body.describe(),
                            body.length()
                        ),
                    ));
                }
                *offset += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Self::Reader(reader) => {
                let mut buffer = Vec::with_capacity(max);
                // `take` so a reader never fills more than one chunk.
                let read = (&mut *reader)
                    .take(max as u64)
                    .read_to_end(&mut buffer)
                    .await?;
                Ok((read > 0).then(|| Bytes::from(buffer)))
            }
        }
    }
}
