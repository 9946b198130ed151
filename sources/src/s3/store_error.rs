//! What a failed request means: whether trying again may help, and the store's own words
//! (the `Code` and `Message` of its XML error body) with the fix.

use instant_xml::FromXml;
use ureq::http::StatusCode;

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

/// What an error answer means, in the store's words (`Code` and `Message` of its XML) with the
/// fix. Throttling, 5xx and timeouts pass; the rest lasts.
pub(super) fn classify(
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
pub(super) fn transport_error(what: &str, error: ureq::Error) -> StoreError {
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
pub(super) struct ErrorBody {
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
    pub(super) fn is_error(body: &str) -> bool {
        Self::read(body).is_some() || body.contains("<Error>")
    }
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
}
