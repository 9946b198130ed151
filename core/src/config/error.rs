use std::fmt;
use std::path::{Path, PathBuf};

use super::node::{NodeError, SourceLocation};

/// A config problem, with everything a user needs to find it: file, line and column, pipeline,
/// component and field.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub location: Option<SourceLocation>,
    pub pipeline: Option<String>,
    /// e.g. "sink `file`".
    pub component: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            location: None,
            pipeline: None,
            component: None,
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn from_yaml(file: &Path, error: &serde_saphyr::Error) -> Self {
        let location = error.location().and_then(SourceLocation::from_saphyr);
        // The library's own rendering repeats the location and adds a snippet; keep its first
        // line, which is the message.
        let rendered = error.without_snippet().to_string();
        let message = rendered.lines().next().unwrap_or("invalid YAML").to_owned();
        Self::new(file, message).at(location)
    }

    pub(crate) fn from_node(file: &Path, error: NodeError) -> Self {
        let field = error.field();
        let mut config_error = Self::new(file, error.message).at(error.location);
        config_error.field = field;
        config_error
    }

    pub fn at(mut self, location: Option<SourceLocation>) -> Self {
        self.location = self.location.or(location);
        self
    }

    pub fn in_pipeline(mut self, pipeline: &str) -> Self {
        self.pipeline.get_or_insert_with(|| pipeline.to_owned());
        self
    }

    pub fn in_component(mut self, component: String) -> Self {
        self.component.get_or_insert(component);
        self
    }

    /// Names the field, or prefixes an inner field path with it.
    pub fn field(mut self, field: &str) -> Self {
        self.field = Some(match self.field.take() {
            Some(inner) if inner != field => format!("{field}.{inner}"),
            _ => field.to_owned(),
        });
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(location) = self.location {
            write!(f, ":{location}")?;
        }
        f.write_str(": ")?;
        let mut context = Vec::new();
        if let Some(pipeline) = &self.pipeline {
            context.push(format!("pipeline `{pipeline}`"));
        }
        if let Some(component) = &self.component {
            context.push(component.clone());
        }
        if let Some(field) = &self.field {
            context.push(format!("field `{field}`"));
        }
        if !context.is_empty() {
            write!(f, "{}: ", context.join(", "))?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
