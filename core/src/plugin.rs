//! Everything a plugin crate needs, in one place.
//!
//! A plugin is a config type (deserialized from its mapping in the pipeline file, `type`
//! removed) that implements [`SourceConfig`], [`StageConfig`] or [`SinkConfig`], and the
//! running component it builds ([`Source`], [`Stage`], [`Sink`]). Their lifecycle:
//! `validate` checks the options and the environment without side effects (`streampub
//! validate` runs only this), `build` makes the component when the pipeline starts, and the
//! component runs until its input ends or the pipeline stops. The framework owns retries,
//! backoff, pacing, checkpoints and confirmation; a plugin reports what happened (a
//! [`SinkError`] is fatal or retryable, [`Sink::unconfirmed`] says what is not yet taken).
//!
//! Each plugin registers with one line in its module, [`register_source!`],
//! [`register_stage!`] or [`register_sink!`], which also defines the module's `link()`; the
//! plugin crate's own `link()` calls those, and a binary calls the crate's before it starts
//! (see `examples/custom-plugin`). Option docs come from the config type's `///` comments
//! through [`JsonSchema`]: `streampub plugins` prints them.
//!
//! The `testing` feature adds `streampub_core::testing`: harnesses that run a stage over files cut
//! into chunks anywhere, and drive a sink through fragments.
//!
//! ```
//! use serde::Deserialize;
//! use streampub_core::plugin::{
//!     async_trait, register_stage, Bytes, ComponentContext, ComponentError, JsonSchema, Stage,
//!     StageConfig, StageError, StageOutput,
//! };
//! use streampub_core::{LoadedConfig, Registry};
//!
//! /// Drops every `every`-th byte (a stage that shows the shape, not a useful one).
//! #[derive(Debug, Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! #[schemars(crate = "streampub_core::plugin::schemars")]
//! struct ThinningConfig {
//!     /// Which byte to drop: every n-th, at least 2.
//!     every: usize,
//! }
//!
//! #[async_trait]
//! impl StageConfig for ThinningConfig {
//!     fn validate(&self, _context: &ComponentContext) -> Result<(), ComponentError> {
//!         if self.every < 2 {
//!             return Err(ComponentError::field("every", "must be at least 2"));
//!         }
//!         Ok(())
//!     }
//!
//!     async fn build(&self, _context: &ComponentContext) -> Result<Box<dyn Stage>, ComponentError> {
//!         Ok(Box::new(Thinning { every: self.every, seen: 0 }))
//!     }
//! }
//!
//! struct Thinning {
//!     every: usize,
//!     seen: usize,
//! }
//!
//! impl Stage for Thinning {
//!     fn process_chunk(&mut self, chunk: Bytes, output: &mut StageOutput) -> Result<(), StageError> {
//!         let kept: Vec<u8> = chunk
//!             .iter()
//!             .filter(|_| {
//!                 self.seen += 1;
//!                 self.seen % self.every != 0
//!             })
//!             .copied()
//!             .collect();
//!         output.push_chunk(Bytes::from(kept));
//!         Ok(())
//!     }
//! }
//!
//! register_stage!(ThinningConfig, "thinning", "Drops every n-th byte");
//!
//! # fn main() {
//! link(); // what a binary does for each plugin module it links
//! let registry = Registry::from_inventory().unwrap();
//! let yaml = "pipelines:
//!   - name: demo
//!     source: {type: directory, path: .}
//!     stages: [{type: thinning, every: 1}]
//!     sink: {type: null}
//! ";
//! // This crate registers no source or sink: the file names plugins this example lacks.
//! let error = LoadedConfig::from_yaml(
//!     yaml,
//!     "demo.yaml".as_ref(),
//!     ".".as_ref(),
//!     &Default::default(),
//!     &registry,
//! )
//! .unwrap_err();
//! assert!(error.to_string().contains("directory"), "{error}");
//! assert!(registry.iter().any(|plugin| plugin.name == "thinning"));
//! # }
//! ```

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use schemars::{self, JsonSchema};
pub use tokio_util::sync::CancellationToken;

pub use crate::checkpoint::CheckpointFile;
pub use crate::chunk::FileRange;
pub use crate::component::{check_duration, ComponentContext, ComponentError};
pub use crate::durable_file::{replace_file, sync_directory};
pub use crate::filler_source::FillerSource;
pub use crate::fragment::{
    Fragment, FragmentBody, FragmentDelivery, FragmentInfo, FragmentOutcome, MediaSpan, RemoteBody,
};
pub use crate::program::{die_with_parent, find_program};
pub use crate::reconnect::{
    ReconnectPolicy, DEFAULT_MAX_RECONNECT_ATTEMPTS, DEFAULT_MAX_RECONNECT_DELAY,
    DEFAULT_RECONNECT_DELAY,
};
pub use crate::redact::Redactor;
pub use crate::services::Services;
pub use crate::sink::{
    ImpliedStage, Pacing, ResumeFrom, SessionReason, Sink, SinkCapabilities, SinkConfig, SinkError,
};
pub use crate::source::{Source, SourceConfig, SourceError};
pub use crate::stage::{BodyPreparer, Stage, StageConfig, StageError, StageItem, StageOutput};
pub use crate::units::{ByteSize, HumanDuration};
pub use crate::{register_sink, register_source, register_stage};
