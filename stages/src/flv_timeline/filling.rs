//! Filler between FLV files while upstream is late: the clip of [`crate::formats::flv::filler`], made to
//! match the stream's size, frame rate and audio (read from its sequence headers and the
//! intervals between its video tags), played on the stream's timeline; the next file starts
//! after it. Sequence headers follow each switch between the filler's decoder configuration
//! and the stream's.

use std::time::Duration;

use streampub_core::plugin::{StageError, StageOutput};

use super::reading::FlvFile;
use super::stream_state::{push_tag, FlvTimeline};
use crate::formats::flv::tags::{Configuration, Tag};
use crate::formats::flv::MediaKind;
use crate::formats::flv::TagKind;
use crate::stream_shape::{most_common, AudioShape, StreamShape, VideoShape};

/// Bytes before the decoder configuration in a sequence header tag's data: AVC's
/// `FrameType|CodecID, AVCPacketType, CompositionTime` (enhanced FLV's header and FourCC are as
/// long), AAC's `SoundFormat|…, AACPacketType`.
const VIDEO_PREFIX_LEN: usize = 5;
const AUDIO_PREFIX_LEN: usize = 2;
/// FLV's codec ids of H.264 and AAC.
const AVC_CODEC_ID: u8 = 7;
const AAC_SOUND_FORMAT: u8 = 10;

/// Where per-kind state is kept in `[video, audio]` arrays.
fn index(kind: TagKind) -> usize {
    match kind {
        TagKind::Video => MediaKind::Video.index(),
        _ => MediaKind::Audio.index(),
    }
}

/// Where the decoder configuration begins in a sequence header tag's data (after its codec
/// bytes).
fn configuration_start(kind: TagKind, data: &[u8]) -> usize {
    let prefix = match kind {
        TagKind::Video => VIDEO_PREFIX_LEN,
        _ => AUDIO_PREFIX_LEN,
    };
    prefix.min(data.len())
}

impl FlvTimeline {
    /// Sends the stream's decoder configuration of `kind` unless the session has it.
    pub(super) fn send_stream_configuration(
        &mut self,
        kind: TagKind,
        timestamp: u32,
        output: &mut StageOutput,
    ) {
        let Some(data) = self.configurations.get(kind) else {
            return;
        };
        // Called for every media tag: compared in place, copied only when sent.
        let start = configuration_start(kind, data);
        let sent = &mut self.sent[index(kind)];
        if sent.as_deref() != Some(&data[start..]) {
            *sent = Some(data.slice(start..));
            push_tag(kind, timestamp, data, output);
        }
    }

    /// Sends the filler's decoder configuration of `kind` (a sequence header body) unless the
    /// session has it.
    pub(super) fn send_filler_configuration(
        &mut self,
        configuration: &Configuration,
        timestamp: u32,
        output: &mut StageOutput,
    ) {
        let sent = &mut self.sent[configuration.codec.kind().index()];
        if sent.as_ref() != Some(&configuration.bytes) {
            *sent = Some(configuration.bytes.clone());
            Tag::sequence_header(configuration.clone(), i128::from(timestamp)).write(0, output);
        }
    }

    /// After a whole file, starts making the filler for the stream if it still needs one.
    pub(super) fn prepare_filler(&mut self, file: &FlvFile) {
        if !self.filler.wants_shape() {
            return;
        }
        match self.stream_shape(file) {
            Ok(shape) => self.filler.prepare(shape),
            Err(problem) => self.filler.cannot_match(format!(
                "no filler can be made for this stream: {problem}; filler is made for H.264 \
                 and AAC (set `filler: none` to wait for upstream without one)"
            )),
        }
    }

    /// What the filler must match, from the sequence headers and `file`'s video intervals.
    fn stream_shape(&self, file: &FlvFile) -> Result<StreamShape, String> {
        let video = match &self.configurations.video {
            Some(data) if data.first().map(|first| first & 0x0f) == Some(AVC_CODEC_ID) => {
                Some(&data[configuration_start(TagKind::Video, data)..])
            }
            Some(data) => {
                return Err(format!(
                    "its video is not H.264 (FLV codec byte {:#04x})",
                    data.first().copied().unwrap_or(0)
                ))
            }
            None if file.video.seen => {
                return Err("its video has no decoder configuration (not H.264)".to_owned())
            }
            None => None,
        };
        let audio = match &self.configurations.audio {
            Some(data) if data.first().map(|first| first >> 4) == Some(AAC_SOUND_FORMAT) => {
                Some(&data[configuration_start(TagKind::Audio, data)..])
            }
            Some(_) => return Err("its audio is not AAC".to_owned()),
            None if file.audio.seen => {
                return Err("its audio has no AAC configuration (not AAC)".to_owned())
            }
            None => None,
        };
        let mut intervals = file.video_intervals.clone().unwrap_or_default();
        let frame_rate = (1000, most_common(&mut intervals).unwrap_or(40));
        Ok(StreamShape {
            video: video
                .map(|avcc| VideoShape::from_avcc(avcc, frame_rate))
                .transpose()?,
            audio: audio
                .map(AudioShape::from_audio_specific_config)
                .transpose()?,
        })
    }

    /// Plays the filler up to `until` on the timeline, between files; the next file starts
    /// there.
    pub(super) fn fill_until(
        &mut self,
        until: Duration,
        output: &mut StageOutput,
    ) -> Result<(), StageError> {
        if self.header.is_none() {
            return Err(StageError::new("filler: no media has been written yet"));
        }
        let until_ms = until.as_millis() as u64;
        let tags = self
            .filler
            .tags_until(i128::from(self.offset), i128::from(until_ms))
            .map_err(|problem| StageError::new(format!("filler: {problem}")))?;
        if tags.is_empty() {
            return Ok(());
        }
        if !self.header_written {
            self.write_session_start(output);
        }
        for tag in tags {
            let timestamp = tag.decode_ms as u32;
            self.send_filler_configuration(&tag.configuration, timestamp, output);
            output.mark_media_time(tag.media_time());
            tag.write(0, output);
        }
        self.offset = self.offset.max(until_ms);
        Ok(())
    }
}
