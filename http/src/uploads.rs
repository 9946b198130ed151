//! The upload routes of one pipeline: who may upload (a bearer token), which names are
//! fragment names, and the store the uploads go to ([`FragmentUploads`]).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use streampub_core::plugin::async_trait;

use crate::responses::error_response;

/// Names longer than this many bytes are refused (the common file name limit).
const MAX_NAME_BYTES: usize = 255;

/// What one pipeline does with the uploads its routes let through: the name is a plain file
/// name and the client is authorized.
#[async_trait]
pub trait FragmentUploads: Send + Sync {
    /// `PUT …/fragments/{name}`: keeps `body` as fragment `name`, and answers.
    async fn put(&self, name: String, headers: HeaderMap, body: Body) -> Response;

    /// `GET …/fragments/{name}`: what became of fragment `name`.
    fn get(&self, name: &str) -> Response;
}

/// One pipeline's upload routes, mounted on a listener.
pub struct UploadRoutes {
    /// The token uploads must send as `Authorization: Bearer <token>`; `None`: anyone may.
    pub token: Option<String>,
    pub uploads: Arc<dyn FragmentUploads>,
}

impl UploadRoutes {
    /// Whether the request carries the token (always, without one).
    pub(crate) fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        presented.is_some_and(|presented| constant_time_eq(presented, token.as_bytes()))
    }
}

/// `401` with a `WWW-Authenticate` challenge.
pub(crate) fn unauthorized() -> Response {
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token; send `Authorization: Bearer <token>`",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"streampub\""),
    );
    response
}

/// Checks a fragment name from the URL (already percent-decoded); the error says what is
/// wrong with it.
pub(crate) fn check_fragment_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a slash or backslash")
    } else if name.contains("..") {
        Some("contains `..`")
    } else if name.starts_with('.') {
        Some("starts with a dot")
    } else if name.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!(
            "fragment name {problem}; use a plain file name such as batch-42.mp4"
        )),
        None => Ok(()),
    }
}

/// Compares without stopping at the first difference (`subtle`), so the time taken does not
/// tell how much of a guessed token was right.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(left, right).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_names_are_plain_file_names() {
        assert_eq!(check_fragment_name("batch-0.mp4"), Ok(()));
        assert_eq!(check_fragment_name("take 1.mp4"), Ok(()));
        for bad in [
            "", "a/b", "a\\b", "..", "a..b", ".hidden", "a\nb", "a\0", "a\u{7f}b",
        ] {
            assert!(check_fragment_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_fragment_name(&"x".repeat(255)).is_ok());
        let error = check_fragment_name(&"x".repeat(256)).unwrap_err();
        assert!(error.contains("255 bytes"), "{error}");
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
