//! Sinks consume fragments.

use async_trait::async_trait;
use bytes::Bytes;

use crate::component::{ComponentContext, ComponentError};
use crate::fragment::FragmentInfo;
use crate::reconnect::ReconnectPolicy;

/// A sink's parsed config.
#[async_trait]
pub trait SinkConfig: Send + Sync + std::fmt::Debug {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError>;
    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError>;
}

/// A running sink. The runtime calls, per fragment, `begin_fragment`, `write_chunk` for each
/// chunk in order, then `end_fragment`; the fragment counts as delivered (and is acknowledged
/// to its source) only once `end_fragment` returned `Ok`, so `end_fragment` must not return
/// before the sink has really taken the bytes (flushed, written into the pipe).
///
/// If reading or a stage fails mid-fragment, `abort_fragment` is called instead of
/// `end_fragment` and should undo what it can. When a call fails with a retryable error, the
/// runtime waits according to its reconnect policy, calls `start_session`, and sends the
/// fragment again from its start. `close` is called once at the end.
#[async_trait]
pub trait Sink: Send {
    async fn begin_fragment(&mut self, fragment: &FragmentInfo) -> Result<(), SinkError>;

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError>;

    async fn end_fragment(&mut self) -> Result<(), SinkError>;

    async fn abort_fragment(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Starts a new session: reconnect, or restart the downstream process.
    async fn start_session(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// How the runtime retries this sink after a retryable error; by default it does not.
    fn reconnect_policy(&self) -> ReconnectPolicy {
        ReconnectPolicy::NEVER
    }

    async fn close(&mut self) -> Result<(), SinkError>;
}

/// A sink failure, and whether starting a new session may cure it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    pub retryable: bool,
}

impl SinkError {
    /// A failure that a new session will not cure (an unwritable path, a full disk).
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that a new session may cure (a dropped connection, a crashed process).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}
