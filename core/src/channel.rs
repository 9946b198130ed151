//! In-process channels: a program embedding streampub pushes fragments into a running pipeline
//! whose source is `type: channel`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::component::ComponentError;
use crate::fragment::{Fragment, FragmentBody, FragmentDelivery, FragmentInfo};

/// The named channels of one runtime. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct ChannelHub {
    senders: Arc<Mutex<HashMap<String, mpsc::Sender<Fragment>>>>,
}

impl ChannelHub {
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
