//! A parsed YAML value that remembers where each part stood in the file.
//!
//! Plugin configs are only known after `type` has been read, so a component's YAML is first kept
//! as a [`ConfigNode`] and then deserialized into the plugin's own config struct. Errors from that
//! second step still carry the line, column and field of the offending value.

use std::fmt;

use serde::de::{self, value::StrDeserializer, IntoDeserializer};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A 1-based line and column in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLocation {
    pub line: u64,
    pub column: u64,
}

impl SourceLocation {
    pub(crate) fn from_saphyr(location: serde_saphyr::Location) -> Option<Self> {
        (location.line() > 0).then(|| Self {
            line: location.line(),
            column: location.column(),
        })
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A YAML value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigNode {
    pub value: NodeValue,
    pub location: Option<SourceLocation>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    String(String),
    Sequence(Vec<ConfigNode>),
    Mapping(Vec<(ConfigKey, ConfigNode)>),
}

/// A mapping key and where it stood.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKey {
    pub name: String,
    pub location: Option<SourceLocation>,
}

impl ConfigNode {
    /// The value written out without locations, keys in file order: two nodes that say the
    /// same thing (wherever they stand in the file) give the same text.
    pub fn canonical(&self) -> String {
        match &self.value {
            NodeValue::Null => "null".to_owned(),
            NodeValue::Bool(value) => value.to_string(),
            NodeValue::Integer(value) => value.to_string(),
            NodeValue::Unsigned(value) => value.to_string(),
            NodeValue::Float(value) => format!("{value:?}"),
            NodeValue::String(value) => format!("{value:?}"),
            NodeValue::Sequence(items) => {
                let items: Vec<String> = items.iter().map(ConfigNode::canonical).collect();
                format!("[{}]", items.join(","))
            }
            NodeValue::Mapping(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(key, value)| format!("{:?}:{}", key.name, value.canonical()))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
        }
    }

    /// A node of `value` (as a plugin writes options in code), every part of it placed at
    /// `location`: errors in it point there.
    pub fn from_json(value: &serde_json::Value, location: Option<SourceLocation>) -> Self {
        let value = match value {
            serde_json::Value::Null => NodeValue::Null,
            serde_json::Value::Bool(value) => NodeValue::Bool(*value),
            serde_json::Value::Number(number) => match (number.as_u64(), number.as_i64()) {
                (Some(value), _) => NodeValue::Unsigned(value),
                (None, Some(value)) => NodeValue::Integer(value),
                _ => NodeValue::Float(number.as_f64().unwrap_or_default()),
            },
            serde_json::Value::String(value) => NodeValue::String(value.clone()),
            serde_json::Value::Array(items) => NodeValue::Sequence(
                items
                    .iter()
                    .map(|item| Self::from_json(item, location))
                    .collect(),
            ),
            serde_json::Value::Object(entries) => NodeValue::Mapping(
                entries
                    .iter()
                    .map(|(name, value)| {
                        let key = ConfigKey {
                            name: name.clone(),
                            location,
                        };
                        (key, Self::from_json(value, location))
                    })
                    .collect(),
            ),
        };
        Self { value, location }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&ConfigNode> {
        self.entries()
            .find(|(entry, _)| entry.name == key)
            .map(|(_, node)| node)
    }

    /// Where `key` stands in this mapping, falling back to the mapping itself.
    pub fn location_of(&self, key: &str) -> Option<SourceLocation> {
        self.entries()
            .find(|(entry, _)| entry.name == key)
            .and_then(|(entry, _)| entry.location)
            .or(self.location)
    }

    /// A copy of this mapping without `key`.
    pub fn without(&self, key: &str) -> ConfigNode {
        let value = match &self.value {
            NodeValue::Mapping(entries) => NodeValue::Mapping(
                entries
                    .iter()
                    .filter(|(entry, _)| entry.name != key)
                    .cloned()
                    .collect(),
            ),
            other => other.clone(),
        };
        ConfigNode {
            value,
            location: self.location,
        }
    }

    /// Deserializes this node into `T`, with errors that name the location and the field.
    pub fn deserialize_into<T: de::DeserializeOwned>(&self) -> Result<T, NodeError> {
        T::deserialize(self)
    }

    fn entries(&self) -> impl Iterator<Item = &(ConfigKey, ConfigNode)> {
        match &self.value {
            NodeValue::Mapping(entries) => entries.iter(),
            _ => [].iter(),
        }
    }

    fn unexpected(&self) -> de::Unexpected<'_> {
        match &self.value {
            NodeValue::Null => de::Unexpected::Unit,
            NodeValue::Bool(value) => de::Unexpected::Bool(*value),
            NodeValue::Integer(value) => de::Unexpected::Signed(*value),
            NodeValue::Unsigned(value) => de::Unexpected::Unsigned(*value),
            NodeValue::Float(value) => de::Unexpected::Float(*value),
            NodeValue::String(value) => de::Unexpected::Str(value),
            NodeValue::Sequence(_) => de::Unexpected::Seq,
            NodeValue::Mapping(_) => de::Unexpected::Map,
        }
    }
}

impl<'de> Deserialize<'de> for ConfigNode {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        Ok(ConfigNode {
            value: spanned.value,
            location: SourceLocation::from_saphyr(spanned.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeValueVisitor)
    }
}

struct NodeValueVisitor;

impl<'de> de::Visitor<'de> for NodeValueVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, inner: D) -> Result<NodeValue, D::Error> {
        inner.deserialize_any(self)
    }

