//! Keeps secrets (stream keys) out of logs, errors and metrics.

/// Replaces every occurrence of its secrets with `<redacted>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

impl Redactor {
    /// A redactor for these secrets; empty ones are ignored.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|secret| !secret.is_empty())
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), REDACTED)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_replaced() {
        let redactor = Redactor::new([
            "key123".to_owned(),
            String::new(),
            "key123?token=x".to_owned(),
        ]);
        assert_eq!(
            redactor.redact("rtmp://h/live/key123?token=x failed; key123 again"),
            "rtmp://h/live/<redacted> failed; <redacted> again"
        );
        assert_eq!(Redactor::default().redact("nothing"), "nothing");
    }
}
