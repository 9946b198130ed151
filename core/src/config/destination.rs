//! A pipeline's destinations: `sink:` (one) or `sinks:` (a list), each a sink with the options
//! the runtime reads beside the sink's own (`name`, `required`, `max_lag`, `stages`), and the
//! stages its sink implies.

use std::path::Path;

use schemars::JsonSchema;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::component_plan::{is_file_name, plan_component, plan_implied_stages, PlannedComponent};
use super::error::ConfigError;
use crate::node::{ConfigNode, NodeValue};
use crate::registry::{OptionDoc, PluginFactory, PluginKind, Registry};
use crate::sink::SinkConfig;
use crate::stage::StageConfig;

/// Default `max_lag`: how many fragments a required destination may fall behind.
pub const DEFAULT_MAX_LAG: usize = 20;
/// Largest `max_lag`: a pipeline's state remembers 256 recent fragments per destination.
pub const MAX_MAX_LAG: usize = 200;

/// The keys of a sink's mapping that the runtime reads; the rest is the sink's own config.
const DESTINATION_KEYS: [&str; 4] = ["name", "required", "max_lag", "stages"];

/// What the runtime reads of each entry of `sinks:` (and of `sink:`), beside the sink's own
/// options.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DestinationOptions {
    /// Names the destination in metrics (`sink` label) and, in a fan-out, in logs (`sink`
    /// field), `/healthz`, `streampub status` and its state file. Default: its `type`, then `<type>-2`,
    /// `<type>-3`, … when the type is repeated.
    #[serde(default)]
    name: Option<String>,
    /// A fragment is acknowledged to the source (checkpoint, `on_done`, an upload's answer)
    /// only once every required destination confirmed it. A destination with `required:
    /// false` never holds anything back: while it is down or slow it skips whole fragments
    /// (counted) and rejoins at the live edge. Default `true`; at least one must be required.
    #[serde(default = "default_required")]
    required: bool,
    /// How many fragments a required destination that is down or slow may have queued to read
    /// from their files (the one it is on not counted); with that many, the others wait for
    /// it (the status says so). 1 to 200, default 20.
    #[serde(default = "default_max_lag")]
    max_lag: usize,
    /// Stages for this destination alone, run after the pipeline's `stages` and before those
    /// its sink implies: `[{type: fmp4-timeline}]` for an MP4 archive beside RTMP
    /// destinations that make FLV tags of the same fragments.
    #[serde(rename = "stages", default)]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    _stages: Option<IgnoredAny>,
}

fn default_required() -> bool {
    true
}

fn default_max_lag() -> usize {
    DEFAULT_MAX_LAG
}

/// The options every destination takes beside its sink's, for `streampub plugins`.
pub fn destination_options() -> Vec<OptionDoc> {
    OptionDoc::from_schema(&schemars::schema_for!(DestinationOptions))
}

/// One destination of a pipeline, ready to validate and build.
#[derive(Debug)]
pub struct Destination {
    /// Unique in its pipeline.
    pub name: String,
    pub required: bool,
    pub max_lag: usize,
    /// What the file says of this destination: a reload restarts a destination whose
    /// fingerprint changed, and only it.
    pub fingerprint: String,
    pub sink: PlannedComponent<dyn SinkConfig>,
    /// Its own `stages`, then those its sink needs that neither the pipeline nor it lists.
    pub stages: Vec<PlannedComponent<dyn StageConfig>>,
}

/// Reads `sink:` or `sinks:` of the pipeline `node`.
pub(super) fn plan_destinations(
    node: &ConfigNode,
    listed: &[PlannedComponent<dyn StageConfig>],
    path: &Path,
    registry: &Registry,
    pipeline: &str,
) -> Result<Vec<Destination>, ConfigError> {
    let error = |message: &str, field: &str| {
        ConfigError::new(path, message)
            .at(node.location_of(field))
            .in_pipeline(pipeline)
            .field(field)
    };
    let entries: Vec<(String, &ConfigNode)> = match (node.get("sink"), node.get("sinks")) {
        (Some(_), Some(_)) => {
            return Err(error(
                "give either `sink:` (one destination) or `sinks:` (a list), not both",
                "sinks",
            ))
        }
        (None, None) => {
            return Err(error(
                "a pipeline needs `sink:` (one destination) or `sinks:` (a list of them)",
                "sink",
            ))
        }
        (Some(sink), None) => vec![("sink".to_owned(), sink)],
        (None, Some(sinks)) => match &sinks.value {
            NodeValue::Sequence(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(index, item)| (format!("sinks[{index}]"), item))
                .collect(),
            _ => {
                return Err(error(
                    "must be a list of sinks, each `{type: …, name: …}`",
                    "sinks",
                ))
            }
        },
    };
    let mut destinations: Vec<Destination> = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for (role, entry) in entries {
        match plan_destination(&role, entry, listed, path, registry, pipeline) {
            Ok(destination) => destinations.push(destination),
            Err(error) => errors.push(error),
        }
    }
    ConfigError::all(errors)?;
    name_destinations(&mut destinations, path, pipeline)?;
    if !destinations.iter().any(|destination| destination.required) {
        return Err(error(
            "at least one destination must be `required: true`: a fragment is acknowledged to \
             the source once the required destinations confirmed it",
            "sinks",
        ));
    }
    Ok(destinations)
}

