//! The sink driver's state: the sink, its stages and everything a fragment's delivery, its
//! confirmation and a reconnect keep track of. Each concern adds its methods in a module of its
//! own (`delivery`, `recovery`, `filler`, and the main loop in the parent).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::confirmations::Confirmations;
use super::failure::fail_fragment;
use super::filler_state::FillerState;
use super::outages::Outages;
use super::resume::MediaClock;
use crate::fragment::Fragment;
use crate::runtime::error::PipelineError;
use crate::runtime::lane_queue::LaneSignal;
use crate::runtime::pacer::Pacer;
use crate::runtime::stages::StageChain;
use crate::runtime::stats::PipelineStats;
use crate::sink::Sink;

pub(crate) struct SinkDriver {
    pub(crate) pipeline: String,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) stages: StageChain,
    pub(crate) stats: Arc<PipelineStats>,
    /// For reading a fragment again after a reconnect.
    pub(crate) chunk_size: usize,
    /// Cancelled on shutdown: the fragment in flight may finish, no new one starts.
    pub(crate) shutdown: CancellationToken,
    pub(crate) shutdown_timeout: Duration,
    /// Fragments the sink has ended but not yet confirmed.
    pub(crate) confirmations: Confirmations,
    /// Failures since the last session that did its job.
    pub(crate) outages: Outages,
    /// The wall clock a paced sink is written by.
    pub(crate) pacer: Option<Pacer>,
    /// Filler while upstream is late (paced sinks that fill).
    pub(crate) filler: FillerState,
    /// The media times written, to resume a fragment cut short from inside.
    pub(crate) clock: MediaClock,
    /// What a fan-out's destination tells the dispatcher (down, pacing); `None` alone.
    pub(crate) signal: Option<Arc<LaneSignal>>,
}

impl SinkDriver {
    /// Tells a fan-out's dispatcher that the sink is down (reconnecting) or back.
    pub(super) fn signal_down(&self, down: bool) {
        self.stats.set_in_outage(down);
        if let Some(signal) = &self.signal {
            signal.set_down(down);
        }
    }

    /// A fragment whose input or a stage failed (`reason`: `empty`, `unreadable`, `refused`).
    pub(super) fn fail(&self, fragment: Fragment, reason: &'static str, message: String) {
        fail_fragment(
            &self.pipeline,
            &self.stats,
            fragment,
            reason,
            message.into(),
        );
    }

    /// A fragment lost with the sink, which failed for good with `error`.
    pub(super) fn fail_for_sink(&self, fragment: Fragment, error: &PipelineError) {
        let message = error.to_string().into();
        fail_fragment(
            &self.pipeline,
            &self.stats,
            fragment,
            "sink_failed",
            message,
        );
    }
}
