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

use instant_xml::FromXml;
use percent_encoding::utf8_percent_encode;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use ureq::http::StatusCode;
use ureq::typestate::{WithBody, WithoutBody};
use ureq::RequestBuilder;

use super::signing::{canonical_url, signed_headers, EMPTY_PAYLOAD, KEY_UNRESERVED};

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

/// A request that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    /// For a reason that passes (the network, a 5xx answer, throttling): try again later.
    #[error("{0}")]
    Passing(String),
    /// For a reason that trying again will not change (credentials, a missing bucket, a denied
    /// key): the message has the store's words and the fix.
    #[error("{0}")]
    Lasting(String),
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

/// What an error answer means, in the store's words (`Code` and `Message` of its XML) with the
/// fix. Throttling, 5xx and timeouts pass; the rest lasts.
fn classify(
    what: &str,
    status: StatusCode,
    body: &str,
    key: Option<&str>,
    credentials_origin: &str,
) -> StoreError {
    // A body that is not S3's XML (a proxy's page) leaves the status to speak.
    let ErrorBody { code, message } = ErrorBody::read(body).unwrap_or_default();
    let (code, message) = (code.unwrap_or_default(), message.unwrap_or_default());
    let words = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {status}"),
        (false, true) => format!("{code} (HTTP {})", status.as_u16()),
        (false, false) => format!("{code}: {message} (HTTP {})", status.as_u16()),
    };
    let passing = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || matches!(
            code.as_str(),
            "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "Throttling"
        );
    if passing {
        return StoreError::Passing(format!("{what}: {words}"));
    }
    let fix = match code.as_str() {
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "InvalidToken"
        | "ExpiredToken"
        | "TokenRefreshRequired" => {
            format!("the store refuses the credentials from {credentials_origin}; fix them")
        }
        "AccessDenied" => format!(
            "the credentials from {credentials_origin} are not allowed this; grant them \
             s3:ListBucket on the bucket and s3:GetObject (and for `on_done`, s3:DeleteObject \
             and s3:PutObject) on its keys"
        ),
        "NoSuchBucket" => "create the bucket, or fix `bucket` (and `endpoint`)".to_owned(),
        "RequestTimeTooSkewed" => {
            "this machine's clock is off by more than 15 minutes; set it right (NTP)".to_owned()
        }
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => {
            "the bucket is in another region: set `region` to it".to_owned()
        }
        "NoSuchKey" => format!(
            "{} was removed while it was being published",
            key.unwrap_or("the object")
        ),
        "PreconditionFailed" => format!(
            "{} was replaced while it was being read; the new upload is published as a new object",
            key.unwrap_or("the object")
        ),
        _ if status == StatusCode::FORBIDDEN => format!(
            "the store refuses the credentials from {credentials_origin} or does not allow them \
             this; check them and their permissions"
        ),
        _ if status == StatusCode::NOT_FOUND => {
            "check `bucket`, `endpoint` and `path_style`".to_owned()
        }
        _ => "check the source's settings".to_owned(),
    };
    StoreError::Lasting(format!("{what}: {words}; {fix}"))
}

/// A connection that failed or timed out passes; a malformed URL or TLS refusal lasts.
fn transport_error(what: &str, error: ureq::Error) -> StoreError {
    match error {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::BadUri(_) => {
            StoreError::Lasting(format!("{what}: {error}; check `endpoint`"))
        }
        other => StoreError::Passing(format!("{what}: {other}")),
    }
}

/// An error answer's body: `<Error><Code>…</Code><Message>…</Message>…</Error>`.
#[derive(Debug, Default, FromXml)]
#[xml(rename = "Error")]
struct ErrorBody {
    #[xml(rename = "Code")]
    code: Option<String>,
    #[xml(rename = "Message")]
    message: Option<String>,
}

impl ErrorBody {
    /// The body read as S3's XML, from its first `<` (S3 may send whitespace to keep a long
    /// copy's connection open before the document), its texts trimmed.
    fn read(body: &str) -> Option<Self> {
        let document = body.find('<').map_or(body, |start| &body[start..]);
        let ErrorBody { code, message } = instant_xml::from_str(document).ok()?;
        let trimmed = |text: Option<String>| text.map(|text| text.trim().to_owned());
        Some(Self {
            code: trimmed(code),
            message: trimmed(message),
        })
    }

    /// Whether a body that came with a 200 reports an error. One that names `<Error>` but does
    /// not read as XML counts as an error too: taking it for a success would delete the source
    /// of a copy that did not happen.
    fn is_error(body: &str) -> bool {
        Self::read(body).is_some() || body.contains("<Error>")
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

    #[test]
    fn errors_are_told_in_the_stores_words_with_the_fix() {
        // As AWS writes it: a declaration, and elements beside Code and Message.
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message>\
                    <BucketName>b</BucketName><RequestId>4442587FB7D0A2F9</RequestId>\
                    <HostId>xyz=</HostId></Error>";
        let error = classify("list s3://b/", StatusCode::NOT_FOUND, body, None, "env");
        let StoreError::Lasting(message) = error else {
            panic!("a missing bucket lasts")
        };
        assert!(message.contains("NoSuchBucket: The specified bucket does not exist"));
        assert!(message.contains("create the bucket"));
        // A copy's error after its 200: whitespace first, and an entity the reader does not
        // know. It is an error all the same, never a success that deletes the source.
        let late = "\n  \n<?xml version=\"1.0\"?><Error><Code>InternalError</Code>\
                    <Message>We&nbsp;failed</Message></Error>";
        assert!(ErrorBody::is_error(late));
        assert!(!ErrorBody::is_error(
            "<CopyObjectResult><ETag>\"e\"</ETag></CopyObjectResult>"
        ));
        let spaced = "\n  <?xml version=\"1.0\"?><Error><Code> SlowDown </Code></Error>";
        assert_eq!(
            ErrorBody::read(spaced).unwrap().code.as_deref(),
            Some("SlowDown")
        );
        let throttled = "<Error><Code>SlowDown</Code><Message>Reduce</Message></Error>";
        assert!(matches!(
            classify(
                "read",
                StatusCode::SERVICE_UNAVAILABLE,
                throttled,
                None,
                "env"
            ),
            StoreError::Passing(_)
        ));
        let refused = "<Error><Code>InvalidAccessKeyId</Code><Message>no</Message></Error>";
        let StoreError::Lasting(message) = classify(
            "list",
            StatusCode::FORBIDDEN,
            refused,
            None,
            "the environment",
        ) else {
            panic!("refused credentials last")
        };
        assert!(
            message.contains("credentials from the environment"),
            "{message}"
        );
    }

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
