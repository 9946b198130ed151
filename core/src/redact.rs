//! Keeps secrets in URLs out of logs, errors and metrics: a URL's password, and for schemes
//! whose paths carry a secret (an RTMP stream key) what follows the path's first segment.
//! Only the URL parts are replaced, where they stand: the same text elsewhere in a line (a
//! one-letter key in "Broken pipe", a key equal to the application's name) is left alone.

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Replaces the secret parts of the URLs in a text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Schemes whose path after its first segment (and query) is secret, e.g. `rtmp`.
    secret_path_schemes: Vec<String>,
}

impl Redactor {
    /// A redactor of URL passwords that also hides the path after the first segment, and the
    /// query, of URLs with one of `schemes` (`rtmp://host/app/<redacted>`).
    pub fn with_secret_paths<'a>(schemes: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            secret_path_schemes: schemes.into_iter().map(str::to_ascii_lowercase).collect(),
        }
    }

    /// `text` with every secret this redactor knows replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut result = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(separator) = rest.find("://") {
            let scheme_start = rest[..separator]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
                .map_or(0, |index| index + 1);
            let scheme = &rest[scheme_start..separator];
            if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) {
                result.push_str(&rest[..separator + 3]);
                rest = &rest[separator + 3..];
                continue;
            }
            let after = &rest[separator + 3..];
            let mut end = after
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
                .unwrap_or(after.len());
            // Punctuation that ends a sentence is not part of the URL.
            while end > 0 && after[..end].ends_with([':', '.', ',', ';', ')']) {
                end -= 1;
            }
            result.push_str(&rest[..separator + 3]);
            result.push_str(&self.redact_after_scheme(scheme, &after[..end]));
            rest = &after[end..];
        }
        result.push_str(rest);
        result
    }

    /// `user:password@host/app/key?query` with the secret parts replaced.
    fn redact_after_scheme(&self, scheme: &str, url: &str) -> String {
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => authority.to_owned(),
        };
        let secret_path = self
            .secret_path_schemes
            .iter()
            .any(|secret| secret.eq_ignore_ascii_case(scheme));
        if !secret_path {
            return format!("{authority}{path}");
        }
        // Keep `/app`; what follows (`/key`, `?token=…`) is the secret.
        let first_segment_end = path[1.min(path.len())..]
            .find(['/', '?', '#'])
            .map_or(path.len(), |index| index + 1.min(path.len()));
        let (kept, secret) = path.split_at(first_segment_end);
        if secret.len() <= 1 {
            return format!("{authority}{path}");
        }
        let separator = &secret[..1];
        format!("{authority}{kept}{separator}{REDACTED}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtmp() -> Redactor {
        Redactor::with_secret_paths(["rtmp", "rtmps"])
    }

    #[test]
    fn the_stream_key_is_replaced_where_it_stands_in_the_url() {
        assert_eq!(
            rtmp().redact("Error opening output rtmp://127.0.0.1:1935/live/key123?token=x: Connection refused"),
            "Error opening output rtmp://127.0.0.1:1935/live/<redacted>: Connection refused"
        );
        // A one-letter key: other words are left alone.
        assert_eq!(
            rtmp().redact("rtmp://h/live/k failed: Broken pipe"),
            "rtmp://h/live/<redacted> failed: Broken pipe"
        );
        // A key equal to the application's name: the application stays.
        assert_eq!(
            rtmp().redact("publishing to rtmp://h/live/live from live"),
            "publishing to rtmp://h/live/<redacted> from live"
        );
        assert_eq!(rtmp().redact("rtmp://h/live"), "rtmp://h/live");
        assert_eq!(rtmp().redact("nothing here"), "nothing here");
    }

    #[test]
    fn passwords_are_replaced_in_every_url() {
        assert_eq!(
            rtmp().redact("'rtmp://user:s3cret@host/live/key'"),
            "'rtmp://user:<redacted>@host/live/<redacted>'"
        );
        assert_eq!(
            Redactor::default().redact("curl https://me:pw@example.test/a/b and tcp://h:1"),
            "curl https://me:<redacted>@example.test/a/b and tcp://h:1"
        );
    }
}
