//! What the sink driver knows for filling: where the media written so far ends, and the gap
//! being filled while upstream is late.

use std::time::Duration;

use tokio::time::Instant;

/// What the driver knows for filling.
#[derive(Debug, Default)]
pub(crate) struct FillerState {
    /// Where the media written so far ends on the timeline: the last fragment's span, or the
    /// filler after it.
    pub(super) timeline_end: Option<Duration>,
    /// The gap being filled, if upstream is late now.
    pub(super) gap: Option<Gap>,
    /// The stages could not fill: no filler for the rest of the run.
    pub(super) failed: bool,
    /// The fragment that began last, to name the one that is late.
    pub(super) last_sequence: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Gap {
    /// Where on the timeline the filler began.
    pub(super) from: Duration,
    /// When the wall clock reached `from`: the late fragment was due then.
    pub(super) due: Instant,
}

impl FillerState {
    /// The media written so far now ends at `end` (a fragment's span was written).
    pub(crate) fn written_until(&mut self, end: Duration) {
        self.timeline_end = Some(end);
    }
}
