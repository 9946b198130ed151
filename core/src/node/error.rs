//! What went wrong deserializing a [`ConfigNode`], where, and in which field.

use std::fmt;

use serde::de;

use super::{closest_name, ConfigNode, SourceLocation};

/// An error from deserializing a [`ConfigNode`]: what is wrong, where, and in which field.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    pub message: String,
    pub location: Option<SourceLocation>,
    /// Field names from the node that was deserialized down to the offending value.
    pub field_path: Vec<String>,
}

impl NodeError {
    pub(super) fn at(mut self, location: Option<SourceLocation>) -> Self {
        if self.location.is_none() {
            self.location = location;
        }
        self
    }

    pub(super) fn within(mut self, field: &str) -> Self {
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
fn unknown_field_message(field: &str, expected: &[&str]) -> String {
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
