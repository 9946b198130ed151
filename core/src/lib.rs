//! streampub's core: the fragment model, the plugin traits and registry, config loading and
//! the runtime that wires pipelines together. It knows no media format and no particular
//! plugin; those live in `streampub-sources`, `streampub-stages` and `streampub-sinks`.
//!
//! A pipeline is `source → chunking stage → stages → sink`. Sources produce [`Fragment`]s;
//! the [`ChunkingStage`] reads them in bounded chunks with backpressure; [`Stage`]s rewrite the
//! chunk stream; a [`Sink`] takes it. A fragment is acknowledged to its source only once its
//! sink has confirmed it.
//!
//! Modules, in layers (each uses only those above it; `tests/layers.rs` checks it):
//!
//! 1. model: [`units`], [`fragment`], [`chunk`], [`reconnect`], [`redact`], [`checkpoint`],
//!    [`program`];
//! 2. plugin traits: [`services`], [`component`], [`source`], [`stage`], [`sink`];
//! 3. registry and config: [`node`], [`registry`], [`config`];
//! 4. [`runtime`].

pub mod checkpoint;
pub mod chunk;
pub mod component;
pub mod config;
pub mod fragment;
pub mod node;
pub mod program;
pub mod reconnect;
pub mod redact;
pub mod registry;
pub mod runtime;
pub mod services;
pub mod sink;
pub mod source;
pub mod stage;
pub mod units;

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use inventory;
pub use schemars;
pub use tokio_util::sync::CancellationToken;

pub use crate::chunk::{ChunkSize, FileRange};
pub use crate::component::{ComponentContext, ComponentError};
pub use crate::config::{ConfigError, LoadedConfig};
pub use crate::fragment::{
    Fragment, FragmentBody, FragmentDelivery, FragmentInfo, FragmentOutcome, MediaSpan,
};
pub use crate::reconnect::ReconnectPolicy;
pub use crate::redact::Redactor;
pub use crate::registry::{PluginKind, PluginRegistration, Registry};
pub use crate::runtime::chunking::ChunkingStage;
pub use crate::runtime::{
    LatencySummary, PipelineReport, PipelineState, PipelineStats, RunReport, Runtime,
    RuntimeShutdown, StatusBoard,
};
pub use crate::services::Services;
pub use crate::sink::{Pacing, ResumeFrom, SessionReason, Sink, SinkConfig, SinkError};
pub use crate::source::{Source, SourceConfig, SourceError};
pub use crate::stage::{Stage, StageConfig, StageError, StageOutput};
pub use crate::units::{ByteSize, HumanDuration};
