//! The pipeline file: parsing, `${VAR}` substitution, plugin lookup and validation.
//!
//! Loading goes in three steps, each with errors that name the file, line, pipeline, component
//! and field:
//! 1. the YAML is parsed into a [`ConfigNode`] tree (syntax errors, missing variables);
//! 2. the top level and each pipeline's own options are deserialized from it;
//! 3. each component's `type` selects a registered plugin, which deserializes the rest of the
//!    component's mapping into its own config struct.
//!
//! Validation ([`LoadedConfig::validate`]) then asks every plugin to check its environment
//! without side effects.

mod component_plan;
mod destination;
mod error;
mod plan;
mod variables;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::IgnoredAny;
use serde::Deserialize;

pub use self::component_plan::PlannedComponent;
pub use self::destination::{destination_options, Destination};
pub use self::error::{ConfigError, ConfigErrorDetails};
use self::plan::plan_pipeline;
pub use self::plan::{pipeline_options, PipelinePlan};
use crate::component::{check_duration, ComponentContext, ComponentError};
use crate::node::{ConfigNode, NodeValue};
use crate::registry::{OptionDoc, Registry};
use crate::services::Services;
use crate::units::HumanDuration;

/// Default `shutdown_timeout`: how long the fragment in flight may take to finish on shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);

/// The top level of a pipeline file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    /// Where sources and sinks keep what must survive a restart (checkpoints, the spool, the
    /// pipeline state), one directory per pipeline; relative to the file's directory.
    #[serde(default)]
    state_dir: Option<PathBuf>,
    /// How long the fragment in flight may take to finish after a stop signal.
    #[serde(default = "default_shutdown_timeout")]
    shutdown_timeout: HumanDuration,
    /// Serve `/metrics` and `/healthz` for every pipeline: `{listen: 127.0.0.1:9090}`.
    #[serde(default)]
    metrics: Option<MetricsOptions>,
    /// The pipelines: a list, each with `name`, `source`, optional `stages` and `sink`.
    #[serde(rename = "pipelines")]
    #[schemars(with = "Vec<serde_json::Value>")]
    _pipelines: IgnoredAny,
}

/// Top-level `metrics`: where `streampub run` serves `/metrics` and `/healthz`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsOptions {
    /// An IP address and port to listen on, e.g. `127.0.0.1:9090`.
    #[schemars(with = "String")]
    pub listen: SocketAddr,
}

fn default_shutdown_timeout() -> HumanDuration {
    DEFAULT_SHUTDOWN_TIMEOUT
}

/// The options of a pipeline file's top level, for `streampub plugins`.
pub fn top_level_options() -> Vec<OptionDoc> {
    OptionDoc::from_schema(&schemars::schema_for!(FileOptions))
}

/// A loaded pipeline file: every plugin found and its config parsed.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The file, for messages.
    pub path: PathBuf,
    /// Relative paths resolve against this directory (the file's own).
    pub base_dir: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub shutdown_timeout: HumanDuration,
    pub metrics: Option<MetricsOptions>,
    pub pipelines: Vec<PipelinePlan>,
}

