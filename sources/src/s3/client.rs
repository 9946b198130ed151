//! The requests the source makes: URLs built and listings read by `rusty-s3` (no I/O of its
//! own), signed in the header (`signing`), sent by `ureq` (blocking: callers run them on
//! blocking threads); and what the store's errors mean.
//!
//! Why these: `object_store` brings an async client and its own stack (335 crates, 56 s to
//! build on 2 cores); `rusty-s3` and `ureq` (which the CLI already uses) are 154 crates and
//! 24 s, and this source needs four requests.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::utf8_percent_encode;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use ureq::http::StatusCode;
use ureq::typestate::{WithBody, WithoutBody};
use ureq::RequestBuilder;

use super::signing::{canonical_url, signed_headers, EMPTY_PAYLOAD, KEY_UNRESERVED};
use super::store_error::{classify, transport_error, ErrorBody, StoreError};

/// Unused by unsigned URLs, which `rusty-s3` builds when given no credentials.
const UNSIGNED: Duration = Duration::from_secs(0);
/// A store that sends nothing on a connection for this long is taken as gone.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An object found by listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedObject {
    pub(crate) key: String,
    pub(crate) size: u64,
    /// As the store sends it, quoted.
    pub(crate) etag: String,
}

/// A bucket and the credentials to reach it.
pub(crate) struct S3Client {
    bucket: Bucket,
    region: String,
    credentials: Credentials,
    /// Where the credentials came from, for the fix of a refusal.
    credentials_origin: String,
    agent: ureq::Agent,
}

