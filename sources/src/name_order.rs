//! Which names a source publishes and in which order, shared by the sources that list a
//! place (a directory, a bucket): globs on the last part of a name, the names being written
//! under a temporary name, and numeric-aware order with init segments first.

use std::cmp::Ordering;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::ComponentError;

/// One glob on file names, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Globs {
    One(String),
    Any(Vec<String>),
}

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads a glob, or a list of globs.
        struct Written;

        impl<'de> serde::de::Visitor<'de> for Written {
            type Value = Globs;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a glob like \"*.mp4\", or a list of globs like [\"*.m4s\", \"init.mp4\"]",
                )
            }

            fn visit_str<E: serde::de::Error>(self, glob: &str) -> Result<Globs, E> {
                Ok(Globs::One(glob.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut items: A,
            ) -> Result<Globs, A::Error> {
                let mut globs = Vec::new();
                while let Some(glob) = items.next_element::<String>()? {
                    globs.push(glob);
                }
                Ok(Globs::Any(globs))
            }
        }

        deserializer.deserialize_any(Written)
    }
}

/// Default `pattern`: every name.
pub const DEFAULT_PATTERN: &str = "*";

pub(crate) fn default_pattern() -> Globs {
    Globs::One(DEFAULT_PATTERN.to_owned())
}

/// `pattern` and `init_pattern` compiled, or an error naming the field and the bad glob.
pub(crate) fn compile_name_globs(
    pattern: &Globs,
    init_pattern: Option<&Globs>,
) -> Result<(NamePatterns, Option<NamePatterns>), ComponentError> {
    let init_pattern = init_pattern
        .map(|globs| globs.compile("init_pattern"))
        .transpose()?;
    Ok((pattern.compile("pattern")?, init_pattern))
}

impl Globs {
    /// The compiled globs, or an error naming `field` and the bad glob.
    fn compile(&self, field: &str) -> Result<NamePatterns, ComponentError> {
        let globs = match self {
            Self::One(glob) => std::slice::from_ref(glob),
            Self::Any(globs) => globs.as_slice(),
        };
        if globs.is_empty() {
            return Err(ComponentError::field(field, "give at least one glob"));
        }
        globs
            .iter()
            .map(|glob| {
                glob::Pattern::new(glob).map_err(|error| {
                    ComponentError::field(field, format!("invalid glob `{glob}`: {error}"))
                })
            })
            .collect::<Result<_, _>>()
            .map(NamePatterns)
    }
}

/// Globs on file names: a name matches if any of them matches.
#[derive(Debug, Clone)]
pub(crate) struct NamePatterns(pub(crate) Vec<glob::Pattern>);

impl NamePatterns {
    pub(crate) fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(name))
    }
}

/// Files that are being written under a temporary name.
pub(crate) fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// Compares names so that runs of digits compare as numbers: `batch-9` < `batch-10`.
pub(crate) fn natural_order(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let a_digits = a.starts_with(|c: char| c.is_ascii_digit());
        let b_digits = b.starts_with(|c: char| c.is_ascii_digit());
        let (a_run, a_rest) = split_run(a, a_digits);
        let (b_run, b_rest) = split_run(b, b_digits);
        let order = if a_digits && b_digits {
            let a_number = a_run.trim_start_matches('0');
            let b_number = b_run.trim_start_matches('0');
            a_number
                .len()
                .cmp(&b_number.len())
                .then_with(|| a_number.cmp(b_number))
                // `01` after `1`, so that distinct names never compare equal.
                .then_with(|| a_run.len().cmp(&b_run.len()))
        } else {
            a_run.cmp(b_run)
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (a_rest, b_rest);
    }
}

/// Splits off the leading run of digits (or of non-digits).
fn split_run(text: &str, digits: bool) -> (&str, &str) {
    let end = text
        .find(|c: char| c.is_ascii_digit() != digits)
        .unwrap_or(text.len());
    text.split_at(end)
}

/// The order names are published in: those whose last part matches `first` (init segments)
/// before all others, then numeric-aware name order.
pub(crate) fn publication_order(a: &str, b: &str, first: Option<&NamePatterns>) -> Ordering {
    let comes_later = |name: &str| !first.is_some_and(|first| first.matches(last_part(name)));
    comes_later(a)
        .cmp(&comes_later(b))
        .then_with(|| natural_order(a, b))
}

/// The part of a name after its last `/` (an object key's file name).
pub(crate) fn last_part(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_names_sort_numerically() {
        let mut names = vec![
            "batch-10.mp4",
            "batch-9.mp4",
            "batch-1.mp4",
            "batch-0.mp4",
            "a",
            "batch-02.mp4",
        ];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(
            names,
            vec![
                "a",
                "batch-0.mp4",
                "batch-1.mp4",
                "batch-02.mp4",
                "batch-9.mp4",
                "batch-10.mp4"
            ]
        );
        assert_eq!(natural_order("x1", "x01"), Ordering::Less);
        assert_eq!(natural_order("x", "x"), Ordering::Equal);
    }
}
