use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::check_duration;
use streampub_core::plugin::{
    async_trait, ComponentContext, ComponentError, FillerSource, HumanDuration, ImpliedStage,
    Pacing, Sink, SinkConfig,
};
use streampub_core::register_sink;

use super::arguments::{ffmpeg_args, ffmpeg_read_ahead, tls_args};
use super::stderr::FfmpegStderr;
use crate::live_output::{
    default_max_lead, InputFormat, PacingMode, FLV_TIMELINE, FMP4_TIMELINE, FMP4_TO_FLV,
    MPEGTS_TIMELINE,
};
use crate::process::{ProcessCommand, ProcessOptions, ProgressConfirmation};
use crate::reconnect_options::ReconnectOptions;
use crate::rtmp_destination::{rtmp_redactor, RtmpDestination};
use crate::tls_options::TlsOptions;
use streampub_core::plugin::find_program;

register_sink!(
    FfmpegRtmpSinkConfig,
    "ffmpeg-rtmp",
    "Publishes to an RTMP server (SRS, nginx-rtmp) through a long-lived ffmpeg fed on stdin",
);

/// Publishes the pipeline's fragments as one RTMP stream through a long-lived ffmpeg.
///
/// ffmpeg is started when the first bytes are to be written and restarted with backoff when it fails
/// (it exits, the pipe breaks, the server refuses or still holds the old session); the fragment
/// in flight is then sent again from its start. The stream key (the URL path after the
/// application) never appears in logs or errors.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FfmpegRtmpSinkConfig {
    /// Where to publish: `url`, or `server_url` and `stream_name`.
    #[serde(flatten)]
    pub destination: RtmpDestination,
    /// The ffmpeg program; looked up on `PATH` unless it contains a `/`.
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
    /// The container of the fragments.
    #[serde(default)]
    pub input_format: InputFormat,
    /// `auto` puts the timeline stage of `input_format` in front of ffmpeg (`fmp4-timeline`
    /// then `fmp4-to-flv` for `mp4`, so that ffmpeg reads FLV; `flv-timeline` for `flv`;
    /// `mpegts-timeline` for `mpegts`) unless the pipeline lists it already, so the fragments become one continuous stream; `off` writes the files as they
    /// are (timestamps then restart in every file, which players and servers handle badly).
    #[serde(default)]
    pub continuity: Continuity,
    /// What ffmpeg reads when MP4 fragments go through the timeline (`continuity: auto`):
    /// `flv` (the `fmp4-to-flv` stage turns the samples into FLV tags: ffmpeg's memory stays
    /// flat and each sample leaves at once; H.264 and AAC only), or `mp4` (the continuous fMP4
    /// as it is: for codecs FLV carries only with enhanced RTMP, such as HEVC with ffmpeg 6.1
    /// or newer; ffmpeg's MP4 reader grows about 2.5 KB per second of media).
    #[serde(default)]
    pub ffmpeg_input: FfmpegInput,
    /// `realtime`: streampub writes each FLV tag into ffmpeg when the wall clock reaches its
    /// time, at most `max_lead` ahead, so the server receives a steady live signal (servers
    /// drop publishers that fall silent for a few seconds: SRS after 5 s by default). The
    /// clock is anchored at the first tag and kept across fragments. `off`: as fast as ffmpeg
    /// takes it (bursts, then silence until the next fragment: a server's idle timeout may
    /// drop the session). Default: `realtime` with `continuity: auto` (MP4 fragments with
    /// `ffmpeg_input: flv`, the default; FLV and MPEG-TS batches by their own timestamps)
    /// unless `use_rate_limit` is set; `off` for `ffmpeg_input: mp4` and `continuity: off`,
    /// which cannot be paced (setting `realtime` there is an error).
    #[serde(default)]
    pub pacing: Option<PacingMode>,
    /// What plays while upstream is late, on a paced output: `generate` (black video and
    /// silence that ffmpeg makes to match the stream once its first fragment is seen),
    /// `none` (the output waits: after `max_lead` the server gets nothing and may drop the
    /// session), or the path of a slate file (converted once by ffmpeg to the stream's size,
    /// frame rate and audio, whatever the AAC channel layout and rate). The filler loops from its
    /// first keyframe; the late fragment takes over as soon as it arrives. Default `generate`
    /// when paced. For streams of H.264 and AAC (whatever the container); others log
    /// `filler_failed` and wait.
    #[serde(default)]
    pub filler: Option<FillerSource>,
    /// How far ahead of the wall clock paced media may be written.
    #[serde(default = "default_max_lead")]
    pub max_lead: HumanDuration,
    /// Add `-re`: ffmpeg reads the input at its native frame rate.
    #[serde(default)]
    pub use_rate_limit: bool,
    /// Extra ffmpeg arguments placed before `-i pipe:0`.
    #[serde(default)]
    pub input_args: Vec<String>,
    /// Replace the default output arguments (`-c copy -avoid_negative_ts make_zero -f flv`);
    /// the URL always comes last.
    #[serde(default)]
    pub output_args: Option<Vec<String>>,
    /// A fragment counts as published once ffmpeg's output has passed its end by this much
    /// media time (ffmpeg reports how far its output has got; what it has output may still sit
    /// in socket buffers). Raise it on links that buffer more. Applies when a timeline stage
    /// tells where each fragment ends (`continuity: auto`, every input format); with
    /// `continuity: off` fragments are confirmed once ffmpeg has read its probe size beyond
    /// them, which is coarser. At most a day.
    #[serde(default = "default_confirm_margin")]
    pub confirm_margin: HumanDuration,
    /// `rtmps://`: `tls_verify` and `tls_ca_file`.
    #[serde(flatten)]
    pub tls: TlsOptions,
    /// Restarts, the stdin pipe and shutdown, as for the `process` sink.
    #[serde(flatten)]
    pub process: ProcessOptions,
    /// Restarts: `max_reconnect_attempts`, `reconnect_delay`, `max_reconnect_delay`.
    #[serde(flatten)]
    pub reconnect: ReconnectOptions,
}

