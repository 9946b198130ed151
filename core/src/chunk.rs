//! What a fragment is read in: the `chunk_size` option and file ranges that sinks may move
//! without reading them.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Deserializer};

use crate::units::ByteSize;

/// Smallest chunk `chunk_size: auto` shrinks to.
pub const AUTO_CHUNK_MIN: usize = 64 * 1024;
/// Largest chunk `chunk_size: auto` grows to (also at most half of `max_in_flight`).
pub const AUTO_CHUNK_MAX: usize = 1024 * 1024;

/// A pipeline's `chunk_size`: a fixed size, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSize {
    /// Always this size.
    Fixed(ByteSize),
    /// Grows while the sink keeps up and shrinks while it waits (see the pipeline options).
    Auto,
}

impl<'de> Deserialize<'de> for ChunkSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads a size word, `auto`, or a number of bytes.
        struct Written;

        impl serde::de::Visitor<'_> for Written {
            type Value = ChunkSize;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size like 1MiB or 65536, or `auto`")
            }

            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<ChunkSize, E> {
                if word == "auto" {
                    return Ok(ChunkSize::Auto);
                }
                word.parse()
                    .map(ChunkSize::Fixed)
                    .map_err(|error| E::custom(format!("{error}, or `auto`")))
            }

            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<ChunkSize, E> {
                Ok(ChunkSize::Fixed(ByteSize(bytes)))
            }

            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<ChunkSize, E> {
                u64::try_from(bytes)
                    .map(|bytes| ChunkSize::Fixed(ByteSize(bytes)))
                    .map_err(|_| {
                        E::custom(format!(
                            "{bytes} is negative; write a size like 1MiB or 65536, or `auto`"
                        ))
                    })
            }
        }

        deserializer.deserialize_any(Written)
    }
}

impl schemars::JsonSchema for ChunkSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChunkSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "A size such as 1MiB or 65536, or `auto`",
            "examples": ["1MiB", "auto"]
        })
    }
}

impl std::fmt::Display for ChunkSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(size) => size.fmt(f),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// `length` bytes of `file` from `offset`: a chunk a sink can move from the file into a pipe
/// inside the kernel (`splice`) instead of reading it.
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The open file, shared by every range of it.
    pub file: Arc<std::fs::File>,
    /// Where the range begins in the file.
    pub offset: u64,
    /// How many bytes it holds.
    pub length: usize,
}

impl FileRange {
    /// Reads the range (for a sink or stage that needs the bytes after all).
    pub async fn read(&self) -> io::Result<Bytes> {
        let range = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0; range.length];
            range.file.read_exact_at(&mut buffer, range.offset)?;
            Ok(Bytes::from(buffer))
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_reads_a_size_or_auto() {
        let parse = |yaml: &str| serde_json::from_str::<ChunkSize>(yaml).map_err(|e| e.to_string());
        assert_eq!(parse("\"auto\""), Ok(ChunkSize::Auto));
        assert_eq!(
            parse("\"256KiB\""),
            Ok(ChunkSize::Fixed(ByteSize::kib(256)))
        );
        assert_eq!(parse("4096"), Ok(ChunkSize::Fixed(ByteSize(4096))));
        assert!(parse("\"big\"").unwrap_err().contains("or `auto`"));
    }
}
