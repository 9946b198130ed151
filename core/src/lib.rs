//! streampub's core: the fragment model, the plugin traits and registry, config loading and
//! the runtime that wires pipelines together. It knows no media format and no particular
//! plugin; those live in `streampub-sources`, `streampub-stages` and `streampub-sinks`.
//!
//! A pipeline is `source → chunking stage → stages → sink`. Sources produce [`Fragment`](plugin::Fragment)s;
//! the chunking stage reads them in bounded chunks with backpressure; [`Stage`](plugin::Stage)s rewrite the
//! chunk stream; a [`Sink`](plugin::Sink) takes it. A fragment is acknowledged to its source only once its
//! sink has confirmed it.
//!
//! Two public faces: [`plugin`], everything a source, stage or sink crate needs (traits,
//! errors, context, registration macros), and at the top level the embedding API: the
//! [`Registry`] of linked plugins, a [`LoadedConfig`] read from a pipeline file, the
//! [`Runtime`] that runs it and its [`StatusBoard`]. With the `testing` feature, `testing`
//! holds harnesses for plugin tests. The rest is private.
//!
//! Modules, in layers (each uses only those above it; `tests/layers.rs` checks it):
//!
//! 1. model: `registration` (the macros), `units`, `fragment`, `chunk`, `reconnect`,
//!    `redact`, `durable_file`, `checkpoint`, `program`, `filler_source`;
//! 2. plugin traits: `services`, `component`, `source`, `stage`, `sink`, and [`plugin`],
//!    which gathers them;
//! 3. registry and config: `node`, `registry`, `config`;
//! 4. `runtime`;
//! 5. `testing` (with the feature).

#[deny(missing_docs)]
mod checkpoint;
#[deny(missing_docs)]
mod chunk;
#[deny(missing_docs)]
mod component;
mod config;
#[deny(missing_docs)]
mod durable_file;
#[deny(missing_docs)]
mod filler_source;
#[deny(missing_docs)]
mod fragment;
mod node;
#[deny(missing_docs)]
pub mod plugin;
#[deny(missing_docs)]
mod program;
#[deny(missing_docs)]
mod reconnect;
#[deny(missing_docs)]
mod redact;
#[deny(missing_docs)]
mod registration;
#[deny(missing_docs)]
mod registry;
mod runtime;
#[deny(missing_docs)]
mod services;
#[deny(missing_docs)]
mod sink;
#[deny(missing_docs)]
mod source;
#[deny(missing_docs)]
mod stage;
#[cfg(feature = "testing")]
pub mod testing;
#[deny(missing_docs)]
mod units;

/// For the registration macros; plugin crates use [`register_stage!`] and the others.
#[doc(hidden)]
pub use inventory;

pub use crate::config::{
    destination_options, pipeline_options, top_level_options, ConfigError, ConfigErrorDetails,
    Destination, LoadedConfig, MetricsOptions, PipelinePlan,
};
pub use crate::registry::{OptionDoc, PluginKind, PluginRegistration, Registry, RegistryError};
pub use crate::runtime::reload::Reloaded;
pub use crate::runtime::{
    Health, HistogramSnapshot, LatencySummary, PipelineReport, PipelineState, PipelineStats,
    Readiness, RunReport, Runtime, RuntimeShutdown, StatusBoard,
};
