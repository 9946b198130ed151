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

mod error;
mod variables;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::IgnoredAny;
use serde::Deserialize;

pub use self::error::{ConfigError, ConfigErrorDetails};
use crate::chunk::{ChunkSize, AUTO_CHUNK_MIN};
pub use crate::component::DEFAULT_FRAGMENT_BUFFER_SIZE;
use crate::component::{check_duration, ComponentContext, ComponentError};
use crate::node::{ConfigNode, NodeValue, SourceLocation};
use crate::registry::{OptionDoc, ParseFn, PluginFactory, PluginKind, Registry};
use crate::services::Services;
use crate::sink::SinkConfig;
use crate::source::SourceConfig;
use crate::stage::StageConfig;
use crate::units::{ByteSize, HumanDuration};

/// Default `chunk_size`: 256 KiB.
pub const DEFAULT_CHUNK_SIZE: ByteSize = ByteSize::kib(256);
/// Default `max_in_flight`: bytes buffered between source and sink.
pub const DEFAULT_MAX_IN_FLIGHT: ByteSize = ByteSize::mib(1);
/// Largest `max_in_flight`: the byte budget is one semaphore permit per byte, taken a chunk at
/// a time in `u32` steps, and it is memory a pipeline may hold.
pub const MAX_MAX_IN_FLIGHT: ByteSize = ByteSize::gib(1);
/// Largest `fragment_buffer_size`.
pub const MAX_FRAGMENT_BUFFER_SIZE: usize = 4096;
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

/// One pipeline's own options; its components are read separately.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PipelineOptions {
    /// The pipeline's name: unique in the file, used in logs, metrics and state directories.
    name: String,
    /// How much of a fragment is read at a time: a size, or `auto` (grows with the sink's
    /// speed, within `max_in_flight`).
    #[serde(default = "default_chunk_size")]
    chunk_size: ChunkSize,
    /// The most fragment bytes read and not yet taken by the sink (the pipeline's memory).
    #[serde(default = "default_max_in_flight")]
    max_in_flight: ByteSize,
    /// How many fragments the source may queue ahead of the one being read (1 to 4096).
    #[serde(default = "default_fragment_buffer_size")]
    fragment_buffer_size: usize,
    /// Where fragments come from: `{type: directory, …}`; see the sources.
    #[serde(rename = "source")]
    #[schemars(with = "serde_json::Value")]
    _source: IgnoredAny,
    /// Stages that rewrite the fragments on their way, in order: `[{type: …}]`.
    #[serde(rename = "stages", default)]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    _stages: Option<IgnoredAny>,
    /// Where fragments go: `{type: ffmpeg-rtmp, …}`; see the sinks.
    #[serde(rename = "sink")]
    #[schemars(with = "serde_json::Value")]
    _sink: IgnoredAny,
}

/// The options of a pipeline file's top level, for `streampub plugins`.
pub fn top_level_options() -> Vec<OptionDoc> {
    OptionDoc::from_schema(&schemars::schema_for!(FileOptions))
}

/// A pipeline's own options (beside its source, stages and sink), for `streampub plugins`.
pub fn pipeline_options() -> Vec<OptionDoc> {
    OptionDoc::from_schema(&schemars::schema_for!(PipelineOptions))
}

fn default_chunk_size() -> ChunkSize {
    ChunkSize::Fixed(DEFAULT_CHUNK_SIZE)
}

fn default_max_in_flight() -> ByteSize {
    DEFAULT_MAX_IN_FLIGHT
}

