//! How a fragment that failed is told: one line, one count, then its source is told.

use std::sync::Arc;

use tracing::warn;

use crate::fragment::{Fragment, FragmentOutcome};
use crate::runtime::stats::PipelineStats;

/// The one line and count of a fragment that failed: what happened (`reason`: `empty`,
/// `unreadable`, `refused` by a stage, `sink_failed` for good) and what its source does with
/// it; then the source is told.
pub(crate) fn fail_fragment(
    pipeline: &str,
    stats: &PipelineStats,
    fragment: Fragment,
    reason: &'static str,
    message: Arc<str>,
) {
    warn!(
        event = "fragment_failed",
        pipeline = %pipeline,
        sink = stats.sink(),
        fragment = %fragment.info.name,
        sequence = fragment.info.sequence,
        reason,
        error = %message,
        then = %fragment.if_failed(),
        "Fragment {} ({}) failed: {message}; {}",
        fragment.info.sequence,
        fragment.info.name,
        fragment.if_failed()
    );
    stats.record_failed();
    fragment.acknowledge(FragmentOutcome::Failed(message));
}
