//! Why a pipeline stopped before its input ended.

use std::time::Duration;

use crate::sink::SinkError;
use crate::source::SourceError;
use crate::units::HumanDuration;

/// Why a pipeline stopped before its input ended.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("sink failed: {0}")]
    Sink(#[from] SinkError),
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    #[error("the fragment in flight did not finish within shutdown_timeout ({})", HumanDuration(*.0))]
    ShutdownTimeout(Duration),
    #[error("cannot save the pipeline state: {0}")]
    State(String),
    #[error("internal error: {0}")]
    Internal(String),
}