impl S3Client {
    pub(crate) fn new(
        endpoint: url::Url,
        path_style: bool,
        bucket: &str,
        region: &str,
        credentials: Credentials,
        credentials_origin: String,
    ) -> Result<Self, String> {
        let style = match path_style {
            true => UrlStyle::Path,
            false => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(endpoint, style, bucket.to_owned(), region.to_owned()).map_err(
            |error| {
                format!(
                    "{error}; an endpoint that is an IP address or a bucket name that cannot be \
                     part of a host name needs `path_style: true`"
                )
            },
        )?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(native_roots())))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Self {
            bucket,
            region: region.to_owned(),
            credentials,
            credentials_origin,
            agent,
        })
    }

    /// `s3://bucket/key`, for messages.
    pub(crate) fn describe(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket.name())
    }

    /// Every object under `prefix`, page after page, in the store's (byte) order; at most
    /// `limit` when set (a check that the bucket can be listed).
    pub(crate) fn list(
        &self,
        prefix: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ListedObject>, StoreError> {
        let mut objects = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, None);
            if !prefix.is_empty() {
                action.with_prefix(prefix);
            }
            if let Some(limit) = limit {
                action.with_max_keys(limit);
            }
            if let Some(token) = &continuation {
                action.with_continuation_token(token.as_str());
            }
            let url = action.sign(UNSIGNED);
            let what = format!("list s3://{}/{prefix}", self.bucket.name());
            let response = self.get(&url, &[]).call();
            let text = self.answer(response, &what, None)?;
            let page = ListObjectsV2::parse_response(&text).map_err(|error| {
                StoreError::Lasting(format!(
                    "{what}: the answer is not an S3 listing ({error}); check `endpoint`"
                ))
            })?;
            objects.extend(page.contents.into_iter().map(|content| ListedObject {
                key: content.key,
                size: content.size.unwrap_or(0),
                etag: content.etag.unwrap_or_default(),
            }));
            continuation = page.next_continuation_token;
            if continuation.is_none() || limit.is_some() {
                return Ok(objects);
            }
        }
    }

    /// A reader of bytes `start..end` of `key`, as long as it is still the object `etag` names.
    pub(crate) fn read_range(
        &self,
        key: &str,
        etag: &str,
        start: u64,
        end: u64,
    ) -> Result<ureq::BodyReader<'static>, StoreError> {
        let url = self.bucket.get_object(None, key).sign(UNSIGNED);
        let what = format!("read {}", self.describe(key));
        let range = format!("bytes={start}-{}", end - 1);
        let mut headers = vec![("range", range.as_str())];
        if !etag.is_empty() {
            headers.push(("if-match", etag));
        }
        let response = self
            .get(&url, &headers)
            .call()
            .map_err(|error| transport_error(&what, error))?;
        // A store that ignores If-Match would splice two uploads: the ETag it answers with
        // must be the one listed.
        let answered = response
            .headers()
            .get("etag")
            .and_then(|value| value.to_str().ok())
            .unwrap_or(etag);
        if response.status().is_success() && answered != etag {
            return Err(StoreError::Lasting(format!(
                "{what}: the object changed since it was listed (ETag {answered} instead of \
                 {etag}); the new upload is published as a new object"
            )));
        }
        match response.status() {
            StatusCode::PARTIAL_CONTENT => Ok(response.into_body().into_reader()),
            // A store that ignores Range sends the whole object: only right when asked for it.
            StatusCode::OK if start == 0 => Ok(response.into_body().into_reader()),
            StatusCode::OK => Err(StoreError::Lasting(format!(
                "{what}: the store ignored the byte range asked for; it must support ranged GETs"
            ))),
            _ => Err(self.refusal(response, &what, Some(key))),
        }
    }

    pub(crate) fn delete(&self, key: &str) -> Result<(), StoreError> {
        let url = self.bucket.delete_object(None, key).sign(UNSIGNED);
        let what = format!("delete {}", self.describe(key));
        let response = self
            .sign(|url| self.agent.delete(url), "DELETE", &url, &[])
            .call();
        self.answer(response, &what, Some(key)).map(drop)
    }

    /// Copies `from` to `to` inside the bucket (S3's CopyObject: a PUT naming its source), as
    /// long as `from` is still the object `etag` names.
    pub(crate) fn copy(&self, from: &str, etag: &str, to: &str) -> Result<(), StoreError> {
        let source = format!(
            "/{}/{}",
            self.bucket.name(),
            utf8_percent_encode(from, KEY_UNRESERVED)
        );
        let url = self.bucket.put_object(None, to).sign(UNSIGNED);
        let what = format!("copy {} to {to}", self.describe(from));
        let put = |url: &str| -> RequestBuilder<WithBody> { self.agent.put(url) };
        let response = self
            .sign(
                put,
                "PUT",
                &url,
                &[
                    ("x-amz-copy-source", &source),
                    ("x-amz-copy-source-if-match", etag),
                ],
            )
            .send_empty();
        let text = self.answer(response, &what, Some(from))?;
        // CopyObject may fail after its 200 has gone out: the error is then the body.
        match ErrorBody::is_error(&text) {
            true => Err(classify(
                &what,
                StatusCode::INTERNAL_SERVER_ERROR,
                &text,
                Some(from),
                &self.credentials_origin,
            )),
            false => Ok(()),
        }
    }

    /// A GET of `url` with `headers`, signed.
    fn get(&self, url: &url::Url, headers: &[(&str, &str)]) -> RequestBuilder<WithoutBody> {
        self.sign(|url| self.agent.get(url), "GET", url, headers)
    }

    /// The request `make` makes for `url` (its query in canonical form, so that a store that
    /// checks the signature against the query as sent agrees), with `headers` and the headers
    /// that sign it with them.
    fn sign<B>(
        &self,
        make: impl FnOnce(&str) -> RequestBuilder<B>,
        method: &str,
        url: &url::Url,
        headers: &[(&str, &str)],
    ) -> RequestBuilder<B> {
        let url = canonical_url(url);
        let signing = signed_headers(
            method,
            &url,
            headers,
            EMPTY_PAYLOAD,
            &self.credentials,
            &self.region,
            jiff::Timestamp::now(),
        );
        let mut request = make(url.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        for (name, value) in signing {
            request = request.header(name, value);
        }
        request
    }

    /// The answer's body when it succeeded, else what went wrong.
    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
        key: Option<&str>,
    ) -> Result<String, StoreError> {
        let response = response.map_err(|error| transport_error(what, error))?;
        if response.status().is_success() {
            let mut text = String::new();
            response
                .into_body()
                .into_reader()
                .read_to_string(&mut text)
                .map_err(|error| StoreError::Passing(format!("{what}: {error}")))?;
            return Ok(text);
        }
        Err(self.refusal(response, what, key))
    }

    /// The error an unsuccessful answer means.
    fn refusal(
        &self,
        response: ureq::http::Response<ureq::Body>,
        what: &str,
        key: Option<&str>,
    ) -> StoreError {
        let status = response.status();
        let mut text = String::new();
        // An error body is small; one that cannot be read still has its status.
        let _ = response
            .into_body()
            .into_reader()
            .take(64 * 1024)
            .read_to_string(&mut text);
        classify(what, status, &text, key, &self.credentials_origin)
    }
}

/// The system's trusted roots (as the RTMPS sink uses); none found means https fails clearly.
fn native_roots() -> Vec<ureq::tls::Certificate<'static>> {
    rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SigV4 signs the path as sent: it must be the canonical one, each byte outside the
    /// unreserved set encoded once.
    #[test]
    fn object_paths_are_canonically_encoded() {
        let bucket = Bucket::new(
            "http://127.0.0.1:9000".parse().unwrap(),
            UrlStyle::Path,
            "media",
            "us-east-1",
        )
        .unwrap();
        let url = bucket.get_object(None, "in/a b+ü~(1).mp4").sign(UNSIGNED);
        assert_eq!(url.path(), "/media/in/a%20b%2B%C3%BC~%281%29.mp4");
    }

    #[test]
    fn copy_sources_are_percent_encoded_but_keep_their_slashes() {
        assert_eq!(
            utf8_percent_encode("in/batch 1+2.mp4", KEY_UNRESERVED).to_string(),
            "in/batch%201%2B2.mp4"
        );
    }
}
