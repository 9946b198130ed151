//! A parsed YAML value that remembers where each part stood in the file.
//!
//! Plugin configs are only known after `type` has been read, so a component's YAML is first kept
//! as a [`ConfigNode`] and then deserialized into the plugin's own config struct. Errors from that
//! second step still carry the line, column and field of the offending value.

mod deserializer;
mod error;

pub use error::NodeError;

use std::fmt;

use serde::de;
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

    /// This mapping split in two: the entries under `keys`, and the rest.
    pub fn partition(&self, keys: &[&str]) -> (ConfigNode, ConfigNode) {
        let (picked, rest) = match &self.value {
            NodeValue::Mapping(entries) => {
                let (picked, rest): (Vec<_>, Vec<_>) = entries
                    .iter()
                    .cloned()
                    .partition(|(entry, _)| keys.contains(&entry.name.as_str()));
                (NodeValue::Mapping(picked), NodeValue::Mapping(rest))
            }
            other => (NodeValue::Mapping(Vec::new()), other.clone()),
        };
        let node = |value| ConfigNode {
            value,
            location: self.location,
        };
        (node(picked), node(rest))
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

/// The candidate closest to `input`, if one is close enough to be a likely typo.
pub fn closest_name<'a>(input: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (strsim::jaro_winkler(input, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests;
