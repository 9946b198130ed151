//! Planning one component: finding its plugin by `type` and parsing its options, for the
//! source, the listed stages, each destination's sink and stages, and the stages a sink
//! implies. Both the pipeline's plan and its destinations' use it, so it stands apart from
//! both.

use std::path::Path;

use super::error::ConfigError;
use crate::node::{ConfigNode, NodeValue, SourceLocation};
use crate::registry::{ParseFn, PluginFactory, PluginKind, Registry};
use crate::sink::SinkConfig;
use crate::stage::StageConfig;

/// A component's parsed config and where it stood in the file.
#[derive(Debug)]
pub struct PlannedComponent<T: ?Sized> {
    /// `source`, `sink` or `stages[N]`.
    pub role: String,
    /// The plugin's `type`.
    pub type_name: String,
    pub config: Box<T>,
    pub(crate) node: ConfigNode,
}

impl<T: ?Sized> PlannedComponent<T> {
    /// `sink \`file\``: how errors name the component.
    pub fn describe(&self) -> String {
        format!("{} `{}`", self.role, self.type_name)
    }
}

/// Whether `name` can name a state directory or file: letters, digits, `-`, `_` and `.`, not
/// starting with a dot.
pub(super) fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// Picks the parse function of one plugin kind out of a registration.
type ParserOf<T> = fn(PluginFactory) -> Option<ParseFn<T>>;

/// Finds a component's plugin by its `type` and parses the rest of its mapping with it.
pub(super) fn plan_component<T: ?Sized>(
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
        // YAML reads a bare `null` as no value; `type: null` names the plugin `null`.
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

/// The stages `sink` needs that the pipeline does not list, found in the registry and parsed
/// from the options the sink gives; their errors point at the sink.
pub(super) fn plan_implied_stages(
    sink: &PlannedComponent<dyn SinkConfig>,
    listed: &[&PlannedComponent<dyn StageConfig>],
    path: &Path,
    registry: &Registry,
    pipeline: &str,
) -> Result<Vec<PlannedComponent<dyn StageConfig>>, ConfigError> {
    let mut planned = Vec::new();
    for implied in sink.config.implied_stages() {
        let type_name = implied.type_name;
        if listed.iter().any(|stage| stage.type_name == type_name) {
            continue;
        }
        let role = format!("{}'s implied stage", sink.describe());
        let error = |message: String| {
            ConfigError::new(path, message)
                .at(sink.node.location)
                .in_pipeline(pipeline)
                .in_component(format!("{role} `{type_name}`"))
        };
        let registration = registry
            .get(PluginKind::Stage, type_name)
            .map_err(|unknown| {
                error(format!(
                    "{unknown}; the binary must link the crate that registers it"
                ))
            })?;
        let parse = registration
            .factory
            .stage()
            .expect("registry lookups are by kind");
        let options = ConfigNode::from_json(&implied.options, sink.node.location);
        let config = parse(&options).map_err(|node_error| error(node_error.to_string()))?;
        planned.push(PlannedComponent {
            role,
            type_name: type_name.to_owned(),
            config,
            node: sink.node.clone(),
        });
    }
    Ok(planned)
}