fn default_fragment_buffer_size() -> usize {
    DEFAULT_FRAGMENT_BUFFER_SIZE
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

/// One pipeline, ready to validate and build.
#[derive(Debug)]
pub struct PipelinePlan {
    pub name: String,
    /// What the file says of this pipeline, without locations (and with the file-level
    /// options that shape every pipeline): equal fingerprints, equal pipelines. A reload
    /// restarts only pipelines whose fingerprint changed.
    pub fingerprint: String,
    pub chunk_size: ChunkSize,
    pub max_in_flight: ByteSize,
    pub fragment_buffer_size: usize,
    pub source: PlannedComponent<dyn SourceConfig>,
    pub stages: Vec<PlannedComponent<dyn StageConfig>>,
    pub sink: PlannedComponent<dyn SinkConfig>,
}

/// A component's parsed config and where it stood in the file.
#[derive(Debug)]
pub struct PlannedComponent<T: ?Sized> {
    /// `source`, `sink` or `stages[N]`.
    pub role: String,
    /// The plugin's `type`.
    pub type_name: String,
    pub config: Box<T>,
    node: ConfigNode,
}

impl<T: ?Sized> PlannedComponent<T> {
    /// `sink \`file\``: how errors name the component.
    pub fn describe(&self) -> String {
        format!("{} `{}`", self.role, self.type_name)
    }
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
                    .chain(std::iter::once(self.check(
                        pipeline,
                        &pipeline.sink,
                        pipeline.sink.config.validate(&context),
                    )));
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

fn plan_pipeline(
    node: &ConfigNode,
    path: &Path,
    registry: &Registry,
) -> Result<PipelinePlan, ConfigError> {
    let name_hint = node.get("name").and_then(|name| match &name.value {
        NodeValue::String(name) => Some(name.clone()),
        _ => None,
    });
    let in_pipeline = |error: ConfigError| match &name_hint {
        Some(name) => error.in_pipeline(name),
        None => error,
    };
    let options: PipelineOptions = node
        .deserialize_into()
        .map_err(|error| in_pipeline(ConfigError::from_node(path, error)))?;
    let range_error = |field: &str, message: &str| {
        ConfigError::new(path, message)
            .at(node.location_of(field))
            .in_pipeline(&options.name)
            .field(field)
    };
    if options.name.is_empty()
        || !options
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || options.name.starts_with('.')
    {
        return Err(range_error(
            "name",
            "a pipeline name may use letters, digits, `-`, `_` and `.` (it names state \
             directories, logs and the default stream)",
        ));
    }
    let smallest_budget = match options.chunk_size {
        ChunkSize::Fixed(size) if size.bytes() == 0 => {
            return Err(range_error("chunk_size", "must be at least 1 byte"));
        }
        ChunkSize::Fixed(size) => size,
        ChunkSize::Auto => ByteSize(AUTO_CHUNK_MIN as u64),
    };
    if options.max_in_flight < smallest_budget {
        return Err(range_error(
            "max_in_flight",
            &format!(
                "must be at least chunk_size ({smallest_budget}), or no chunk could ever be in flight"
            ),
        ));
    }
    if options.max_in_flight > MAX_MAX_IN_FLIGHT {
        return Err(range_error(
            "max_in_flight",
            &format!("must be at most {MAX_MAX_IN_FLIGHT}"),
        ));
    }
    if !(1..=MAX_FRAGMENT_BUFFER_SIZE).contains(&options.fragment_buffer_size) {
        return Err(range_error(
            "fragment_buffer_size",
            &format!("must be from 1 to {MAX_FRAGMENT_BUFFER_SIZE}"),
        ));
    }

    let pipeline = options.name.as_str();
    let source = node.get("source").expect("required by PipelineOptions");
    let source = plan_component(
        "source",
        source,
        path,
        registry,
        pipeline,
        (PluginKind::Source, PluginFactory::source),
    );
    let sink = node.get("sink").expect("required by PipelineOptions");
    let sink = plan_component(
        "sink",
        sink,
        path,
        registry,
        pipeline,
        (PluginKind::Sink, PluginFactory::sink),
    );
    let stage_nodes = match node.get("stages").map(|stages| &stages.value) {
        Some(NodeValue::Sequence(stages)) => stages.as_slice(),
        Some(NodeValue::Null) | None => &[],
        Some(_) => return Err(range_error("stages", "must be a list of stages")),
    };
    let stages = stage_nodes
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let role = format!("stages[{index}]");
            plan_component(
                &role,
                stage,
                path,
                registry,
                pipeline,
                (PluginKind::Stage, PluginFactory::stage),
            )
        })
        .collect::<Vec<_>>();
    // Every component is read, so that one run names the problems of each.
    fn keep<T>(result: Result<T, ConfigError>, errors: &mut Vec<ConfigError>) -> Option<T> {
        result.map_err(|error| errors.push(error)).ok()
    }
    let mut errors = Vec::new();
    let source = keep(source, &mut errors);
    let sink = keep(sink, &mut errors);
    let stages: Vec<_> = stages
        .into_iter()
        .filter_map(|stage| keep(stage, &mut errors))
        .collect();
    ConfigError::all(errors)?;
    let (Some(source), Some(sink)) = (source, sink) else {
        unreachable!("a component that was not read is an error");
    };

    Ok(PipelinePlan {
        fingerprint: node.canonical(),
        name: options.name,
        chunk_size: options.chunk_size,
        max_in_flight: options.max_in_flight,
        fragment_buffer_size: options.fragment_buffer_size,
        source,
        stages,
        sink,
    })
}

/// Picks the parse function of one plugin kind out of a registration.
type ParserOf<T> = fn(PluginFactory) -> Option<ParseFn<T>>;

/// Finds a component's plugin by its `type` and parses the rest of its mapping with it.
fn plan_component<T: ?Sized>(
    role: &str,
    node: &ConfigNode,
    path: &Path,
    registry: &Registry,
    pipeline: &str,
    (kind, parser): (PluginKind, ParserOf<T>),
) -> Result<PlannedComponent<T>, ConfigError> {
    let error = |message: String, location: Option<SourceLocation>| {
        ConfigError::new(path, message)
            .at(location)
            .in_pipeline(pipeline)
            .in_component(role.to_owned())
    };
    let available = || registry.names(kind).collect::<Vec<_>>().join(", ");
    let type_name = match node.get("type").map(|type_node| &type_node.value) {
        Some(NodeValue::String(name)) => name.clone(),
        // YAML reads a bare `null` as no value; `type: null` means the null sink.
        Some(NodeValue::Null) => "null".to_owned(),
        Some(_) => {
            let message = format!(
                "`type` must be a string; available {kind} types: {}",
                available()
            );
            return Err(error(message, node.location_of("type")).field("type"));
        }
        None if matches!(node.value, NodeValue::Mapping(_)) => {
            let message = format!("missing `type`; available {kind} types: {}", available());
            return Err(error(message, node.location));
        }
        None => {
            let message = format!("a {kind} must be a mapping with a `type`");
            return Err(error(message, node.location));
        }
    };
    let registration = registry
        .get(kind, &type_name)
        .map_err(|unknown| error(unknown.to_string(), node.location_of("type")).field("type"))?;
    let parse = parser(registration.factory).expect("registry lookups are by kind");
    let component = format!("{role} `{type_name}`");
    let config = parse(&node.without("type")).map_err(|node_error| {
        let options = registration.options();
        let names: Vec<&str> = options.iter().map(|option| option.name.as_str()).collect();
        let node_error = node_error.explain_unknown_field(node, &names);
        ConfigError::from_node(path, node_error)
            .in_pipeline(pipeline)
            .in_component(component)
    })?;
    Ok(PlannedComponent {
        role: role.to_owned(),
        type_name,
        config,
        node: node.clone(),
    })
}
