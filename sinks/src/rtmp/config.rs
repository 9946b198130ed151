use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::{
    async_trait, check_duration, ComponentContext, ComponentError, FillerSource, HumanDuration,
    ImpliedStage, Pacing, Sink, SinkConfig,
};
use streampub_flv::FlvTagReader;

use super::connection::ConnectionSettings;
use super::rtmp_sink::RtmpSink;
use super::target::Target;
use super::tls::TlsSettings;
use crate::live_output::{
    default_max_lead, InputFormat, PacingMode, FLV_TIMELINE, FMP4_TIMELINE, FMP4_TO_FLV,
    MPEGTS_TIMELINE, MPEGTS_TO_FLV,
};
use crate::reconnect_options::ReconnectOptions;
use crate::rtmp_destination::RtmpDestination;
use crate::tls_options::TlsOptions;

/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);
/// Default `flush_timeout`.
pub const DEFAULT_FLUSH_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);

/// Publishes the pipeline's fragments as one RTMP stream over streampub's own connection: no
/// ffmpeg, and a fragment is published once the server's acknowledgements cover its last byte.
///
/// The fragments go through the timeline stages of `input_format` (`fmp4-timeline` and
/// `fmp4-to-flv` for MP4, `flv-timeline` for FLV, `mpegts-timeline` and `mpegts-to-flv` for
/// MPEG-TS), which the sink puts in front of itself unless the pipeline lists them. The stream key (the URL path after the application) never
/// appears in logs or errors.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RtmpSinkConfig {
    /// Where to publish: `url` (`rtmp://host[:port]/app/key`, or `rtmps://host[:port]/app/key`
    /// for RTMP over TLS, port 443 unless given), or `server_url` and `stream_name`.
    #[serde(flatten)]
    pub destination: RtmpDestination,
    /// The container of the fragments: `mp4` (fragmented MP4), `flv` or `mpegts` (H.264 and
    /// AAC; HEVC, AV1, VP9 and Opus only from MP4).
    #[serde(default)]
    pub input_format: InputFormat,
    /// `realtime`: each FLV tag is sent when the wall clock reaches its time, at most
    /// `max_lead` ahead, so the server receives a steady live signal; `off`: as fast as the
    /// server takes it.
    #[serde(default = "default_pacing")]
    pub pacing: PacingMode,
    /// What plays while upstream is late, on a paced output: `generate` (black video and
    /// silence matching the stream), `none`, or the path of a slate file; as for
    /// `ffmpeg-rtmp`. Default `generate` when paced.
    #[serde(default)]
    pub filler: Option<FillerSource>,
    /// The ffmpeg that makes the filler (the stream itself never goes through ffmpeg).
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
    /// How far ahead of the wall clock paced media may be written.
    #[serde(default = "default_max_lead")]
    pub max_lead: HumanDuration,
    /// How long connecting to the server, the handshake and the start of the publication may
    /// take before the attempt counts as failed.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// How long a clean stop (or a new session after a stream change) may take to have what
    /// was sent confirmed.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: HumanDuration,
    /// `rtmps://`: `tls_verify` and `tls_ca_file`.
    #[serde(flatten)]
    pub tls: TlsOptions,
    /// Reconnects: `max_reconnect_attempts`, `reconnect_delay`, `max_reconnect_delay`.
    #[serde(flatten)]
    pub reconnect: ReconnectOptions,
}

fn default_pacing() -> PacingMode {
    PacingMode::Realtime
}

fn default_ffmpeg() -> PathBuf {
    PathBuf::from("ffmpeg")
}

fn default_connect_timeout() -> HumanDuration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_flush_timeout() -> HumanDuration {
    DEFAULT_FLUSH_TIMEOUT
}

impl RtmpSinkConfig {
    fn target(&self, pipeline: &str) -> Result<Target, ComponentError> {
        let url = self.destination.publish_url(pipeline)?;
        Target::parse(&url, self.destination.url_field())
    }

    fn filler_source(&self) -> FillerSource {
        match &self.filler {
            _ if self.pacing == PacingMode::Off => FillerSource::None,
            Some(source) => source.clone(),
            None => FillerSource::Generate,
        }
    }
}

#[async_trait]
impl SinkConfig for RtmpSinkConfig {
    fn validate(&self, context: &ComponentContext) -> Result<(), ComponentError> {
        self.target(&context.pipeline)?;
        self.tls
            .validate(&self.destination.publish_url(&context.pipeline)?, context)?;
        if self.pacing == PacingMode::Off
            && self
                .filler
                .as_ref()
                .is_some_and(|source| *source != FillerSource::None)
        {
            return Err(ComponentError::field(
                "filler",
                "filler plays only on a paced output (`pacing: realtime`); remove `filler` or \
                 pace",
            ));
        }
        check_duration("max_lead", self.max_lead, true)?;
        check_duration("connect_timeout", self.connect_timeout, false)?;
        check_duration("flush_timeout", self.flush_timeout, false)?;
        self.reconnect.policy().map(drop)
    }

    async fn build(&self, context: &ComponentContext) -> Result<Box<dyn Sink>, ComponentError> {
        let target = self.target(&context.pipeline)?;
        let tls = match target.secure {
            true => Some(TlsSettings::new(&self.tls, context, &target.host)?),
            false => None,
        };
        self.tls.warn_if_unverified(
            &self.destination.publish_url(&context.pipeline)?,
            &context.pipeline,
        );
        Ok(Box::new(RtmpSink {
            settings: ConnectionSettings {
                pipeline: context.pipeline.clone(),
                sink: context.sink.clone(),
                target,
                tls,
                connect_timeout: self.connect_timeout.get(),
                after_outage: false,
            },
            policy: self.reconnect.policy()?,
            pacing: (self.pacing == PacingMode::Realtime).then(|| Pacing {
                max_lead: self.max_lead.get(),
                filler: self.filler_source() != FillerSource::None,
            }),
            flush_timeout: self.flush_timeout.get(),
            connection: None,
            reader: FlvTagReader::default(),
            tags: Vec::new(),
        }))
    }

    fn paced(&self) -> bool {
        self.pacing == PacingMode::Realtime
    }

    fn implied_stages(&self) -> Vec<ImpliedStage> {
        let filler = serde_json::json!({
            "filler": self.filler_source(),
            "ffmpeg": self.ffmpeg,
        });
        match self.input_format {
            InputFormat::Flv => vec![ImpliedStage::new(FLV_TIMELINE, filler)],
            InputFormat::Mpegts => vec![
                ImpliedStage::new(MPEGTS_TIMELINE, filler),
                ImpliedStage::new(MPEGTS_TO_FLV, serde_json::json!({})),
            ],
            InputFormat::Mp4 => {
                // This sink speaks enhanced RTMP: HEVC, AV1, VP9 and Opus become FourCC tags.
                let mut conversion = filler;
                conversion["enhanced_rtmp"] = serde_json::Value::Bool(true);
                vec![
                    ImpliedStage::new(FMP4_TIMELINE, serde_json::json!({})),
                    ImpliedStage::new(FMP4_TO_FLV, conversion),
                ]
            }
        }
    }
}
