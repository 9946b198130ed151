//! A real HTTP client for the `http` source and the metrics listener, and a checker for the
//! Prometheus text format.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use serde_json::Value;

/// An HTTP client of one listener, with an optional bearer token.
pub struct HttpClient {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

impl HttpClient {
    /// A client of `http://{address}`.
    pub fn new(address: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base: format!("http://{address}"),
            token: None,
        }
    }

    /// Sends `Authorization: Bearer {token}` from now on.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// `PUT /v1/pipelines/{pipeline}/fragments/{name}` with a body of known length. Like curl,
    /// it sends `Expect: 100-continue`, so a refusal comes before the body.
    pub fn upload(&self, pipeline: &str, name: &str, body: &[u8]) -> Answer {
        let request = self
            .agent
            .put(fragment_url(&self.base, pipeline, name))
            .header("Expect", "100-continue");
        self.answer(self.authorize(request).send(body))
    }

    /// The same with a body streamed from `reader` (chunked, no Content-Length).
    pub fn upload_stream(&self, pipeline: &str, name: &str, reader: impl Read + 'static) -> Answer {
        let request = self.agent.put(fragment_url(&self.base, pipeline, name));
        let body = ureq::SendBody::from_owned_reader(reader);
        self.answer(self.authorize(request).send(body))
    }

    /// `GET /v1/pipelines/{pipeline}/fragments/{name}`.
    pub fn fragment(&self, pipeline: &str, name: &str) -> Answer {
        self.get(&format!("/v1/pipelines/{pipeline}/fragments/{name}"))
    }

    /// `GET {path}`.
    pub fn get(&self, path: &str) -> Answer {
        let request = self.agent.get(format!("{}{path}", self.base));
        self.answer(self.authorize(request).call())
    }

    /// `DELETE {path}`.
    pub fn delete(&self, path: &str) -> Answer {
        let request = self.agent.delete(format!("{}{path}", self.base));
        self.answer(self.authorize(request).call())
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    fn answer(&self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = response.unwrap_or_else(|error| panic!("HTTP request failed: {error}"));
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Answer {
            status: response.status().as_u16(),
            headers,
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }
}

fn fragment_url(base: &str, pipeline: &str, name: &str) -> String {
    format!("{base}/v1/pipelines/{pipeline}/fragments/{name}")
}

/// Parses an exposition in the Prometheus/OpenMetrics text format, checking its grammar:
/// every sample belongs to a family declared by `# TYPE` before it, names and labels are
/// well formed, values are numbers, histogram buckets do not decrease, and it ends with
/// `# EOF`. Returns each sample (`name{labels}` as written) and its value; panics naming the
/// offending line.
pub fn parse_prometheus_text(text: &str) -> BTreeMap<String, f64> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut last_bucket: Option<(String, f64)> = None;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition must end with # EOF"
    );
    for (index, line) in lines[..lines.len() - 1].iter().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line}", index + 1) };
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            if !is_metric_name(name) {
                fail("bad metric name");
            }
            match keyword {
                "TYPE" => {
                    let kind = parts.next().unwrap_or("");
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                    ]
                    .contains(&kind)
                    {
                        fail("unknown metric type");
                    }
                    families.insert(name.to_owned(), kind.to_owned());
                }
                "HELP" | "UNIT" => {}
                _ => fail("unknown comment"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| fail("no value"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| fail("value is not a number")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| fail("unclosed labels")),
            ),
            None => (series, ""),
        };
        if !is_metric_name(name) {
            fail("bad sample name");
        }
        for label in split_labels(labels) {
            let (key, quoted) = label
                .split_once('=')
                .unwrap_or_else(|| fail("label without ="));
            if !is_metric_name(key) || key.contains(':') {
                fail("bad label name");
            }
            if !(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"')) {
                fail("label value not quoted");
            }
        }
        let family = [
            "_total", "_bucket", "_sum", "_count", "_created", "_info", "",
        ]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|family| families.contains_key(*family))
        .unwrap_or_else(|| fail("sample of an undeclared family"));
        if families[family] == "histogram" && name.ends_with("_bucket") {
            let series_key = labels
                .split(',')
                .filter(|label| !label.starts_with("le="))
                .collect::<Vec<_>>()
                .join(",");
            if let Some((previous_key, previous)) = &last_bucket {
                if *previous_key == series_key && value < *previous {
                    fail("histogram bucket counts decrease");
                }
            }
            last_bucket = Some((series_key, value));
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `a="x",b="y,z"` at the commas between labels (not inside quotes).
fn split_labels(labels: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&labels[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        parts.push(&labels[start..]);
    }
    parts
}
