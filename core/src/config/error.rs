use std::fmt;
use std::path::{Path, PathBuf};

use crate::node::{NodeError, SourceLocation};

/// A config problem, with everything a user needs to find it: file, line and column, pipeline,
/// component and field. Boxed, so results that may carry one stay small.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(Box<ConfigErrorDetails>);

/// What a [`ConfigError`] knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrorDetails {
    pub file: PathBuf,
    pub location: Option<SourceLocation>,
    pub pipeline: Option<String>,
    /// e.g. "sink `file`".
    pub component: Option<String>,
    pub field: Option<String>,
    pub message: String,
    /// More problems found in the same file (each pipeline and component is checked, so that
    /// one run names them all).
    pub others: Vec<ConfigError>,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self(Box::new(ConfigErrorDetails {
            file: file.to_path_buf(),
            location: None,
            pipeline: None,
            component: None,
            field: None,
            message: message.into(),
            others: Vec::new(),
        }))
    }

    /// `Ok` if `errors` is empty, else the first of them carrying the others.
    pub(crate) fn all(errors: Vec<ConfigError>) -> Result<(), ConfigError> {
        let mut errors = errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(mut first) => {
                first.0.others.extend(errors);
                Err(first)
            }
        }
    }

    /// Every problem this error reports: itself, then the others found in the same file.
    /// (Displaying the error shows the first.)
    pub fn problems(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(&self.0.others)
    }

    /// Every problem, one per line.
    pub fn describe_all(&self) -> String {
        self.problems()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn details(&self) -> &ConfigErrorDetails {
        &self.0
    }

    pub(crate) fn from_yaml(file: &Path, error: &serde_saphyr::Error) -> Self {
        let location = error.location().and_then(SourceLocation::from_saphyr);
        // The library's rendering ends with the location, which this error prints first.
        let rendered = error.without_snippet().to_string();
        let first_line = rendered.lines().next().unwrap_or("invalid YAML");
        let message = match first_line.rfind(" at line ") {
            Some(end) => first_line[..end].to_owned(),
            None => first_line.to_owned(),
        };
        Self::new(file, message).at(location)
    }

    pub(crate) fn from_node(file: &Path, error: NodeError) -> Self {
        let field = error.field();
        let mut config_error = Self::new(file, with_remedy(error.message)).at(error.location);
        config_error.0.field = field;
        config_error
    }

    pub fn at(mut self, location: Option<SourceLocation>) -> Self {
        self.0.location = self.0.location.or(location);
        self
    }

    pub fn in_pipeline(mut self, pipeline: &str) -> Self {
        self.0.pipeline.get_or_insert_with(|| pipeline.to_owned());
        self
    }

    pub fn in_component(mut self, component: String) -> Self {
        self.0.component.get_or_insert(component);
        self
    }

    /// Names the field, or prefixes an inner field path with it.
    pub fn field(mut self, field: &str) -> Self {
        self.0.field = Some(match self.0.field.take() {
            Some(inner) if inner != field => format!("{field}.{inner}"),
            _ => field.to_owned(),
        });
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details = &self.0;
        write!(f, "{}", details.file.display())?;
        if let Some(location) = details.location {
            write!(f, ":{location}")?;
        }
        f.write_str(": ")?;
        let mut context = Vec::new();
        if let Some(pipeline) = &details.pipeline {
            context.push(format!("pipeline `{pipeline}`"));
        }
        if let Some(component) = &details.component {
            context.push(component.clone());
        }
        if let Some(field) = &details.field {
            context.push(format!("field `{field}`"));
        }
        if !context.is_empty() {
            write!(f, "{}: ", context.join(", "))?;
        }
        f.write_str(&details.message)
    }
}

impl std::error::Error for ConfigError {}

/// A deserializer's message with what to write instead, where it names only what it expected
/// (serde and the standard library word their errors for programmers, not for config files).
fn with_remedy(message: String) -> String {
    if message.contains("did not match any variant of untagged enum") {
        // serde names the Rust type; the user needs the forms the option takes.
        return "it is none of the forms this option takes; `streampub plugins` lists them"
            .to_owned();
    }
    let remedies: [(&str, &str); 4] = [
        (
            "expected a boolean",
            "write true or false (YAML's yes, no, on and off are words here)",
        ),
        (
            "invalid socket address syntax",
            "write an IP address and a port, e.g. 127.0.0.1:9090 (host names are not looked up)",
        ),
        ("invalid type: unit value", "it is empty; give it a value"),
        (
            "expected a map",
            "write `key: value` lines under it, indented",
        ),
    ];
    match remedies.iter().find(|(phrase, _)| message.contains(phrase)) {
        Some((_, remedy)) => format!("{message}; {remedy}"),
        None => message,
    }
}