    fn visit_bool<E>(self, value: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Integer(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Unsigned(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(value))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<ConfigNode>()? {
            items.push(item);
        }
        Ok(NodeValue::Sequence(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<ConfigNode>()?;
            let key = ConfigKey {
                name: key.value,
                location: SourceLocation::from_saphyr(key.referenced),
            };
            entries.push((key, value));
        }
        Ok(NodeValue::Mapping(entries))
    }
}

/// An error from deserializing a [`ConfigNode`]: what is wrong, where, and in which field.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    pub message: String,
    pub location: Option<SourceLocation>,
    /// Field names from the node that was deserialized down to the offending value.
    pub field_path: Vec<String>,
}

impl NodeError {
    fn at(mut self, location: Option<SourceLocation>) -> Self {
        if self.location.is_none() {
            self.location = location;
        }
        self
    }

    fn within(mut self, field: &str) -> Self {
        self.field_path.insert(0, field.to_owned());
        self
    }

    /// The field path joined with dots, e.g. `reconnect.delay`.
    pub fn field(&self) -> Option<String> {
        (!self.field_path.is_empty()).then(|| self.field_path.join("."))
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        NodeError {
            message: message.to_string(),
            location: None,
            field_path: Vec::new(),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(unknown_field_message(field, expected))
    }
}

/// `unknown field `x` (did you mean `y`?); valid fields: …`.
pub(crate) fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    let mut message = format!("unknown field `{field}`");
    if let Some(suggestion) = closest_name(field, expected.iter().copied()) {
        message.push_str(&format!(" (did you mean `{suggestion}`?)"));
    }
    if !expected.is_empty() {
        message.push_str(&format!("; valid fields: {}", expected.join(", ")));
    }
    message
}

impl NodeError {
    /// Completes serde's bare "unknown field `x`", which a config with flattened option groups
    /// gets instead of [`de::Error::unknown_field`], with the location of `x` in `node`, a
    /// suggestion and the valid fields.
    pub(crate) fn explain_unknown_field(mut self, node: &ConfigNode, expected: &[&str]) -> Self {
        let field = self
            .message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.strip_suffix('`'));
        if let Some(field) = field {
            let field = field.to_owned();
            self.message = unknown_field_message(&field, expected);
            self.location = node.location_of(&field);
            self.field_path = vec![field];
        }
        self
    }
}

