//! The `channel` source: publishes fragments that an embedding program pushes in.
//!
//! ```ignore
//! let runtime = Runtime::start(&config).await?;
//! let ingest = runtime.channel("ingest").expect("a pipeline has `source: {type: channel, name: ingest}`");
//! let delivery = ingest.send_bytes("batch-0.mp4", bytes).await?;
//! assert_eq!(delivery.await, FragmentOutcome::Delivered);
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::{
    async_trait, CancellationToken, ComponentContext, ComponentError, Fragment, PluginRegistration,
    Source, SourceConfig, SourceError,
};
use tokio::sync::mpsc;

inventory::submit! {
    PluginRegistration::source::<ChannelSourceConfig>(
        "channel",
        "Publishes fragments an embedding program pushes through a named in-process channel",
    )
}

/// Receives fragments from the program that embeds streampub, through the channel `name`
/// (`Runtime::channel(name)`). It finishes when the program has closed the channel
/// (`Runtime::close_channel`) and dropped its senders.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSourceConfig {
    /// The channel's name, unique within the runtime.
    pub name: String,
}

#[async_trait]
impl SourceConfig for ChannelSourceConfig {
    fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
        if self.name.trim().is_empty() {
            return Err(ComponentError::field("name", "must not be empty"));
        }
        Ok(())
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Source>, ComponentError> {
        let incoming = context.channels.open(&self.name)?;
        Ok(Box::new(ChannelSource { incoming }))
    }
}

struct ChannelSource {
    incoming: mpsc::Receiver<Fragment>,
}

#[async_trait]
impl Source for ChannelSource {
    async fn run(
        mut self: Box<Self>,
        output: mpsc::Sender<Fragment>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        // The senders await their own deliveries; this source only numbers and forwards.
        let mut next_sequence = 1;
        loop {
            let fragment = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                fragment = self.incoming.recv() => fragment,
            };
            let Some(mut fragment) = fragment else {
                return Ok(());
            };
            fragment.info.sequence = next_sequence;
            next_sequence += 1;
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                sent = output.send(fragment) => if sent.is_err() { return Ok(()) },
            }
        }
    }
}

/// Keeps this module (and its registration) in the binary; see the crate's `link`.
#[inline(never)]
pub fn link() {
    std::hint::black_box(module_path!());
}
