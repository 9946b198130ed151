//! The `channel` source: publishes fragments that an embedding program pushes in.
//!
//! The program starts a [`Runtime`](streampub_core::Runtime) whose pipeline has
//! `source: {type: channel, name: ingest}`, takes a [`FragmentSender`] from
//! [`ChannelHub::sender`], and awaits each fragment's delivery (`FragmentOutcome::Delivered`
//! once the sink confirmed it). `examples/embed.rs` is the whole program.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    async_trait, Bytes, CancellationToken, ComponentContext, ComponentError, Fragment,
    FragmentBody, FragmentDelivery, FragmentInfo, Services, Source, SourceConfig, SourceError,
};
use streampub_core::register_source;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

register_source!(
    ChannelSourceConfig,
    "channel",
    "Publishes fragments an embedding program pushes through a named in-process channel",
);

/// Receives fragments from the program that embeds streampub, through the channel `name`
/// (`ChannelHub::shared(runtime.services()).sender(name)`). It finishes when the program has
/// closed the channel (`ChannelHub::close`) and dropped its senders, or on shutdown.
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
        let incoming = ChannelHub::shared(&context.services).open(&self.name)?;
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

/// The named channels of one runtime, kept in its [`Services`].
#[derive(Debug, Default)]
pub struct ChannelHub {
    senders: Mutex<HashMap<String, mpsc::Sender<Fragment>>>,
}

impl ChannelHub {
    /// The channels of the runtime that `services` belongs to.
    pub fn shared(services: &Services) -> Arc<Self> {
        services.get_or_insert_with(ChannelHub::default)
    }

    /// Opens the channel `name` and returns its receiving end; the name must be unused.
    pub fn open(&self, name: &str) -> Result<mpsc::Receiver<Fragment>, ComponentError> {
        let mut senders = self.senders.lock().expect("channel hub lock poisoned");
        if senders.contains_key(name) {
            return Err(ComponentError::field(
                "name",
                format!("channel `{name}` is already used by another pipeline; channel names must be unique"),
            ));
        }
        // One slot: the pipeline's fragment queue does the buffering.
        let (sender, receiver) = mpsc::channel(1);
        senders.insert(name.to_owned(), sender);
        Ok(receiver)
    }

    /// A sender for the channel `name`, if a running pipeline has it open.
    pub fn sender(&self, name: &str) -> Option<FragmentSender> {
        let senders = self.senders.lock().expect("channel hub lock poisoned");
        senders.get(name).cloned().map(FragmentSender)
    }

    /// Declares that no new senders for `name` are needed: once every sender handed out is
    /// dropped, the channel source publishes what it has and finishes.
    pub fn close(&self, name: &str) {
        self.senders
            .lock()
            .expect("channel hub lock poisoned")
            .remove(name);
    }

    /// Closes every channel (the runtime is finishing).
    pub fn close_all(&self) {
        self.senders
            .lock()
            .expect("channel hub lock poisoned")
            .clear();
    }
}

/// Pushes fragments into a channel source. Each send returns a [`FragmentDelivery`] that
/// resolves once the pipeline's sink has taken the fragment (or it failed).
#[derive(Debug, Clone)]
pub struct FragmentSender(mpsc::Sender<Fragment>);

/// The channel's pipeline has stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the channel's pipeline has stopped")]
pub struct ChannelClosed;

impl FragmentSender {
    /// Sends a fragment held in memory. Waits while the pipeline's queue is full.
    pub async fn send_bytes(
        &self,
        name: impl Into<String>,
        bytes: impl Into<Bytes>,
    ) -> Result<FragmentDelivery, ChannelClosed> {
        let bytes = bytes.into();
        let length = Some(bytes.len() as u64);
        self.send(name.into(), length, FragmentBody::Memory(bytes))
            .await
    }

    /// Sends a fragment read from `reader` as the sink takes it (it cannot be resent).
    pub async fn send_reader(
        &self,
        name: impl Into<String>,
        reader: impl AsyncRead + Send + Unpin + 'static,
        length: Option<u64>,
    ) -> Result<FragmentDelivery, ChannelClosed> {
        self.send(name.into(), length, FragmentBody::Reader(Box::new(reader)))
            .await
    }

    /// Sends a fragment stored in a file.
    pub async fn send_file(
        &self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> Result<FragmentDelivery, ChannelClosed> {
        self.send(name.into(), None, FragmentBody::File(path.into()))
            .await
    }

    async fn send(
        &self,
        name: String,
        length: Option<u64>,
        body: FragmentBody,
    ) -> Result<FragmentDelivery, ChannelClosed> {
        // The channel source assigns the sequence number.
        let info = FragmentInfo {
            sequence: 0,
            name,
            length,
        };
        let (fragment, delivery) = Fragment::new(info, body);
        self.0.send(fragment).await.map_err(|_| ChannelClosed)?;
        Ok(delivery)
    }
}
