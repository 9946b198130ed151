//! Planning one pipeline of the file: its own options, then each component's plugin found by
//! its `type` and its config parsed, then its destinations (`destination.rs`).

use std::path::Path;

use schemars::JsonSchema;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::component_plan::{is_file_name, plan_component, PlannedComponent};
use super::destination::{plan_destinations, Destination};
use super::error::ConfigError;
use crate::chunk::{ChunkSize, AUTO_CHUNK_MIN};
use crate::component::DEFAULT_FRAGMENT_BUFFER_SIZE;
use crate::node::{ConfigNode, NodeValue};
use crate::registry::{OptionDoc, PluginFactory, PluginKind, Registry};
use crate::source::SourceConfig;
use crate::stage::StageConfig;
use crate::units::ByteSize;

/// Default `chunk_size`: 256 KiB.
pub const DEFAULT_CHUNK_SIZE: ByteSize = ByteSize::kib(256);
/// Default `max_in_flight`: bytes buffered between source and sink.
pub const DEFAULT_MAX_IN_FLIGHT: ByteSize = ByteSize::mib(1);
/// Default `chunk_size` into a paced sink ([`SinkConfig::paced`]): a 2 Mbit/s stream takes
/// 256 KB a second, and 200 such streams in one process measured 0.85 MiB each above the
/// process's base with these two defaults, 1.8 MiB with the others (BENCHMARKS.md).
pub const PACED_CHUNK_SIZE: ByteSize = ByteSize::kib(64);
/// Default `max_in_flight` into a paced sink.
pub const PACED_MAX_IN_FLIGHT: ByteSize = ByteSize::kib(256);
/// Largest `max_in_flight`: the byte budget is one semaphore permit per byte, taken a chunk at
/// a time in `u32` steps, and it is memory a pipeline may hold.
pub const MAX_MAX_IN_FLIGHT: ByteSize = ByteSize::gib(1);
/// Largest `fragment_buffer_size`.
pub const MAX_FRAGMENT_BUFFER_SIZE: usize = 4096;
/// One pipeline, ready to validate and build.
#[derive(Debug)]
pub struct PipelinePlan {
    pub name: String,
    /// What the file says of this pipeline, without locations (and with the file-level
    /// options that shape every pipeline): equal fingerprints, equal pipelines. A reload
    /// restarts only pipelines whose fingerprint changed.
    pub fingerprint: String,
    /// The fingerprint without the destinations: when only destinations changed, a reload
    /// starts, stops or restarts those and leaves the rest of the pipeline running.
    pub shared_fingerprint: String,
    pub chunk_size: ChunkSize,
    pub max_in_flight: ByteSize,
    pub fragment_buffer_size: usize,
    pub source: PlannedComponent<dyn SourceConfig>,
    /// The stages the pipeline lists, in order; each destination runs its own copy of them
    /// before the stages its sink implies.
    pub stages: Vec<PlannedComponent<dyn StageConfig>>,
    /// Where fragments go: the one of `sink:`, or those of `sinks:`, in order.
    pub destinations: Vec<Destination>,
    /// The file lists `sinks:` (even of one): each destination keeps its state in a file of
    /// its own, so that adding or removing one later keeps the others' state.
    pub sinks_listed: bool,
}

impl PipelinePlan {
    /// Whether fragments go to more than one destination.
    pub fn fans_out(&self) -> bool {
        self.destinations.len() > 1
    }

    /// The stages that act for the whole pipeline (its start line, the work on a body before
    /// it is read): the listed ones, and with one destination its own and implied ones too.
    pub fn pipeline_stages(&self) -> Vec<&PlannedComponent<dyn StageConfig>> {
        match self.fans_out() {
            true => self.stages.iter().collect(),
            false => self
                .stages
                .iter()
                .chain(&self.destinations[0].stages)
                .collect(),
        }
    }
}

/// One pipeline's own options; its components are read separately.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PipelineOptions {
    /// The pipeline's name: unique in the file, used in logs, metrics and state directories.
    name: String,
    /// How much of a fragment is read at a time: a size, or `auto` (grows with the sink's
    /// speed, within `max_in_flight`). Default 256 KiB; 64 KiB into a paced live sink.
    #[serde(default)]
    chunk_size: Option<ChunkSize>,
    /// The most fragment bytes read and not yet taken by the sink (the pipeline's memory).
    /// Default 1 MiB; 256 KiB into a paced live sink.
    #[serde(default)]
    max_in_flight: Option<ByteSize>,
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
    /// Where fragments go: `{type: ffmpeg-rtmp, …}`; see the sinks. Each sink also takes
    /// `name`, `required` and `max_lag` (see "Every destination").
    #[serde(rename = "sink", default)]
    #[schemars(with = "Option<serde_json::Value>")]
    _sink: Option<IgnoredAny>,
    /// Several destinations instead of `sink:`: `[{type: rtmp, name: a, …}, {type: file, …}]`.
    /// Each gets every fragment; one that fails never stalls the others.
    #[serde(rename = "sinks", default)]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    _sinks: Option<IgnoredAny>,
}

/// A pipeline's own options (beside its source, stages and sink), for `streampub plugins`.
pub fn pipeline_options() -> Vec<OptionDoc> {
    OptionDoc::from_schema(&schemars::schema_for!(PipelineOptions))
}

