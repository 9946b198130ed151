//! The MPEG-TS timeline's state between fragments, as the pipeline's checkpoint keeps it, for
//! an archive that continues after a restart: where the next file starts and the last
//! continuity counter of each PID.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stream_state::MpegtsTimeline;

/// What is saved.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedMpegtsTimeline {
    /// Where the next file starts, in 90 kHz ticks, unwrapped.
    offset_ticks: u64,
    continuity: BTreeMap<u16, u8>,
}

impl SavedMpegtsTimeline {
    pub(super) fn of(stage: &MpegtsTimeline) -> Self {
        Self {
            offset_ticks: stage.position,
            continuity: stage
                .continuity
                .iter()
                .map(|(pid, counter)| (*pid, *counter))
                .collect(),
        }
    }

    /// Puts this state into `stage` (which has seen no fragment yet).
    pub(super) fn restore_into(self, stage: &mut MpegtsTimeline) {
        stage.position = self.offset_ticks;
        stage.continuity = self.continuity.into_iter().collect();
    }
}
