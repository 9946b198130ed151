//! The timeline's state between fragments, as the pipeline's checkpoint keeps it: the init
//! segment the output began with, the next `mfhd` sequence number and where the next file
//! starts. Restored on start when the sink continues its output (an append archive), so the
//! stream goes on without a second init segment and without `tfdt` starting again at zero.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::StageError;

use super::seconds::Seconds;
use super::stream_state::{Fmp4Timeline, InitSegment};
use crate::formats::mp4::boxes::children;
use crate::formats::mp4::{describe_moov, FourCc};

/// What is saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedTimeline {
    /// The `ftyp` and `moov` the output began with, in hexadecimal; `None` before the first
    /// file.
    init: Option<String>,
    next_sequence: u32,
    /// Where the next file starts on the output timeline: an exact fraction of seconds, as
    /// decimal strings (the integers outgrow what JSON numbers hold exactly).
    offset_numerator: String,
    offset_denominator: String,
}

impl SavedTimeline {
    pub(super) fn of(stage: &Fmp4Timeline) -> Self {
        Self {
            init: stage.init.as_ref().map(|init| hex::encode(&init.bytes)),
            next_sequence: stage.next_sequence,
            offset_numerator: stage.offset.numerator.to_string(),
            offset_denominator: stage.offset.denominator.to_string(),
        }
    }

    /// Puts this state into `stage` (which has seen no fragment yet).
    pub(super) fn restore_into(self, stage: &mut Fmp4Timeline) -> Result<(), StageError> {
        let invalid = |what: &str| StageError::new(format!("the saved timeline state has {what}"));
        let numerator = self
            .offset_numerator
            .parse()
            .map_err(|_| invalid("an unreadable offset"))?;
        let denominator: u128 = self
            .offset_denominator
            .parse()
            .map_err(|_| invalid("an unreadable offset"))?;
        if denominator == 0 {
            return Err(invalid("an offset with a zero denominator"));
        }
        stage.init = match self.init {
            None => None,
            Some(text) => {
                let bytes = hex::decode(text).map_err(|_| invalid("an unreadable init segment"))?;
                Some(InitSegment {
                    tracks: tracks_of(&bytes).ok_or_else(|| invalid("no usable moov"))?,
                    bytes: Bytes::from(bytes),
                })
            }
        };
        stage.next_sequence = self.next_sequence;
        stage.offset = Seconds {
            numerator,
            denominator,
        };
        Ok(())
    }
}

/// The tracks the `moov` among `init`'s boxes describes.
fn tracks_of(init: &[u8]) -> Option<Vec<crate::formats::mp4::TrackDescription>> {
    let moov = children(init).find_map(|entry| match entry {
        Ok((kind, payload)) if kind == FourCc::MOOV => Some(payload),
        _ => None,
    })?;
    describe_moov(moov).ok().flatten()
}
