use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::HumanDuration;

use crate::name_order::Globs;

/// Default `settle`: how long a file must stay unchanged before it counts as complete.
pub const DEFAULT_SETTLE: HumanDuration = HumanDuration::from_millis(500);
/// Default `empty_timeout`: how long an empty file holds back the files after it.
pub const DEFAULT_EMPTY_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);
/// Default `poll_interval`: the rescan that catches what filesystem notifications miss.
pub const DEFAULT_POLL_INTERVAL: HumanDuration = HumanDuration::from_secs(1);

/// Publishes the files of a directory in numeric-aware name order (`batch-10` after `batch-9`).
///
/// A file is published once it is complete: renamed into place, or unchanged for `settle`.
/// Dotfiles and `*.tmp` / `*.part` files are ignored, so writing under such a name and renaming
/// when done is the fastest way to hand a file over. With a top-level `state_dir`, published
/// files are remembered, so a restart neither republishes nor skips one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorySourceConfig {
    /// The directory to read (relative paths start at the pipeline file's directory).
    pub path: PathBuf,
    /// Glob on file names, e.g. `batch-*.mp4`, or a list of globs (a file matches if any
    /// does), e.g. `["*.m4s", "init.mp4"]`.
    #[serde(default = "crate::name_order::default_pattern")]
    pub pattern: Globs,
    /// Glob on the names of files to publish before all others found with them, whatever
    /// their names sort as: the init segments of packagers that write them apart, e.g.
    /// `init*` for ffmpeg's `dash` (`init-stream0.m4s` sorts after `chunk-stream0-00001.m4s`)
    /// and `hls` (`init.mp4`) muxers. Unset: name order only.
    #[serde(default)]
    pub init_pattern: Option<Globs>,
    /// Keep watching for new files (`true`), or publish what is there and finish (`false`).
    #[serde(default = "default_follow")]
    pub follow: bool,
    /// A file counts as complete once renamed into place or unchanged this long.
    #[serde(default = "default_settle")]
    pub settle: HumanDuration,
    /// How long a matching file may stay empty (0 bytes: its writer created it and has not
    /// written it, or crashed) before it fails alone, as `reason: empty`, so that the files
    /// after it go on; it is left in place and offered again when it changes or on the next
    /// start. Until then the files after it wait, to keep the order. Also in one-shot runs
    /// (`follow: false`).
    #[serde(default = "default_empty_timeout")]
    pub empty_timeout: HumanDuration,
    /// What happens to a file once its sink has fully taken it.
    #[serde(default)]
    pub on_done: OnDone,
    /// Where `on_done: move` moves published files (created if missing).
    #[serde(default)]
    pub done_dir: Option<PathBuf>,
    /// How often the directory is rescanned in case filesystem notifications are missed
    /// (network filesystems do not deliver them).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
}

/// What happens to a published file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDone {
    /// Leave it where it is (it is remembered as published when `state_dir` is set).
    #[default]
    Keep,
    /// Delete it.
    Delete,
    /// Move it into `done_dir`.
    Move,
}

fn default_follow() -> bool {
    true
}

fn default_settle() -> HumanDuration {
    DEFAULT_SETTLE
}

fn default_empty_timeout() -> HumanDuration {
    DEFAULT_EMPTY_TIMEOUT
}

fn default_poll_interval() -> HumanDuration {
    DEFAULT_POLL_INTERVAL
}