/// Deserializer methods that read a string node holding a number or boolean as that value, and
/// everything else as `deserialize_any` would.
macro_rules! scalar_from_string {
    ($($method:ident => $visit:ident: $type:ty,)*) => {
        $(
            fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
                if let NodeValue::String(text) = &self.value {
                    if let Ok(value) = text.parse::<$type>() {
                        return visitor
                            .$visit(value)
                            .map_err(|error: NodeError| error.at(self.location));
                    }
                }
                de::Deserializer::deserialize_any(self, visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for &'de ConfigNode {
    type Error = NodeError;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        let result = match &self.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(value) => visitor.visit_bool(*value),
            NodeValue::Integer(value) => visitor.visit_i64(*value),
            NodeValue::Unsigned(value) => visitor.visit_u64(*value),
            NodeValue::Float(value) => visitor.visit_f64(*value),
            NodeValue::String(value) => visitor.visit_borrowed_str(value),
            NodeValue::Sequence(items) => visitor.visit_seq(SequenceAccess {
                items: items.iter().enumerate(),
            }),
            NodeValue::Mapping(entries) => visitor.visit_map(MappingAccess {
                entries: entries.iter(),
                current: None,
            }),
        };
        result.map_err(|error| error.at(self.location))
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.value {
            NodeValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        let NodeValue::String(variant) = &self.value else {
            let error: NodeError = de::Error::invalid_type(self.unexpected(), &"a string");
            return Err(error.at(self.location));
        };
        let deserializer: StrDeserializer<'_, NodeError> = variant.as_str().into_deserializer();
        deserializer
            .deserialize_enum("", variants, visitor)
            .map_err(|error| {
                let mut error = error.at(self.location);
                if let Some(suggestion) = closest_name(variant, variants.iter().copied()) {
                    error
                        .message
                        .push_str(&format!(" (did you mean `{suggestion}`?)"));
                }
                error
            })
    }

    // A number or boolean may come as a string: `${PORT}` in a pipeline file is replaced after
    // parsing, so its value is a string whatever it looks like.
    scalar_from_string! {
        deserialize_bool => visit_bool: bool,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SequenceAccess<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, ConfigNode>>,
}

impl<'de> de::SeqAccess<'de> for SequenceAccess<'de> {
    type Error = NodeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        match self.items.next() {
            Some((index, item)) => seed
                .deserialize(item)
                .map(Some)
                .map_err(|error| error.within(&format!("[{index}]")).at(item.location)),
            None => Ok(None),
        }
    }
}

struct MappingAccess<'a> {
    entries: std::slice::Iter<'a, (ConfigKey, ConfigNode)>,
    current: Option<&'a (ConfigKey, ConfigNode)>,
}

impl<'de> de::MapAccess<'de> for MappingAccess<'de> {
    type Error = NodeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let key: StrDeserializer<'_, NodeError> = entry.0.name.as_str().into_deserializer();
        seed.deserialize(key)
            .map(Some)
            .map_err(|error| error.at(entry.0.location))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, NodeError> {
        let (key, value) = self
            .current
            .take()
            .expect("serde calls next_value_seed only after next_key_seed");
        seed.deserialize(value)
            .map_err(|error| error.within(&key.name).at(value.location))
    }
}

/// The candidate closest to `input`, if one is close enough to be a likely typo.
pub fn closest_name<'a>(input: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (strsim::jaro_winkler(input, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        path: String,
        #[serde(default)]
        follow: bool,
        mode: Mode,
        #[serde(default)]
        items: Vec<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Append,
        PerFragment,
    }

    fn parse(yaml: &str) -> ConfigNode {
        serde_saphyr::from_str(yaml).expect("valid yaml")
    }

    #[test]
    fn deserializes_structs_enums_and_sequences() {
        let node = parse("path: /tmp/x\nfollow: true\nmode: per_fragment\nitems: [1, 2]\n");
        let example: Example = node.deserialize_into().unwrap();
        assert_eq!(
            example,
            Example {
                path: "/tmp/x".into(),
                follow: true,
                mode: Mode::PerFragment,
                items: vec![1, 2],
            }
        );
    }

    #[test]
    fn unknown_field_names_its_line_and_suggests() {
        let node = parse("path: /tmp/x\nmode: append\nfolow: true\n");
        let error = node.deserialize_into::<Example>().unwrap_err();
        assert_eq!(error.location.map(|l| l.line), Some(3));
        assert!(error.message.contains("unknown field `folow`"), "{error}");
        assert!(error.message.contains("did you mean `follow`"), "{error}");
    }

    #[test]
    fn wrong_value_names_the_field_and_line() {
        let node = parse("path: /tmp/x\n\nmode: apend\n");
        let error = node.deserialize_into::<Example>().unwrap_err();
        assert_eq!(error.field().as_deref(), Some("mode"));
        assert_eq!(error.location.map(|l| l.line), Some(3));
        assert!(error.message.contains("did you mean `append`"), "{error}");
    }

    #[test]
    fn nested_sequence_errors_name_the_index() {
        let node = parse("path: x\nmode: append\nitems:\n  - 1\n  - nope\n");
        let error = node.deserialize_into::<Example>().unwrap_err();
        assert_eq!(error.field().as_deref(), Some("items.[1]"));
        assert_eq!(error.location.map(|l| l.line), Some(5));
    }
}
