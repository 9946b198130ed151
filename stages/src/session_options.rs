//! The options every stage that keeps an output session's timeline shares: when a session
//! ends, and what plays while upstream is late.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{ComponentError, HumanDuration};

use crate::filler::{default_ffmpeg, validate_filler, FillerSource};
use crate::session_limit::{default_session_limit, validate_session_limit, SessionLimit};
use crate::timeline_engine::{TimelineEngine, TimelineFormat};

/// `session_limit`, `filler` and `ffmpeg` of `flv-timeline`, `mpegts-timeline` and
/// `fmp4-to-flv` (flattened into each stage's config).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct SessionOptions {
    /// A session that has carried this much media ends at the next fragment boundary and a new
    /// one begins (a planned reconnect; each session's output timestamps start at 0), before
    /// FLV's and RTMP's 32-bit millisecond timestamps wrap. At most 24 days (the default).
    #[serde(default = "default_session_limit")]
    pub session_limit: HumanDuration,
    /// What plays while upstream is late, when the sink is paced and asks for filler:
    /// `generate`, `none`, or a slate file's path; H.264 and AAC streams only. By default
    /// `none` on `flv-timeline` and `mpegts-timeline`, `generate` on `fmp4-to-flv`; the sinks
    /// set it on the stages they add themselves (see `filler` on `ffmpeg-rtmp`).
    #[serde(default)]
    pub filler: Option<FillerSource>,
    /// The ffmpeg program that makes the filler; looked up on `PATH` unless it contains a `/`.
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            session_limit: default_session_limit(),
            filler: None,
            ffmpeg: default_ffmpeg(),
        }
    }
}

impl SessionOptions {
    pub(crate) fn validate(&self) -> Result<(), ComponentError> {
        validate_session_limit(self.session_limit)?;
        self.filler.as_ref().map_or(Ok(()), validate_filler)
    }

    /// The `filler` given, or the stage's default.
    pub(crate) fn filler_or(&self, default: FillerSource) -> FillerSource {
        self.filler.clone().unwrap_or(default)
    }
}

/// A format whose sessions have a limit and whose gaps a filler plays.
pub(crate) trait SessionSettings {
    fn set_session_limit(&mut self, limit: SessionLimit);
    /// Fills gaps with `source`, made or converted by the program `ffmpeg`.
    fn set_filler(&mut self, source: FillerSource, ffmpeg: PathBuf);
}

impl<F: TimelineFormat + SessionSettings> TimelineEngine<F> {
    /// Ends a session that has carried `limit` of media at the next fragment boundary.
    pub(crate) fn with_session_limit(mut self, limit: Duration) -> Self {
        self.format_mut()
            .set_session_limit(SessionLimit::new(limit));
        self
    }

    /// Fills gaps with `source`, made or converted by the program `ffmpeg`.
    pub(crate) fn with_filler(mut self, source: FillerSource, ffmpeg: PathBuf) -> Self {
        self.format_mut().set_filler(source, ffmpeg);
        self
    }

    /// Both, as `options` say (`default_filler` where they give no `filler`).
    pub(crate) fn with_session_options(
        self,
        options: &SessionOptions,
        default_filler: FillerSource,
    ) -> Self {
        self.with_session_limit(options.session_limit.get())
            .with_filler(options.filler_or(default_filler), options.ffmpeg.clone())
    }
}
