//! The unit of work: a fragment (one media file of the stream) and its acknowledgement.
//!
//! A source creates a [`Fragment`] together with a [`FragmentDelivery`]. The fragment travels
//! through the pipeline; when its sink has fully taken it (or it failed, or the pipeline dropped
//! it on shutdown), the delivery resolves and the source acts on the outcome: it checkpoints,
//! moves the file, or answers an upload.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::oneshot;

/// What a stage or sink needs to know about a fragment, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Position in the pipeline's stream, assigned by the source, strictly increasing.
    pub sequence: u64,
    /// A name for logs and for sinks that name outputs after it (a file name, an upload name).
    pub name: String,
    /// Length in bytes when known before reading.
    pub length: Option<u64>,
}

/// Where a fragment lies on the timeline of the stream a stage produces: the media time at
/// which it starts and ends. A stage that rewrites timestamps (the MP4 timeline) knows it; a
/// sink that can tell how far its output has got in media time confirms fragments by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSpan {
    /// Where the span begins on the output's timeline.
    pub start: std::time::Duration,
    /// Where it ends (exclusive).
    pub end: std::time::Duration,
}

/// Where a fragment's bytes come from.
pub enum FragmentBody {
    /// A file, read in chunks; it can be read again, so a sink can resend it after a reconnect.
    File(PathBuf),
    /// Bytes already in memory; sliced into chunks without copying.
    Memory(Bytes),
    /// A file streampub made (a converted copy); deleted when the fragment is done with.
    Temporary(tempfile::TempPath),
    /// Bytes kept elsewhere (an object in a store), read a range at a time and never held
    /// whole; it can be read again.
    Remote(Arc<dyn RemoteBody>),
    /// A one-shot reader (a socket, a pipe); it cannot be resent.
    Reader(Box<dyn AsyncRead + Send + Unpin>),
    /// What a `Reader` body becomes once it has been read: it cannot be read again.
    Consumed,
}

impl FragmentBody {
    /// Where the bytes come from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Temporary(path) => path.display().to_string(),
            Self::Memory(_) => "memory".to_owned(),
            Self::Remote(remote) => remote.describe(),
            Self::Reader(_) | Self::Consumed => "a reader".to_owned(),
        }
    }

    /// Whether the body can be read again from its start (for a resend after a reconnect).
    pub fn is_rereadable(&self) -> bool {
        matches!(
            self,
            Self::File(_) | Self::Temporary(_) | Self::Memory(_) | Self::Remote(_)
        )
    }
}

/// A body kept elsewhere and read in ranges: an object in a store, read as the pipeline takes
/// its chunks, so that neither memory nor disk holds it whole.
#[async_trait]
pub trait RemoteBody: Send + Sync {
    /// Its length in bytes.
    fn length(&self) -> u64;

    /// Where it is, for messages (`s3://bucket/key`).
    fn describe(&self) -> String;

    /// At most `max` bytes from `offset`, at least one before the end (fewer than `max` where
    /// the remote's own reads end). Reads usually come in order; one that does not (a resend
    /// from the start, a second reader) is valid too.
    /// Takes the body shared (`Arc`), so that an implementation can move it onto a blocking
    /// thread.
    async fn read(self: Arc<Self>, offset: u64, max: usize) -> std::io::Result<Bytes>;
}

impl fmt::Debug for FragmentBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Temporary(path) => f.debug_tuple("Temporary").field(path).finish(),
            Self::Memory(bytes) => write!(f, "Memory({} bytes)", bytes.len()),
            Self::Remote(remote) => f.debug_tuple("Remote").field(&remote.describe()).finish(),
            Self::Reader(_) => f.write_str("Reader"),
            Self::Consumed => f.write_str("Consumed"),
        }
    }
}

/// The final state of one fragment, as its source learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// The sink took the whole fragment.
    Delivered,
    /// Reading, a stage or the sink failed; the message says why.
    Failed(Arc<str>),
    /// The pipeline stopped before the fragment was delivered (shutdown, or the pipeline
    /// failed); it must be published again on the next start.
    Abandoned,
}

/// A fragment on its way through a pipeline. Dropping it without [`Fragment::acknowledge`]
/// tells the source [`FragmentOutcome::Abandoned`].
#[derive(Debug)]
pub struct Fragment {
    /// Its sequence, name and length.
    pub info: FragmentInfo,
    /// Where its bytes are.
    pub body: FragmentBody,
    /// What the source does with the fragment if it fails (see [`Fragment::if_failed`]).
    if_failed: Option<Arc<str>>,
    acknowledgement: FragmentAck,
}

