//! streampub's core: the fragment model, the plugin traits and registry, the pipeline file, the
//! chunking stage and the runtime that wires them together.
//!
//! A pipeline is `source → chunking stage → stages → sink`. Sources produce [`Fragment`]s;
//! the [`ChunkingStage`] reads them in bounded chunks with backpressure; [`Stage`]s rewrite the
//! chunk stream; a [`Sink`] takes it. A fragment is acknowledged to its source only once its
//! sink has fully taken it.

pub mod channel;
pub mod checkpoint;
pub mod chunking;
pub mod component;
pub mod config;
pub mod fragment;
pub mod http;
pub mod metrics;
pub mod program;
pub mod reconnect;
pub mod redact;
pub mod registry;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod stage;
pub mod units;

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use inventory;
pub use schemars;
pub use tokio_util::sync::CancellationToken;

pub use crate::channel::{ChannelHub, FragmentSender};
pub use crate::chunking::ChunkingStage;
pub use crate::component::{ComponentContext, ComponentError};
pub use crate::config::{ConfigError, LoadedConfig};
pub use crate::fragment::{
    Fragment, FragmentBody, FragmentDelivery, FragmentInfo, FragmentOutcome,
};
pub use crate::reconnect::ReconnectPolicy;
pub use crate::redact::Redactor;
pub use crate::registry::{PluginKind, PluginRegistration, Registry};
pub use crate::runtime::{
    LatencySummary, PipelineReport, PipelineState, PipelineStats, RunReport, Runtime,
};
pub use crate::sink::{SessionReason, Sink, SinkConfig, SinkError};
pub use crate::source::{Source, SourceConfig, SourceError};
pub use crate::stage::{Stage, StageConfig, StageError, StageOutput};
pub use crate::units::{ByteSize, HumanDuration};