/// What ffmpeg reads for MP4 fragments with `continuity: auto`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FfmpegInput {
    /// FLV tags made by the `fmp4-to-flv` stage.
    #[default]
    Flv,
    /// The timeline's fragmented MP4.
    Mp4,
}

/// Whether the sink joins MP4 fragments into one timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Continuity {
    /// Apply the timeline stage of `input_format`.
    #[default]
    Auto,
    /// Pass the fragments through unchanged.
    Off,
}

/// Default `confirm_margin`: on loopback and ordinary links, far more than sits in socket
/// buffers; a repeat after an outage is this much longer.
pub const DEFAULT_CONFIRM_MARGIN: HumanDuration = HumanDuration::from_secs(1);

fn default_confirm_margin() -> HumanDuration {
    DEFAULT_CONFIRM_MARGIN
}

fn default_ffmpeg() -> PathBuf {
    PathBuf::from("ffmpeg")
}

impl FfmpegRtmpSinkConfig {
    /// What ffmpeg reads from its stdin: FLV when MP4 goes through the timeline and the
    /// `fmp4-to-flv` stage (ffmpeg's FLV demuxer keeps no index, so its memory stays flat, and
    /// it passes each sample on at once); else the fragments' own format.
    fn ffmpeg_reads(&self) -> InputFormat {
        match (self.input_format, self.continuity, self.ffmpeg_input) {
            (InputFormat::Mp4, Continuity::Auto, FfmpegInput::Flv) => InputFormat::Flv,
            (format, _, _) => format,
        }
    }

    /// Whether this input can be paced: its timeline stages mark media times (MP4 fragments
    /// made into FLV tags, FLV batches, MPEG-TS batches); not the fMP4 of `ffmpeg_input: mp4`,
    /// which ffmpeg reads a whole box at a time.
    fn can_pace(&self) -> bool {
        self.continuity == Continuity::Auto
            && (self.input_format != InputFormat::Mp4 || self.ffmpeg_input == FfmpegInput::Flv)
    }

    /// Whether streampub paces what it writes (see `pacing`).
    fn paces(&self) -> bool {
        match self.pacing {
            Some(PacingMode::Realtime) => true,
            Some(PacingMode::Off) => false,
            None => self.can_pace() && !self.use_rate_limit,
        }
    }

    /// What fills gaps: nothing unless paced and fillable.
    fn filler_source(&self) -> FillerSource {
        match &self.filler {
            _ if !self.paces() => FillerSource::None,
            Some(source) => source.clone(),
            None => FillerSource::Generate,
        }
    }
}

