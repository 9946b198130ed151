//! Sinks consume fragments.

use async_trait::async_trait;
use bytes::Bytes;

use crate::chunk::FileRange;
use crate::component::{ComponentContext, ComponentError};
use crate::fragment::{FragmentInfo, MediaSpan};
use crate::reconnect::ReconnectPolicy;

/// A sink's parsed config.
#[async_trait]
pub trait SinkConfig: Send + Sync + std::fmt::Debug {
    /// Checks the options and the environment without side effects (`streampub validate` runs
    /// only this).
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError>;
    /// Makes the sink when the pipeline starts.
    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError>;

    /// Stages this sink needs in front of it (e.g. the MP4 timeline for an RTMP sink fed MP4),
    /// by registered type and options. Loading the config appends each one the pipeline does
    /// not already list, after the listed ones: found in the registry, parsed, validated and
    /// built like a listed stage, its errors located at the sink.
    fn implied_stages(&self) -> Vec<ImpliedStage> {
        Vec::new()
    }

    /// Whether the sink writes by the wall clock (paced in real time): it takes media no faster
    /// than it plays, so its pipeline reads smaller chunks within a smaller budget unless the
    /// file sets them (`PACED_CHUNK_SIZE`, `PACED_MAX_IN_FLIGHT`): memory per live stream, not
    /// read speed, is what such a pipeline costs.
    fn paced(&self) -> bool {
        false
    }

    /// Whether the sink discards what it takes, so that a pipeline into it measures the rest
    /// of the pipeline: `streampub run` then prints the pipeline's throughput summary.
    fn discards_output(&self) -> bool {
        false
    }
}

/// A stage a sink needs in front of it: its `type` and its options, as a pipeline file would
/// give them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpliedStage {
    /// The stage's `type`, as registered.
    pub type_name: &'static str,
    /// A mapping of the stage's options; unset ones take the stage's defaults.
    pub options: serde_json::Value,
}

impl ImpliedStage {
    /// The stage `type_name` with `options` (a JSON object).
    pub fn new(type_name: &'static str, options: serde_json::Value) -> Self {
        Self { type_name, options }
    }
}

/// A running sink. The runtime calls, per fragment, `begin_fragment`, `write_chunk` for each
/// chunk in order, then `end_fragment` once every byte has been accepted.
///
/// A fragment is acknowledged to its source only once the sink has really taken it. For most
/// sinks that is when `end_fragment` returns (flushed, synced). A sink whose downstream takes
/// bytes later (a process that reads ahead before it publishes) reports through
/// [`Sink::unconfirmed`] how many of the most recently ended fragments it has not really taken
/// yet; the runtime keeps those and acknowledges them as the count drops, or when `close`
/// succeeds.
///
/// If reading or a stage fails mid-fragment, `abort_fragment` is called instead of
/// `end_fragment` and should undo what it can. When a call fails with a retryable error, the
/// runtime waits according to the sink's reconnect policy, calls `start_session`, and sends
/// every unconfirmed fragment and the one in flight again, in order: from their starts, but
/// the first from inside when the sink confirmed part of it (see
/// [`Sink::confirmed_output_time`]). `close`
/// is called once at the end; a retryable error from it (with fragments unconfirmed) is handled
/// the same way.
#[async_trait]
pub trait Sink: Send {
    /// A fragment begins; its chunks follow.
    async fn begin_fragment(&mut self, fragment: &FragmentInfo) -> Result<(), SinkError>;

    /// Takes the next chunk of the fragment (returning applies backpressure: the runtime reads
    /// no further ahead than its budget while this waits).
    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SinkError>;

