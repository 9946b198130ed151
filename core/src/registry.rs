//! The plugin registry: every source, stage and sink registers itself with `inventory`, through
//! `register_source!`, `register_stage!` or `register_sink!` (see [`crate::plugin`]).
//!
//! `inventory` only sees plugins of crates that are linked into the binary, so a binary must
//! reference every crate whose plugins it wants (the built-in crates expose a `link()` function
//! for that).

use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::node::{closest_name, ConfigNode, NodeError};
use crate::sink::SinkConfig;
use crate::source::SourceConfig;
use crate::stage::StageConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
/// What a plugin is: where in a pipeline it goes.
pub enum PluginKind {
    /// Where fragments come from.
    Source,
    /// What rewrites them on their way.
    Stage,
    /// Where they go.
    Sink,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Stage => "stage",
            Self::Sink => "sink",
        })
    }
}

/// Deserializes a component's mapping (without `type`) into a plugin's config.
pub type ParseFn<T> = fn(&ConfigNode) -> Result<Box<T>, NodeError>;

/// How a plugin turns its YAML into its config.
#[derive(Clone, Copy)]
pub enum PluginFactory {
    Source(ParseFn<dyn SourceConfig>),
    Stage(ParseFn<dyn StageConfig>),
    Sink(ParseFn<dyn SinkConfig>),
}

impl PluginFactory {
    pub fn source(self) -> Option<ParseFn<dyn SourceConfig>> {
        match self {
            Self::Source(parse) => Some(parse),
            _ => None,
        }
    }

    pub fn stage(self) -> Option<ParseFn<dyn StageConfig>> {
        match self {
            Self::Stage(parse) => Some(parse),
            _ => None,
        }
    }

    pub fn sink(self) -> Option<ParseFn<dyn SinkConfig>> {
        match self {
            Self::Sink(parse) => Some(parse),
            _ => None,
        }
    }

    pub fn kind(self) -> PluginKind {
        match self {
            Self::Source(_) => PluginKind::Source,
            Self::Stage(_) => PluginKind::Stage,
            Self::Sink(_) => PluginKind::Sink,
        }
    }
}

/// One registered plugin.
pub struct PluginRegistration {
    /// The `type` that selects it in YAML.
    pub name: &'static str,
    /// One line for `streampub plugins`.
    pub summary: &'static str,
    /// Parses its config from its mapping in a pipeline file.
    pub factory: PluginFactory,
    /// The JSON schema of its options; their `///` docs are the option reference.
    pub options_schema: fn() -> Schema,
}

inventory::collect!(PluginRegistration);

fn schema_of<C: JsonSchema>() -> Schema {
    SchemaGenerator::default().into_root_schema_for::<C>()
}

fn parse_source<C: SourceConfig + DeserializeOwned + 'static>(
    node: &ConfigNode,
) -> Result<Box<dyn SourceConfig>, NodeError> {
    Ok(Box::new(node.deserialize_into::<C>()?))
}

fn parse_stage<C: StageConfig + DeserializeOwned + 'static>(
    node: &ConfigNode,
) -> Result<Box<dyn StageConfig>, NodeError> {
    Ok(Box::new(node.deserialize_into::<C>()?))
}

fn parse_sink<C: SinkConfig + DeserializeOwned + 'static>(
    node: &ConfigNode,
) -> Result<Box<dyn SinkConfig>, NodeError> {
    Ok(Box::new(node.deserialize_into::<C>()?))
}

impl PluginRegistration {
    /// A source whose config is `C` (what `register_source!` submits).
    pub const fn source<C: SourceConfig + DeserializeOwned + JsonSchema + 'static>(
        name: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            name,
            summary,
            factory: PluginFactory::Source(parse_source::<C>),
            options_schema: schema_of::<C>,
        }
    }

    /// A stage whose config is `C` (what `register_stage!` submits).
    pub const fn stage<C: StageConfig + DeserializeOwned + JsonSchema + 'static>(
        name: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            name,
            summary,
            factory: PluginFactory::Stage(parse_stage::<C>),
            options_schema: schema_of::<C>,
        }
    }

    /// A sink whose config is `C` (what `register_sink!` submits).
    pub const fn sink<C: SinkConfig + DeserializeOwned + JsonSchema + 'static>(
        name: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            name,
            summary,
            factory: PluginFactory::Sink(parse_sink::<C>),
            options_schema: schema_of::<C>,
        }
    }

    /// Whether it is a source, a stage or a sink.
    pub fn kind(&self) -> PluginKind {
        self.factory.kind()
    }

    /// The plugin's options, from its config's schema, in declaration order.
    pub fn options(&self) -> Vec<OptionDoc> {
        OptionDoc::from_schema(&(self.options_schema)())
    }
}

