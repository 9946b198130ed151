//! An object as a fragment's body: read as the pipeline takes its chunks, with ranged GETs of
//! at most `RANGE` bytes each pinned to its ETag, so that it is never held whole, and read
//! again from wherever a resend starts.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streampub_core::plugin::{async_trait, Bytes, RemoteBody};
use tracing::{info, warn};

use super::client::{ListedObject, S3Client};
use super::store_error::StoreError;

/// Bytes one GET asks for. Small enough that even a slow paced stream reads one well within
/// the store's patience with an open request, large enough that an 8.8 MB object takes five.
const RANGE: u64 = 2 * 1024 * 1024;
/// The first pause before a failed read is tried again; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// GETs of one object kept open for readers that continue where they stopped.
const OPEN_RANGES: usize = 2;

/// One listed object of the bucket.
pub(crate) struct S3Object {
    client: Arc<S3Client>,
    pipeline: String,
    object: ListedObject,
    retry_for: Duration,
    /// The GETs being read, each by one reader of the body (a fan-out destination reading
    /// what it missed reads beside the others): at most `OPEN_RANGES`, the oldest let go.
    open: Mutex<Vec<OpenRange>>,
}

struct OpenRange {
    next: u64,
    end: u64,
    reader: ureq::BodyReader<'static>,
}

impl S3Object {
    pub(crate) fn new(
        client: Arc<S3Client>,
        pipeline: String,
        object: ListedObject,
        retry_for: Duration,
    ) -> Self {
        Self {
            client,
            pipeline,
            object,
            retry_for,
            open: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl RemoteBody for S3Object {
    fn length(&self) -> u64 {
        self.object.size
    }

    fn describe(&self) -> String {
        self.client.describe(&self.object.key)
    }

    async fn read(self: Arc<Self>, offset: u64, max: usize) -> io::Result<Bytes> {
        tokio::task::spawn_blocking(move || self.read_retrying(offset, max))
            .await
            .map_err(io::Error::other)?
    }
}

impl S3Object {
    /// Reads, trying again after passing failures for `retry_for`.
    fn read_retrying(&self, offset: u64, max: usize) -> io::Result<Bytes> {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut warned = false;
        loop {
            match self.read(offset, max) {
                Ok(bytes) => {
                    if warned {
                        info!(event = "store_available", pipeline = %self.pipeline,
                            object = %self.describe(),
                            "Reading {} again", self.describe());
                    }
                    return Ok(bytes);
                }
                Err(StoreError::Passing(message)) if started.elapsed() < self.retry_for => {
                    if !std::mem::replace(&mut warned, true) {
                        warn!(event = "store_unavailable", pipeline = %self.pipeline,
                            error = %message,
                            "{message}; trying again for up to {} s (`retry_for`)",
                            self.retry_for.as_secs());
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(error) => return Err(io::Error::other(error.to_string())),
            }
        }
    }

    /// At most `max` bytes from `offset`, from the open GET that ends there if there is one,
    /// else from a new one; no lock is held while the store is asked or read.
    fn read(&self, offset: u64, max: usize) -> Result<Bytes, StoreError> {
        let continued = {
            let mut open = self
                .open
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            open.iter()
                .position(|range| range.next == offset && range.next < range.end)
                .map(|index| open.remove(index))
        };
        let mut range = match continued {
            Some(range) => range,
            None => {
                let end = (offset + RANGE).min(self.object.size);
                OpenRange {
                    next: offset,
                    end,
                    reader: self.client.read_range(
                        &self.object.key,
                        &self.object.etag,
                        offset,
                        end,
                    )?,
                }
            }
        };
        let want = (max as u64).min(range.end - range.next) as usize;
        let mut buffer = vec![0; want];
        let mut filled = 0;
        while filled < want {
            match range.reader.read(&mut buffer[filled..]) {
                Ok(0) => {
                    return Err(StoreError::Passing(format!(
                        "{} ended at byte {} of the range the store was asked for",
                        self.describe(),
                        offset + filled as u64
                    )))
                }
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(StoreError::Passing(format!(
                        "reading {} at byte {}: {error}",
                        self.describe(),
                        offset + filled as u64
                    )))
                }
            }
        }
        range.next += filled as u64;
        if range.next < range.end {
            let mut open = self
                .open
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            open.push(range);
            if open.len() > OPEN_RANGES {
                open.remove(0);
            }
        }
        Ok(Bytes::from(buffer))
    }
}