    /// What the sink is, for the runtime: asked once, before anything is sent.
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::default()
    }

    /// Writes a part of a file; called instead of `write_chunk` for file-backed chunks when
    /// [`SinkCapabilities::file_ranges`] is true. By default the range is read and written as bytes.
    async fn write_file_range(&mut self, range: FileRange) -> Result<(), SinkError> {
        let bytes = range
            .read()
            .await
            .map_err(|error| SinkError::fatal(format!("reading a fragment failed: {error}")))?;
        self.write_chunk(bytes).await
    }

    /// Where the part of the current fragment sent in this session lies on the session's
    /// output timeline, when a stage knows it (see [`MediaSpan`]): counted from the session's
    /// first media, which is where an output that reports its own time (ffmpeg's `out_time`)
    /// counts from. Called between `begin_fragment` and `end_fragment`. A sink that can tell
    /// how far its output has got in media time confirms fragments by it.
    fn media_span(&mut self, _span: MediaSpan) {}

    /// How much of the current session's media the output has confirmed, on the same
    /// timeline as [`Sink::media_span`]; `None` if the sink cannot tell. After a failure the
    /// runtime sends the fragment it cut short again from its last keyframe at or before this
    /// point, not from its start; a session that confirmed more than every one before it ends
    /// the outage.
    fn confirmed_output_time(&mut self) -> Option<std::time::Duration> {
        None
    }

    /// The fragment is whole: return only once its bytes are really taken, which is when the
    /// runtime counts it as published (unless [`Sink::unconfirmed`] says otherwise).
    async fn end_fragment(&mut self) -> Result<(), SinkError>;

    /// The fragment begun last will not be finished (it failed, or the pipeline stops inside
    /// it): drop what was taken of it, so that what follows does not continue it.
    async fn abort_fragment(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Starts a new session: reconnect, or restart the downstream process.
    ///
    /// After a failure (`SessionReason::Reconnect`) the runtime sends every unconfirmed
    /// fragment again, so the old session may simply be dropped. When the stream changed
    /// (`SessionReason::StreamChanged`) nothing is resent: the old session must finish what it
    /// took, or fail with a retryable error so that the runtime resends its unconfirmed
    /// fragments.
    async fn start_session(&mut self, _reason: SessionReason) -> Result<(), SinkError> {
        Ok(())
    }

    /// How many of the fragments ended most recently are not yet really taken (see above).
    fn unconfirmed(&mut self) -> usize {
        0
    }

    /// Since when the current session's output is live (an RTMP publisher has been sending
    /// media), or `None` while it is not. The runtime logs a reconnect as done only once it
    /// is; by default, at once.
    fn output_live_since(&mut self) -> Option<std::time::Instant> {
        Some(std::time::Instant::now())
    }

    /// Called once before the first fragment with what the pipeline remembers of the sink's
    /// output (see [`ResumeFrom`]). Returns whether the output continues the stream of the
    /// earlier run: then the stages get their saved state back, so the stream goes on where it
    /// stopped (an archive's timeline continues without a second init segment). `false` starts
    /// a new stream (a new RTMP session does). An output that contradicts the saved state (an
    /// archive shorter than recorded, or replaced) must fail with a fatal error naming the
    /// remedy; it must never be silently continued.
    async fn resume(&mut self, _from: ResumeFrom) -> Result<bool, SinkError> {
        Ok(false)
    }

    /// The sink's own state after the fragment it ended last (an archive's length), saved with
    /// the pipeline's checkpoint once that fragment is confirmed and handed back to
    /// [`Sink::resume`] on the next start; `None` if it keeps none. Called only with a
    /// `state_dir`.
    fn checkpoint(&self) -> Option<serde_json::Value> {
        None
    }

    /// The pipeline ends: flush and let go of what the sink holds.
    async fn close(&mut self) -> Result<(), SinkError>;
}

/// What a sink is, fixed for its life; by default: bytes only, not paced, never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkCapabilities {
    /// Whether the sink takes file-backed chunks as [`FileRange`]s, to move them without
    /// reading them into memory (`splice`). The runtime sends ranges only when no stage sits
    /// between the chunking stage and the sink.
    pub file_ranges: bool,
    /// Whether the runtime paces what it writes into this sink by the wall clock (a live
    /// output), and how.
    pub pacing: Option<Pacing>,
    /// How the runtime retries this sink after a retryable error.
    pub reconnect: ReconnectPolicy,
}

impl Default for SinkCapabilities {
    fn default() -> Self {
        Self {
            file_ranges: false,
            pacing: None,
            reconnect: ReconnectPolicy::NEVER,
        }
    }
}

/// Real-time pacing: media marked with a time (see [`crate::stage::StageItem::MediaTime`]) is
/// written no earlier than the wall clock reaches it, at most `max_lead` ahead. The clock is
/// anchored at the first media time and kept across fragments; media that falls further
/// behind than `max_lead` (upstream was late) anchors it again, so the output follows the wall
/// clock instead of bursting to catch up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// How far ahead of the wall clock media may be written.
    pub max_lead: std::time::Duration,
    /// Whether the stream goes on with filler (see [`crate::plugin::Stage::fill`]) when the next
    /// fragment is not there as the last one runs out.
    pub filler: bool,
}

/// What the pipeline remembers of a sink's output when it starts.
#[derive(Debug, Clone, PartialEq)]
pub enum ResumeFrom {
    /// No `state_dir`: nothing is remembered across runs.
    Nothing,
    /// A `state_dir`, but no fragment has been acknowledged there yet: a new stream begins.
    Start,
    /// What [`Sink::checkpoint`] returned after the last fragment acknowledged in an earlier
    /// run.
    Saved(serde_json::Value),
}

/// Why the runtime starts a new sink session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionReason {
    /// The previous session failed.
    Reconnect,
    /// A stage found that the stream changed (a new codec configuration); `change` says how.
    StreamChanged {
        /// What changed, in words.
        change: String,
    },
}

/// A sink failure, and whether starting a new session may cure it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What went wrong, for the logs and `/healthz`.
    pub message: String,
    /// Whether a new session may cure it (the runtime reconnects with backoff), or it lasts
    /// (the destination fails).
    pub retryable: bool,
}

impl SinkError {
    /// A failure that a new session will not cure (an unwritable path, a full disk).
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that a new session may cure (a dropped connection, a crashed process).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}