/// One option of a plugin, for `streampub plugins`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionDoc {
    /// The option's key in the component's mapping.
    pub name: String,
    /// A short type: `string`, `boolean`, `ByteSize`, `keep | delete | move`, ...
    #[serde(rename = "type")]
    pub value_type: String,
    /// Whether a pipeline file must give it.
    pub required: bool,
    /// Its value when the file does not give it, where it has one.
    pub default: Option<serde_json::Value>,
    /// Its `///` doc.
    pub description: String,
    /// The options inside an option that is itself a set of options (`metrics: {listen: …}`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionDoc>,
}

impl OptionDoc {
    pub(crate) fn from_schema(schema: &Schema) -> Vec<OptionDoc> {
        let root = schema.as_value();
        Self::from_object(root, root)
    }

    /// The options of `object`, a schema with `properties`; `root` holds the `$defs` its
    /// references point to.
    fn from_object(root: &serde_json::Value, object: &serde_json::Value) -> Vec<OptionDoc> {
        let required: Vec<&str> = object["required"]
            .as_array()
            .map(|names| names.iter().filter_map(|name| name.as_str()).collect())
            .unwrap_or_default();
        let Some(properties) = object["properties"].as_object() else {
            return Vec::new();
        };
        properties
            .iter()
            .map(|(name, property)| OptionDoc {
                name: name.clone(),
                value_type: describe_type(root, property),
                required: required.contains(&name.as_str()),
                default: property
                    .get("default")
                    .filter(|value| !value.is_null())
                    .cloned(),
                description: property["description"]
                    .as_str()
                    .or_else(|| resolve(root, property)["description"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                options: Self::from_object(root, nested_object(root, property)),
            })
            .collect()
    }
}

/// The set of options an option holds: its definition when that has `properties`, also when
/// it is optional (`anyOf` of it and `null`); `null` otherwise.
fn nested_object<'a>(
    root: &'a serde_json::Value,
    property: &'a serde_json::Value,
) -> &'a serde_json::Value {
    let alternatives = property["anyOf"].as_array().into_iter().flatten();
    std::iter::once(property)
        .chain(alternatives)
        .map(|candidate| resolve(root, candidate))
        .find(|candidate| candidate["properties"].is_object())
        .unwrap_or(&serde_json::Value::Null)
}

/// Follows a local `$ref` (`#/$defs/Name`) to its definition.
fn resolve<'a>(
    root: &'a serde_json::Value,
    property: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match property["$ref"].as_str() {
        Some(reference) => reference
            .strip_prefix("#/")
            .map(|path| path.split('/').fold(root, |node, part| &node[part]))
            .unwrap_or(property),
        None => property,
    }
}

fn describe_type(root: &serde_json::Value, property: &serde_json::Value) -> String {
    if let Some(reference) = property["$ref"].as_str() {
        let definition = resolve(root, property);
        return enum_values(definition)
            .unwrap_or_else(|| reference.rsplit('/').next().unwrap_or(reference).to_owned());
    }
    if let Some(values) = enum_values(property) {
        return values;
    }
    let alternatives = property["anyOf"]
        .as_array()
        .or(property["oneOf"].as_array());
    if let Some(alternatives) = alternatives {
        let types: Vec<String> = alternatives
            .iter()
            .filter(|alternative| alternative["type"] != "null")
            .map(|alternative| describe_type(root, alternative))
            .collect();
        return types.join(" | ");
    }
    match &property["type"] {
        serde_json::Value::String(name) if name == "array" => {
            format!("list of {}", describe_type(root, &property["items"]))
        }
        serde_json::Value::String(name) => name.clone(),
        serde_json::Value::Array(names) => names
            .iter()
            .filter_map(|name| name.as_str())
            .filter(|name| *name != "null")
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    }
}

/// `a | b | c` for an enum of strings, whether written as `enum` or as `oneOf` of constants
/// (schemars uses the latter when the variants have docs).
fn enum_values(schema: &serde_json::Value) -> Option<String> {
    let values: Vec<&str> = match (schema["enum"].as_array(), schema["oneOf"].as_array()) {
        (Some(values), _) => values.iter().filter_map(|value| value.as_str()).collect(),
        (None, Some(variants)) => variants
            .iter()
            .map(|variant| variant["const"].as_str().or(variant["enum"][0].as_str()))
            .collect::<Option<_>>()?,
        (None, None) => return None,
    };
    (!values.is_empty()).then(|| values.join(" | "))
}