fn plan_destination(
    role: &str,
    entry: &ConfigNode,
    listed: &[PlannedComponent<dyn StageConfig>],
    path: &Path,
    registry: &Registry,
    pipeline: &str,
) -> Result<Destination, ConfigError> {
    let (options, sink_node) = entry.partition(&DESTINATION_KEYS);
    let options: DestinationOptions = options.deserialize_into().map_err(|node_error| {
        ConfigError::from_node(path, node_error)
            .in_pipeline(pipeline)
            .in_component(role.to_owned())
    })?;
    if !(1..=MAX_MAX_LAG).contains(&options.max_lag) {
        return Err(
            ConfigError::new(path, format!("must be from 1 to {MAX_MAX_LAG} fragments"))
                .at(entry.location_of("max_lag"))
                .in_pipeline(pipeline)
                .in_component(role.to_owned())
                .field("max_lag"),
        );
    }
    let sink = plan_component(
        role,
        &sink_node,
        path,
        registry,
        pipeline,
        (PluginKind::Sink, PluginFactory::sink),
    )?;
    let mut stages = match entry.get("stages").map(|stages| &stages.value) {
        Some(NodeValue::Sequence(stages)) => stages
            .iter()
            .enumerate()
            .map(|(index, stage)| {
                plan_component(
                    &format!("{role}.stages[{index}]"),
                    stage,
                    path,
                    registry,
                    pipeline,
                    (PluginKind::Stage, PluginFactory::stage),
                )
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(NodeValue::Null) | None => Vec::new(),
        Some(_) => {
            return Err(ConfigError::new(path, "must be a list of stages")
                .at(entry.location_of("stages"))
                .in_pipeline(pipeline)
                .in_component(role.to_owned())
                .field("stages"))
        }
    };
    let listed: Vec<&PlannedComponent<dyn StageConfig>> = listed.iter().chain(&stages).collect();
    let implied = plan_implied_stages(&sink, &listed, path, registry, pipeline)?;
    stages.extend(implied);
    Ok(Destination {
        name: options.name.unwrap_or_default(),
        required: options.required,
        max_lag: options.max_lag,
        fingerprint: entry.canonical(),
        sink,
        stages,
    })
}

/// Gives unnamed destinations their default names and checks that names are unique and can
/// name a file.
fn name_destinations(
    destinations: &mut [Destination],
    path: &Path,
    pipeline: &str,
) -> Result<(), ConfigError> {
    let error = |destination: &Destination, message: String| {
        ConfigError::new(path, message)
            .at(destination.sink.node.location_of("name"))
            .in_pipeline(pipeline)
            .in_component(destination.sink.describe())
            .field("name")
    };
    for destination in destinations.iter() {
        let name = &destination.name;
        if !name.is_empty() && !is_file_name(name) {
            let message = format!(
                "`{name}`: a destination name may use letters, digits, `-`, `_` and `.` (it \
                 names a state file and metrics)"
            );
            return Err(error(destination, message));
        }
    }
    for (index, destination) in destinations.iter().enumerate() {
        let name = &destination.name;
        if !name.is_empty()
            && destinations[..index]
                .iter()
                .any(|other| other.name == *name)
        {
            let message = format!(
                "`{name}` names two destinations of this pipeline; give each its own `name`"
            );
            return Err(error(destination, message));
        }
    }
    let mut taken: Vec<String> = destinations
        .iter()
        .map(|destination| destination.name.clone())
        .filter(|name| !name.is_empty())
        .collect();
    for destination in destinations
        .iter_mut()
        .filter(|destination| destination.name.is_empty())
    {
        let type_name = &destination.sink.type_name;
        let name = (1..)
            .map(|number| match number {
                1 => type_name.clone(),
                number => format!("{type_name}-{number}"),
            })
            .find(|candidate| !taken.contains(candidate))
            .expect("an unbounded range finds a free name");
        taken.push(name.clone());
        destination.name = name;
    }
    Ok(())
}
