//! The FLV timeline's state between fragments, as the pipeline's checkpoint keeps it: the
//! stream's file header, its decoder configurations and where the next file starts. Restored on
//! start when the sink continues its output (an append archive), so the stream goes on without
//! a second file header and without timestamps starting again at zero.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streampub_core::plugin::StageError;

use super::stream_state::{Configurations, FlvTimeline};

/// What is saved; byte strings in hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedFlvTimeline {
    header: Option<String>,
    video_configuration: Option<String>,
    audio_configuration: Option<String>,
    /// Where the next file starts, in milliseconds.
    offset_ms: u64,
}

impl SavedFlvTimeline {
    pub(super) fn of(stage: &FlvTimeline) -> Self {
        Self {
            header: stage.header.map(hex::encode),
            video_configuration: stage.configurations.video.as_ref().map(hex::encode),
            audio_configuration: stage.configurations.audio.as_ref().map(hex::encode),
            offset_ms: stage.offset,
        }
    }

    /// Puts this state into `stage` (which has seen no fragment yet).
    pub(super) fn restore_into(self, stage: &mut FlvTimeline) -> Result<(), StageError> {
        let invalid =
            |what: &str| StageError::new(format!("the saved FLV timeline state has {what}"));
        let bytes = |text: Option<String>| -> Result<Option<Bytes>, StageError> {
            text.map(|text| {
                hex::decode(text)
                    .map(Bytes::from)
                    .map_err(|_| invalid("unreadable bytes"))
            })
            .transpose()
        };
        stage.header = match bytes(self.header)? {
            None => None,
            Some(header) => Some(
                header
                    .as_ref()
                    .try_into()
                    .map_err(|_| invalid("a file header that is not 9 bytes"))?,
            ),
        };
        stage.configurations = Configurations {
            video: bytes(self.video_configuration)?,
            audio: bytes(self.audio_configuration)?,
        };
        stage.offset = self.offset_ms;
        // The output it continues has its file header already.
        stage.header_written = stage.header.is_some();
        Ok(())
    }
}