/// The registered plugins, checked for duplicate names.
pub struct Registry {
    plugins: BTreeMap<(PluginKind, &'static str), &'static PluginRegistration>,
}

/// Registry failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("two {kind} plugins are registered as `{name}`; plugin names must be unique per kind")]
    /// Two plugins of one kind share a name.
    Duplicate {
        /// Their kind.
        kind: PluginKind,
        /// The name they share.
        name: &'static str,
    },
}

/// A `type` that no plugin of that kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlugin {
    pub kind: PluginKind,
    pub name: String,
    pub available: Vec<&'static str>,
    pub suggestion: Option<&'static str>,
}

impl fmt::Display for UnknownPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} type `{}`", self.kind, self.name)?;
        if let Some(suggestion) = self.suggestion {
            write!(f, " (did you mean `{suggestion}`?)")?;
        }
        write!(
            f,
            "; available {} types: {}",
            self.kind,
            self.available.join(", ")
        )
    }
}

impl Registry {
    /// Collects every plugin linked into this binary.
    pub fn from_inventory() -> Result<Self, RegistryError> {
        Self::from_registrations(inventory::iter::<PluginRegistration>)
    }

    fn from_registrations(
        registrations: impl IntoIterator<Item = &'static PluginRegistration>,
    ) -> Result<Self, RegistryError> {
        let mut plugins = BTreeMap::new();
        for registration in registrations {
            let key = (registration.kind(), registration.name);
            if plugins.insert(key, registration).is_some() {
                return Err(RegistryError::Duplicate {
                    kind: key.0,
                    name: key.1,
                });
            }
        }
        Ok(Self { plugins })
    }

    /// The plugin of `kind` called `name`, or what there is instead.
    pub fn get(
        &self,
        kind: PluginKind,
        name: &str,
    ) -> Result<&'static PluginRegistration, UnknownPlugin> {
        if let Some(registration) = self.plugins.get(&(kind, name)) {
            return Ok(registration);
        }
        let available: Vec<&'static str> = self.names(kind).collect();
        Err(UnknownPlugin {
            kind,
            name: name.to_owned(),
            suggestion: closest_name(name, available.iter().copied()),
            available,
        })
    }

    /// The names of the plugins of `kind`, in order.
    pub fn names(&self, kind: PluginKind) -> impl Iterator<Item = &'static str> + '_ {
        self.plugins
            .keys()
            .filter(move |(plugin_kind, _)| *plugin_kind == kind)
            .map(|(_, name)| *name)
    }

    /// Every plugin, sources first, then stages, then sinks, each by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static PluginRegistration> + '_ {
        self.plugins.values().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{ComponentContext, ComponentError};
    use crate::sink::Sink;
    use async_trait::async_trait;
    use serde::Deserialize;

    /// A do-nothing sink config for registry tests.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only its schema is used
    struct ProbeConfig {
        /// Where it goes.
        path: String,
        /// How many.
        #[serde(default)]
        count: Option<u32>,
    }

    #[async_trait]
    impl SinkConfig for ProbeConfig {
        fn validate(&self, _: &ComponentContext) -> Result<(), ComponentError> {
            Ok(())
        }
        async fn build(&self, _: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
            Err(ComponentError::new("not buildable"))
        }
    }

    static PROBE: PluginRegistration = PluginRegistration::sink::<ProbeConfig>("probe", "test");
    static PROBE_AGAIN: PluginRegistration =
        PluginRegistration::sink::<ProbeConfig>("probe", "test");
    static PROBE_SOURCE_NAME: PluginRegistration =
        PluginRegistration::sink::<ProbeConfig>("prob", "test");

    #[test]
    fn duplicate_names_are_rejected() {
        let error = Registry::from_registrations([&PROBE, &PROBE_AGAIN])
            .err()
            .expect("duplicate must fail");
        assert_eq!(
            error,
            RegistryError::Duplicate {
                kind: PluginKind::Sink,
                name: "probe"
            }
        );
    }

    #[test]
    fn unknown_type_lists_the_available_ones_with_a_suggestion() {
        let registry = Registry::from_registrations([&PROBE, &PROBE_SOURCE_NAME]).unwrap();
        let error = registry
            .get(PluginKind::Sink, "probee")
            .err()
            .expect("unknown");
        let text = error.to_string();
        assert!(text.contains("did you mean `probe`"), "{text}");
        assert!(text.contains("available sink types: prob, probe"), "{text}");
        assert!(registry.get(PluginKind::Source, "probe").is_err());
    }

    #[test]
    fn options_come_from_the_config_docs() {
        let options = PROBE.options();
        assert_eq!(options[0].name, "path");
        assert_eq!(options[0].value_type, "string");
        assert!(options[0].required);
        assert_eq!(options[0].description, "Where it goes.");
        assert_eq!(options[1].name, "count");
        assert!(!options[1].required);
    }
}
