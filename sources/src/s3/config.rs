use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::HumanDuration;

use crate::name_order::Globs;

/// Default `region`: the one S3-compatible stores accept when they have none.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default `poll_interval`: a listing every 2 s costs about 43,000 LIST requests a day.
pub const DEFAULT_POLL_INTERVAL: HumanDuration = HumanDuration::from_secs(2);
/// Default `retry_for`: how long a request that fails for a passing reason is tried again.
pub const DEFAULT_RETRY_FOR: HumanDuration = HumanDuration::from_secs(120);

/// Publishes the objects under `prefix` in an S3 bucket, or in an S3-compatible store (MinIO,
/// Ceph, Cloudflare R2, ...), in numeric-aware key order (`batch-10` after `batch-9`),
/// following new ones.
///
/// An object is read as the pipeline takes it, with ranged GETs pinned to the ETag it was
/// listed with, so it is never held whole and one overwritten mid-read fails instead of
/// splicing two uploads. With a top-level `state_dir`, published objects are remembered by key,
/// size and ETag, so a restart neither republishes nor skips one (a key uploaded again with
/// other content is published again). Credentials come from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, else from a profile of the shared
/// credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`); they are
/// never logged. Network errors, 5xx answers and throttling are retried with backoff; a
/// missing bucket, refused credentials or a denied listing stop the source with the store's
/// own words and what to fix (an object whose read is denied fails alone).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3SourceConfig {
    /// The bucket's name.
    pub bucket: String,
    /// Only keys that start with this are read, e.g. `channel-1/`. Ordering uses the key after
    /// the prefix; `pattern` the key's last part (after its last `/`).
    #[serde(default)]
    pub prefix: String,
    /// The store's URL for an S3-compatible store, e.g. `http://127.0.0.1:9000`. Unset: AWS
    /// S3 in `region` (`https://s3.<region>.amazonaws.com`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region requests are signed for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`) instead of virtual-hosted style
    /// (`<bucket>.<endpoint host>/<key>`). Unset: path style with `endpoint` (what MinIO and
    /// most S3-compatible stores need), virtual-hosted style on AWS.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// The profile of the shared credentials file, when the environment has no keys. Unset:
    /// `AWS_PROFILE`, else `default`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Glob on the key's last part, e.g. `batch-*.mp4`, or a list of globs (an object matches
    /// if any does). Dot names and `*.tmp` / `*.part` are ignored, as by the directory source.
    #[serde(default = "crate::name_order::default_pattern")]
    pub pattern: Globs,
    /// Glob on the last part of keys to publish before all others found with them (init
    /// segments), e.g. `init*`. Unset: key order only.
    #[serde(default)]
    pub init_pattern: Option<Globs>,
    /// Keep listing for new objects every `poll_interval` (`true`), or publish what is there
    /// and finish (`false`).
    #[serde(default = "default_follow")]
    pub follow: bool,
    /// How often the prefix is listed for new objects.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// What happens to an object once every required destination has confirmed it.
    #[serde(default)]
    pub on_done: OnDone,
    /// Where `on_done: move` puts published objects: their key after `prefix` goes after
    /// `done_prefix`, e.g. `done/channel-1/`. Keys under it are never listed as new.
    #[serde(default)]
    pub done_prefix: Option<String>,
    /// How long a request that fails for a passing reason (a network error, a 5xx answer,
    /// throttling) is tried again, with backoff, before the object being read fails (it is
    /// offered again on the next start). Listing is retried for as long as it takes.
    #[serde(default = "default_retry_for")]
    pub retry_for: HumanDuration,
}

/// What happens to a published object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDone {
    /// Leave it (it is remembered as published when `state_dir` is set).
    #[default]
    Keep,
    /// Delete it.
    Delete,
    /// Copy it under `done_prefix`, then delete it.
    Move,
}

fn default_region() -> String {
    DEFAULT_REGION.to_owned()
}

fn default_follow() -> bool {
    true
}

fn default_poll_interval() -> HumanDuration {
    DEFAULT_POLL_INTERVAL
}

fn default_retry_for() -> HumanDuration {
    DEFAULT_RETRY_FOR
}