impl LoadedConfig {
    /// Reads and parses a pipeline file; `${VAR}` in string values comes from the environment.
    pub fn from_file(path: &Path, registry: &Registry) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(path, format!("cannot read the pipeline file: {error}"))
        })?;
        // An empty base (a file in the working directory) leaves relative paths as written.
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_yaml(
            &text,
            path,
            &base_dir,
            &std::env::vars().collect(),
            registry,
        )
    }

    /// Parses pipeline YAML. `path` names it in messages; relative paths resolve against
    /// `base_dir`; `variables` replace `${VAR}`.
    pub fn from_yaml(
        text: &str,
        path: &Path,
        base_dir: &Path,
        variables: &HashMap<String, String>,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        // YAML 1.2 booleans: only `true` and `false`, so that `continuity: off` is the word.
        let mut options = serde_saphyr::options::Options::default();
        options.strict_booleans = true;
        let mut root: ConfigNode = serde_saphyr::from_str_with_options(text, options)
            .map_err(|error| ConfigError::from_yaml(path, &error))?;
        variables::substitute(&mut root, variables)
            .map_err(|error| ConfigError::new(path, error.message).at(error.location))?;
        if matches!(root.value, NodeValue::Null) {
            return Err(ConfigError::new(
                path,
                "the file is empty; it needs a `pipelines:` list (see examples/quickstart.yaml)",
            ));
        }
        let file: FileOptions = root
            .deserialize_into()
            .map_err(|error| ConfigError::from_node(path, error))?;
        check_duration("shutdown_timeout", file.shutdown_timeout, true).map_err(|error| {
            ConfigError::new(path, error.message)
                .at(root.location_of("shutdown_timeout"))
                .field("shutdown_timeout")
        })?;

        let Some(NodeValue::Sequence(pipeline_nodes)) = root.get("pipelines").map(|n| &n.value)
        else {
            return Err(
                ConfigError::new(path, "`pipelines` must be a list of pipelines")
                    .at(root.location_of("pipelines")),
            );
        };
        if pipeline_nodes.is_empty() {
            return Err(
                ConfigError::new(path, "`pipelines` is empty; add at least one pipeline")
                    .at(root.location_of("pipelines")),
            );
        }
        // Every pipeline is read, so that one run names every problem.
        let mut names = HashSet::new();
        let mut pipelines = Vec::with_capacity(pipeline_nodes.len());
        let mut errors = Vec::new();
        for node in pipeline_nodes {
            let pipeline = match plan_pipeline(node, path, registry) {
                Ok(pipeline) => pipeline,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            if !names.insert(pipeline.name.clone()) {
                errors.push(
                    ConfigError::new(path, "two pipelines have this name; names must be unique")
                        .at(node.location_of("name"))
                        .in_pipeline(&pipeline.name)
                        .field("name"),
                );
            }
            pipelines.push(pipeline);
        }
        ConfigError::all(errors)?;
        let state_dir = file.state_dir.map(|dir| base_dir.join(dir));
        for pipeline in &mut pipelines {
            pipeline.fingerprint += &format!(
                "|state_dir={state_dir:?}|shutdown_timeout={}",
                file.shutdown_timeout
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            state_dir,
            shutdown_timeout: file.shutdown_timeout,
            metrics: file.metrics,
            pipelines,
        })
    }

    /// The context a pipeline's components are validated and built with.
    pub fn context(&self, pipeline: &PipelinePlan, services: &Services) -> ComponentContext {
        ComponentContext {
            pipeline: pipeline.name.clone(),
            base_dir: self.base_dir.clone(),
            state_dir: self.state_dir.clone(),
            services: services.clone(),
            fragment_buffer_size: pipeline.fragment_buffer_size,
            sink: None,
        }
    }

    /// Asks every plugin to check its config and environment, without side effects; the
    /// error names every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Services of its own: whatever a plugin makes while validating is dropped here.
        let services = Services::default();
        let mut errors = Vec::new();
        for pipeline in &self.pipelines {
            let context = self.context(pipeline, &services);
            let source = &pipeline.source;
            let results =
                std::iter::once(self.check(pipeline, source, source.config.validate(&context)))
                    .chain(
                        pipeline.stages.iter().map(|stage| {
                            self.check(pipeline, stage, stage.config.validate(&context))
                        }),
                    )
                    .chain(pipeline.destinations.iter().flat_map(|destination| {
                        let implied = destination.stages.iter().map(|stage| {
                            self.check(pipeline, stage, stage.config.validate(&context))
                        });
                        let sink = &destination.sink;
                        implied.chain(std::iter::once(self.check(
                            pipeline,
                            sink,
                            sink.config.validate(&context),
                        )))
                    }));
            errors.extend(results.filter_map(Result::err));
        }
        ConfigError::all(errors)
    }

    /// Turns a plugin's error into a config error that says where it is.
    pub fn check<T: ?Sized, V>(
        &self,
        pipeline: &PipelinePlan,
        component: &PlannedComponent<T>,
        result: Result<V, ComponentError>,
    ) -> Result<V, ConfigError> {
        result.map_err(|error| {
            let location = match &error.field {
                Some(field) => component.node.location_of(field),
                None => component.node.location,
            };
            let config_error = ConfigError::new(&self.path, error.message)
                .at(location)
                .in_pipeline(&pipeline.name)
                .in_component(component.describe());
            match error.field {
                Some(field) => config_error.field(&field),
                None => config_error,
            }
        })
    }
}
