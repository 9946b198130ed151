//! `${NAME}` in string values, replaced from the environment once the file is parsed, in every
//! string scalar: plain, single- or double-quoted alike (YAML parsers substitute only plain
//! ones, and a flow mapping such as `{path: "${IN}"}` needs the quotes). `$$` writes a literal
//! `$`, so `$${NAME}` stays `${NAME}`.

use std::collections::HashMap;

use crate::node::{ConfigNode, NodeValue, SourceLocation};

/// A reference that cannot be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VariableError {
    pub(super) message: String,
    pub(super) location: Option<SourceLocation>,
}

/// Replaces the references in every string value of `node` (mapping keys stay as written).
pub(super) fn substitute(
    node: &mut ConfigNode,
    variables: &HashMap<String, String>,
) -> Result<(), VariableError> {
    let location = node.location;
    match &mut node.value {
        NodeValue::String(text) if text.contains('$') => {
            *text = substitute_text(text, variables)
                .map_err(|message| VariableError { message, location })?;
        }
        NodeValue::Sequence(items) => {
            for item in items {
                substitute(item, variables)?;
            }
        }
        NodeValue::Mapping(entries) => {
            for (_, value) in entries {
                substitute(value, variables)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `text` with `${NAME}` replaced and `$$` made `$`; the error says what is wrong and how to
/// fix it.
fn substitute_text(text: &str, variables: &HashMap<String, String>) -> Result<String, String> {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        result.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            result.push('$');
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix('{') {
            let end = reference.find('}').ok_or_else(|| {
                format!(
                    "`${{` without a closing `}}` in `{text}`; write `$${{` for a literal `${{`"
                )
            })?;
            let name = &reference[..end];
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a variable name (letters, digits and `_`); write `$${{` for a literal `${{`"
                ));
            }
            let value = variables.get(name).ok_or_else(|| {
                format!("environment variable `{name}` is not set; export it, or write the value instead of `${{{name}}}`")
            })?;
            result.push_str(value);
            rest = &reference[end + 1..];
        } else {
            result.push('$');
            rest = after;
        }
    }
    result.push_str(rest);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables() -> HashMap<String, String> {
        HashMap::from([
            ("KEY".to_owned(), "s3cret".to_owned()),
            ("ODD".to_owned(), "${KEY}".to_owned()),
        ])
    }

    #[test]
    fn references_are_replaced_once_and_escapes_stay_literal() {
        let replace = |text: &str| substitute_text(text, &variables());
        assert_eq!(
            replace("rtmp://h/live/${KEY}").unwrap(),
            "rtmp://h/live/s3cret"
        );
        assert_eq!(replace("$${KEY} costs $5").unwrap(), "${KEY} costs $5");
        // A value is not expanded again.
        assert_eq!(replace("${ODD}").unwrap(), "${KEY}");
        assert!(replace("${MISSING}")
            .unwrap_err()
            .contains("`MISSING` is not set"));
        assert!(replace("${KEY").unwrap_err().contains("closing"));
        assert!(replace("${1X}")
            .unwrap_err()
            .contains("not a variable name"));
    }
}