#[async_trait]
impl SinkConfig for FfmpegRtmpSinkConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        self.destination.publish_url(&context.pipeline)?;
        if find_program(&self.ffmpeg).is_none() {
            let message = if self.ffmpeg == default_ffmpeg() {
                "ffmpeg not found on PATH; Debian: apt-get install ffmpeg".to_owned()
            } else {
                format!("{} not found or not executable", self.ffmpeg.display())
            };
            return Err(ComponentError::field("ffmpeg", message));
        }
        check_duration("confirm_margin", self.confirm_margin, true)?;
        check_duration("max_lead", self.max_lead, true)?;
        self.tls
            .validate(&self.destination.publish_url(&context.pipeline)?, context)?;
        if self.pacing == Some(PacingMode::Realtime) {
            if self.use_rate_limit {
                return Err(ComponentError::field(
                    "pacing",
                    "`pacing: realtime` and `use_rate_limit` (ffmpeg's -re) both pace; keep one",
                ));
            }
            if !self.can_pace() {
                return Err(ComponentError::field(
                    "pacing",
                    "`pacing: realtime` needs a timeline stage that marks media times \
                     (`continuity: auto`) and, for MP4 fragments, `ffmpeg_input: flv`; for \
                     `ffmpeg_input: mp4` use `use_rate_limit: true`",
                ));
            }
        }
        if self
            .filler
            .as_ref()
            .is_some_and(|source| !self.paces() && *source != FillerSource::None)
        {
            return Err(ComponentError::field(
                "filler",
                "filler plays only on a paced output, and this one is not paced \
                 (`pacing: off`, `use_rate_limit`, `ffmpeg_input: mp4` or `continuity: \
                 off`): let streampub pace, or remove `filler`",
            ));
        }
        self.process.validate()?;
        self.reconnect.policy().map(drop)
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
        let url = self.destination.publish_url(&context.pipeline)?;
        self.tls.warn_if_unverified(&url, &context.pipeline);
        let ca_file = self
            .tls
            .tls_ca_file
            .as_ref()
            .map(|path| context.resolve_path(path));
        let args = ffmpeg_args(
            self.ffmpeg_reads().ffmpeg_name(),
            self.use_rate_limit,
            self.continuity == Continuity::Off,
            &self.input_args,
            self.output_args.as_deref(),
            tls_args(&url, self.tls.tls_verify, ca_file.as_deref()),
            &url,
        );
        let command = ProcessCommand {
            program: self.ffmpeg.clone(),
            args,
            label: "ffmpeg".into(),
            pipeline: context.pipeline.clone(),
            sink: context.sink.clone(),
            redactor: rtmp_redactor(),
            pipe_buffer: None,
            stall_timeout: None,
            stdout: None,
            dialect: Arc::new(FfmpegStderr),
            progress: Some(ProgressConfirmation {
                confirm_margin: self.confirm_margin.get(),
                read_ahead: ffmpeg_read_ahead(&self.input_args),
            }),
            pacing: self.paces().then(|| Pacing {
                max_lead: self.max_lead.get(),
                filler: self.filler_source() != FillerSource::None,
            }),
        };
        Ok(Box::new(self.process.sink(command, &self.reconnect)?))
    }

    fn paced(&self) -> bool {
        self.paces()
    }

    fn implied_stages(&self) -> Vec<ImpliedStage> {
        if self.continuity == Continuity::Off {
            return Vec::new();
        }
        let filler = serde_json::json!({
            "filler": self.filler_source(),
            "ffmpeg": self.ffmpeg,
        });
        match self.input_format {
            InputFormat::Mp4 if self.ffmpeg_input == FfmpegInput::Flv => vec![
                ImpliedStage::new(FMP4_TIMELINE, serde_json::json!({})),
                ImpliedStage::new(FMP4_TO_FLV, filler),
            ],
            InputFormat::Mp4 => vec![ImpliedStage::new(FMP4_TIMELINE, serde_json::json!({}))],
            InputFormat::Flv => vec![ImpliedStage::new(FLV_TIMELINE, filler)],
            InputFormat::Mpegts => vec![ImpliedStage::new(MPEGTS_TIMELINE, filler)],
        }
    }
}