/// `chunk_size` and `max_in_flight` as the file gives them, or their defaults for the sink.
/// The paced defaults apply only where they agree with what the file gives, so that they never
/// make a file invalid that the general defaults accept (nor valid one that they refuse).
fn read_budget(options: &PipelineOptions, paced: bool) -> (ChunkSize, ByteSize) {
    let chunk_size = options.chunk_size.unwrap_or_else(|| {
        let fits = options
            .max_in_flight
            .is_none_or(|budget| PACED_CHUNK_SIZE <= budget);
        ChunkSize::Fixed(match paced && fits {
            true => PACED_CHUNK_SIZE,
            false => DEFAULT_CHUNK_SIZE,
        })
    });
    let max_in_flight = options.max_in_flight.unwrap_or_else(|| {
        let fits = match chunk_size {
            ChunkSize::Fixed(size) => size <= PACED_MAX_IN_FLIGHT,
            ChunkSize::Auto => true,
        };
        match paced && fits {
            true => PACED_MAX_IN_FLIGHT,
            false => DEFAULT_MAX_IN_FLIGHT,
        }
    });
    (chunk_size, max_in_flight)
}

fn default_fragment_buffer_size() -> usize {
    DEFAULT_FRAGMENT_BUFFER_SIZE
}

pub(super) fn plan_pipeline(
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
    if !is_file_name(&options.name) {
        return Err(range_error(
            "name",
            "a pipeline name may use letters, digits, `-`, `_` and `.` (it names state \
             directories, logs and the default stream)",
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
    let stages: Vec<PlannedComponent<dyn StageConfig>> = stages
        .into_iter()
        .filter_map(|stage| keep(stage, &mut errors))
        .collect();
    let destinations = keep(
        plan_destinations(node, &stages, path, registry, pipeline),
        &mut errors,
    );
    ConfigError::all(errors)?;
    let (Some(source), Some(destinations)) = (source, destinations) else {
        unreachable!("a component that was not read is an error");
    };
    let paced = destinations
        .iter()
        .any(|destination| destination.sink.config.paced());
    let (chunk_size, max_in_flight) = read_budget(&options, paced);
    let smallest_budget = match chunk_size {
        ChunkSize::Fixed(size) if size.bytes() == 0 => {
            return Err(range_error("chunk_size", "must be at least 1 byte"));
        }
        ChunkSize::Fixed(size) => size,
        ChunkSize::Auto => ByteSize(AUTO_CHUNK_MIN as u64),
    };
    if max_in_flight < smallest_budget {
        return Err(range_error(
            "max_in_flight",
            &format!(
                "must be at least chunk_size ({smallest_budget}), or no chunk could ever be in flight"
            ),
        ));
    }
    if max_in_flight > MAX_MAX_IN_FLIGHT {
        return Err(range_error(
            "max_in_flight",
            &format!("must be at most {MAX_MAX_IN_FLIGHT}"),
        ));
    }
    Ok(PipelinePlan {
        fingerprint: node.canonical(),
        shared_fingerprint: node.without("sink").without("sinks").canonical(),
        name: options.name,
        chunk_size,
        max_in_flight,
        fragment_buffer_size: options.fragment_buffer_size,
        source,
        stages,
        destinations,
        sinks_listed: node.get("sinks").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(extra: serde_json::Value) -> PipelineOptions {
        let mut options = serde_json::json!({"name": "p", "source": {}, "sink": {}});
        options
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(options).unwrap()
    }

    #[test]
    fn a_paced_sink_reads_smaller_chunks_within_a_smaller_budget_unless_the_file_says() {
        let fixed = |size| ChunkSize::Fixed(size);
        let none = options(serde_json::json!({}));
        assert_eq!(
            read_budget(&none, false),
            (fixed(DEFAULT_CHUNK_SIZE), DEFAULT_MAX_IN_FLIGHT)
        );
        assert_eq!(
            read_budget(&none, true),
            (fixed(PACED_CHUNK_SIZE), PACED_MAX_IN_FLIGHT)
        );
        let given = options(serde_json::json!({"chunk_size": "1MiB", "max_in_flight": "4MiB"}));
        assert_eq!(
            read_budget(&given, true),
            (fixed(ByteSize::mib(1)), ByteSize::mib(4))
        );
        // One given that the paced default of the other contradicts: the general default, as
        // for any sink (a budget below 256 KiB then fails as it always did).
        let chunk = options(serde_json::json!({"chunk_size": "512KiB"}));
        assert_eq!(
            read_budget(&chunk, true),
            (fixed(ByteSize::kib(512)), DEFAULT_MAX_IN_FLIGHT)
        );
        let budget = options(serde_json::json!({"max_in_flight": "32KiB"}));
        assert_eq!(
            read_budget(&budget, true),
            (fixed(DEFAULT_CHUNK_SIZE), ByteSize::kib(32))
        );
        let budget = options(serde_json::json!({"max_in_flight": "128KiB"}));
        assert_eq!(
            read_budget(&budget, true),
            (fixed(PACED_CHUNK_SIZE), ByteSize::kib(128))
        );
    }
}
