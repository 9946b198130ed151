//! Sources produce fragments.

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::component::{ComponentContext, ComponentError};
use crate::fragment::Fragment;

/// A source's parsed config: validated without side effects, then built into a [`Source`].
#[async_trait]
pub trait SourceConfig: Send + Sync + std::fmt::Debug {
    /// Checks everything that can be checked without starting anything (paths exist, values
    /// are in range).
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError>;

    /// Creates the running source.
    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Source>, ComponentError>;
}

/// A running source.
///
/// `run` sends fragments into `output` (a bounded queue of `fragment_buffer_size` fragments, so
/// a slow sink makes it wait) and returns when it has nothing more to publish and every fragment
/// it sent has been acknowledged, or when `shutdown` is cancelled. After shutdown it stops
/// sending but still awaits the acknowledgements of fragments it already sent (they resolve
/// quickly: delivered, or abandoned when the pipeline drops them) so it can save its state.
#[async_trait]
pub trait Source: Send {
    /// Publishes until there is nothing more, or until `shutdown` (see above).
    async fn run(
        self: Box<Self>,
        output: mpsc::Sender<Fragment>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError>;
}

/// A source failed as a whole (not one fragment: those fail through their acknowledgement).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// What went wrong, for the logs.
    pub message: String,
}

impl SourceError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
