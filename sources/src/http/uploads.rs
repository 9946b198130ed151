//! What the `http` source does with the uploads its routes let through
//! (`PUT` and `GET /v1/pipelines/{pipeline}/fragments/{name}`; the routes, names and tokens are
//! `streampub-http`'s): each body is streamed into the spool, within `max_fragment_size` and
//! `upload_timeout`, and synced before the answer.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use streampub_core::plugin::async_trait;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use streampub_http::{
    error_response, header, json_response, retry_later, Body, FragmentUploads, HeaderMap, Response,
    StatusCode,
};

use super::spool::{Admission, Record, Spool, UploadSlot, UPLOAD_PREFIX};
/// How long the rest of a body refused mid-upload is read and dropped.
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Keeps one pipeline's uploads in its spool.
pub(super) struct SpoolUploads {
    pub(super) pipeline: String,
    pub(super) spool: Arc<Spool>,
    pub(super) max_fragment_size: u64,
    pub(super) upload_timeout: Duration,
}

/// A received body, synced to its temporary file.
struct Received {
    file: tempfile::TempPath,
    bytes: u64,
    sha256: String,
}

/// Why a body was not received; what is on disk of it is removed.
enum ReceiveError {
    TooLarge,
    Stalled,
    /// The client went away or sent a malformed body.
    Interrupted(String),
    Storage(std::io::Error),
}

#[async_trait]
impl FragmentUploads for SpoolUploads {
    async fn put(&self, name: String, headers: HeaderMap, body: Body) -> Response {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_fragment_size) {
            return self.too_large();
        }
        let slot = match self.spool.admit(&name) {
            Admission::Existing(record) => return self.compare(record, body).await,
            Admission::InProgress => {
                return error_response(
                    StatusCode::CONFLICT,
                    format!("an upload of `{name}` is in progress; retry once it finished"),
                )
            }
            Admission::BacklogFull => {
                return retry_later(format!(
                    "pipeline {} has too many fragments waiting to be published; retry later",
                    self.pipeline
                ))
            }
            Admission::Admitted(slot) => slot,
        };
        match self.receive(body).await {
            // Nothing to publish, ever: refused now rather than failed on every start.
            Ok(received) if received.bytes == 0 => {
                drop(slot);
                error_response(
                    StatusCode::BAD_REQUEST,
                    format!("the body of `{name}` is empty; upload the fragment's bytes"),
                )
            }
            Ok(received) => self.commit(&name, slot, received).await,
            Err(error) => self.refuse(&name, error),
        }
    }

    fn get(&self, name: &str) -> Response {
        match self.spool.get(name) {
            Some(record) => json_response(StatusCode::OK, &self.describe(&record, true)),
            None => error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "no fragment named `{name}` was uploaded to pipeline {}",
                    self.pipeline
                ),
            ),
        }
    }
}

impl SpoolUploads {
    /// An upload of a name that exists: `200` if it is the same bytes, `409` if not.
    async fn compare(&self, existing: Record, body: Body) -> Response {
        match self.receive(body).await {
            Ok(received) if received.sha256 == existing.sha256 && received.bytes == existing.bytes => {
                json_response(StatusCode::OK, &self.describe(&existing, false))
            }
            Ok(_) => error_response(
                StatusCode::CONFLICT,
                format!(
                    "a different fragment named `{}` was already uploaded (sequence {}); upload under a new name",
                    existing.name, existing.sequence
                ),
            ),
            Err(error) => self.refuse(&existing.name, error),
        }
    }

    async fn commit(&self, name: &str, slot: UploadSlot, received: Received) -> Response {
        let spool = Arc::clone(&self.spool);
        let committed = tokio::task::spawn_blocking(move || {
            spool.commit(slot, received.file, received.bytes, received.sha256)
        })
        .await
        .unwrap_or_else(|panic| Err(std::io::Error::other(panic.to_string())));
        match committed {
            Ok(record) => {
                info!(
                    event = "upload_accepted",
                    pipeline = %self.pipeline,
                    fragment = %record.name,
                    sequence = record.sequence,
                    bytes = record.bytes,
                    "Accepted upload {} ({:.2} KiB) as fragment {}",
                    record.name,
                    record.bytes as f64 / 1024.0,
                    record.sequence
                );
                json_response(StatusCode::CREATED, &self.describe(&record, false))
            }
            Err(error) => self.refuse(name, ReceiveError::Storage(error)),
        }
    }

    fn refuse(&self, name: &str, error: ReceiveError) -> Response {
        let (status, message) = match error {
            ReceiveError::TooLarge => return self.too_large(),
            ReceiveError::Stalled => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "no data for {:?}; the upload was dropped",
                    self.upload_timeout
                ),
            ),
            ReceiveError::Interrupted(message) => (
                StatusCode::BAD_REQUEST,
                format!("the upload was interrupted: {message}"),
            ),
            ReceiveError::Storage(error) if is_storage_full(&error) => (
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "the spool in {} is full: {error}",
                    self.spool.directory().display()
                ),
            ),
            ReceiveError::Storage(error) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "cannot write to the spool in {}: {error}",
                    self.spool.directory().display()
                ),
            ),
        };
        warn!(
            event = "upload_refused",
            pipeline = %self.pipeline,
            fragment = %name,
            status = status.as_u16(),
            error = %message,
            "Upload of {name} refused ({}): {message}",
            status.as_u16()
        );
        error_response(status, message)
    }

    fn too_large(&self) -> Response {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "fragments may be at most {} bytes (max_fragment_size)",
                self.max_fragment_size
            ),
        )
    }

    /// Streams the body into a new file in the spool, hashing it, within `max_fragment_size`
    /// and `upload_timeout`; syncs it. Memory stays at one body frame.
    async fn receive(&self, mut body: Body) -> Result<Received, ReceiveError> {
        let (file, path) = tempfile::Builder::new()
            .prefix(UPLOAD_PREFIX)
            .tempfile_in(self.spool.directory())
            .map_err(ReceiveError::Storage)?
            .into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        loop {
            let frame = match tokio::time::timeout(self.upload_timeout, body.frame()).await {
                Err(_) => return Err(ReceiveError::Stalled),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(ReceiveError::Interrupted(error.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            bytes += data.len() as u64;
            if bytes > self.max_fragment_size {
                drop(path);
                discard_rest(body).await;
                return Err(ReceiveError::TooLarge);
            }
            hasher.update(&data);
            file.write_all(&data).await.map_err(ReceiveError::Storage)?;
        }
        file.flush().await.map_err(ReceiveError::Storage)?;
        file.sync_all().await.map_err(ReceiveError::Storage)?;
        Ok(Received {
            file: path,
            bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// The JSON answer about a fragment; with its state for `GET`.
    fn describe(&self, record: &Record, with_state: bool) -> serde_json::Value {
        let mut answer = serde_json::json!({
            "pipeline": self.pipeline,
            "name": record.name,
            "sequence": record.sequence,
            "bytes": record.bytes,
        });
        if with_state {
            answer["state"] = serde_json::to_value(record.state).expect("plain enum");
            answer["sha256"] = record.sha256.as_str().into();
            if let Some(error) = &record.error {
                answer["error"] = error.as_str().into();
            }
        }
        answer
    }
}

/// Reads and drops what is left of a refused body (for at most [`DISCARD_TIME`]), so the
/// client, still sending, gets to read the answer instead of a connection reset.
async fn discard_rest(mut body: Body) {
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

fn is_storage_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