impl Fragment {
    /// Creates a fragment and the delivery its source awaits.
    pub fn new(info: FragmentInfo, body: FragmentBody) -> (Self, FragmentDelivery) {
        let (sender, receiver) = oneshot::channel();
        let fragment = Self {
            info,
            body,
            if_failed: None,
            acknowledgement: FragmentAck(Some(AckTarget::Source(sender))),
        };
        (fragment, FragmentDelivery(receiver))
    }

    /// Says what the source does with the fragment if it fails, as the end of a sentence (`it
    /// stays in /srv/in and is tried again on the next start`): the runtime's one
    /// `fragment_failed` line for it says it, so the source need not log the failure again.
    pub fn with_if_failed(mut self, what_then: impl Into<Arc<str>>) -> Self {
        self.if_failed = Some(what_then.into());
        self
    }

    /// What the source does with the fragment if it fails.
    pub fn if_failed(&self) -> &str {
        self.if_failed
            .as_deref()
            .unwrap_or("its source is told and decides whether it is offered again")
    }

    /// Reports the outcome to the source. Called by the runtime once the sink has taken the
    /// fragment fully, or once it has failed.
    pub fn acknowledge(mut self, outcome: FragmentOutcome) {
        self.acknowledgement.send(outcome);
    }

    /// Takes the fragment apart: what a fan-out hands each destination a copy of, and the
    /// acknowledgement it sends once the destinations are done.
    pub(crate) fn into_parts(self) -> (FragmentInfo, FragmentBody, Option<Arc<str>>, FragmentAck) {
        (self.info, self.body, self.if_failed, self.acknowledgement)
    }

    /// A fragment whose outcome goes to `acknowledge` instead of a source (one destination's
    /// copy in a fan-out); dropped unacknowledged, it reports `Abandoned` there.
    pub(crate) fn with_callback(
        info: FragmentInfo,
        body: FragmentBody,
        if_failed: Option<Arc<str>>,
        acknowledge: Box<dyn FnOnce(FragmentOutcome) + Send>,
    ) -> Self {
        Self {
            info,
            body,
            if_failed,
            acknowledgement: FragmentAck(Some(AckTarget::Callback(acknowledge))),
        }
    }
}

/// The sending half of a fragment's acknowledgement; sends `Abandoned` when dropped unsent.
pub(crate) struct FragmentAck(Option<AckTarget>);

/// Who learns a fragment's outcome.
enum AckTarget {
    /// The source that made it, awaiting its [`FragmentDelivery`].
    Source(oneshot::Sender<FragmentOutcome>),
    /// The runtime, for one destination's copy of a fragment.
    Callback(Box<dyn FnOnce(FragmentOutcome) + Send>),
}

impl FragmentAck {
    pub(crate) fn send(&mut self, outcome: FragmentOutcome) {
        match self.0.take() {
            // The source may have stopped listening; the outcome then has no one to act on it.
            Some(AckTarget::Source(sender)) => drop(sender.send(outcome)),
            Some(AckTarget::Callback(callback)) => callback(outcome),
            None => {}
        }
    }
}

impl fmt::Debug for FragmentAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.0 {
            Some(AckTarget::Source(_)) => "FragmentAck(source)",
            Some(AckTarget::Callback(_)) => "FragmentAck(callback)",
            None => "FragmentAck(sent)",
        })
    }
}

impl Drop for FragmentAck {
    fn drop(&mut self) {
        self.send(FragmentOutcome::Abandoned);
    }
}

/// Resolves to a fragment's outcome once the pipeline is done with it.
#[derive(Debug)]
pub struct FragmentDelivery(oneshot::Receiver<FragmentOutcome>);

impl Future for FragmentDelivery {
    type Output = FragmentOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FragmentOutcome> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|result| result.unwrap_or(FragmentOutcome::Abandoned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> FragmentInfo {
        FragmentInfo {
            sequence: 1,
            name: "batch-0.mp4".into(),
            length: Some(3),
        }
    }

    #[tokio::test]
    async fn acknowledged_fragment_reports_its_outcome() {
        let (fragment, delivery) = Fragment::new(info(), FragmentBody::Memory(Bytes::from("abc")));
        fragment.acknowledge(FragmentOutcome::Delivered);
        assert_eq!(delivery.await, FragmentOutcome::Delivered);
    }

    #[tokio::test]
    async fn dropped_fragment_is_abandoned() {
        let (fragment, delivery) = Fragment::new(info(), FragmentBody::Memory(Bytes::from("abc")));
        drop(fragment);
        assert_eq!(delivery.await, FragmentOutcome::Abandoned);
    }
}
