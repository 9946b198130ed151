//! The FLV timeline's state between files: the stream's header and decoder configurations,
//! where the next file starts, and how a session begins.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use streampub_core::plugin::{FillerSource, StageOutput};

use crate::formats::flv::filler::Filler;
use crate::formats::flv::{MediaKind, TagHeader, TagKind, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN};
use crate::resume_cut::ResumeCut;
use crate::session_limit::SessionLimit;
use crate::session_options::SessionSettings;

/// The decoder configurations of the stream: the data of its sequence header tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Configurations {
    pub(super) video: Option<Bytes>,
    pub(super) audio: Option<Bytes>,
}

impl Configurations {
    pub(super) fn get(&self, kind: TagKind) -> Option<&Bytes> {
        match kind {
            TagKind::Video => self.video.as_ref(),
            _ => self.audio.as_ref(),
        }
    }

    pub(super) fn get_mut(&mut self, kind: TagKind) -> &mut Option<Bytes> {
        match kind {
            TagKind::Video => &mut self.video,
            _ => &mut self.audio,
        }
    }
}

/// The state at the start of a fragment, for a rewind.
#[derive(Debug, Clone)]
pub(crate) struct FlvSnapshot {
    pub(super) offset: u64,
    pub(super) configurations: Configurations,
    pub(super) header: Option<[u8; 9]>,
}

/// The FLV part of the `flv-timeline` stage: the stream's state between files.
#[derive(Debug, Default)]
pub(crate) struct FlvTimeline {
    /// The file header of the stream (from its first file, data offset 9).
    pub(super) header: Option<[u8; 9]>,
    /// Whether the current session has had its file header.
    pub(super) header_written: bool,
    pub(super) configurations: Configurations,
    /// Where the next file starts, in milliseconds.
    pub(super) offset: u64,
    /// Per kind (video, audio), the decoder configuration (sequence header body) the session
    /// got last: the stream's, or the filler's during a gap.
    pub(super) sent: [Option<Bytes>; 2],
    pub(super) filler: Filler,
    pub(super) session: SessionLimit,
    /// While a file sent again from inside is being cut: its tags (time, parts).
    pub(super) resume: Option<ResumeCut<(Duration, Vec<Bytes>)>>,
}

impl SessionSettings for FlvTimeline {
    fn set_session_limit(&mut self, limit: SessionLimit) {
        self.session = limit;
    }

    fn set_filler(&mut self, source: FillerSource, ffmpeg: PathBuf) {
        self.filler = Filler::new(source, ffmpeg);
    }
}

impl FlvTimeline {
    /// Writes the file header and the known decoder configurations: what a session needs
    /// first. The configurations carry the current offset as their timestamp. A session that
    /// begins during a gap gets the filler's, whose tags come first.
    pub(super) fn write_session_start(&mut self, output: &mut StageOutput) {
        let Some(header) = self.header else {
            return;
        };
        output.push_chunk(Bytes::copy_from_slice(&header));
        output.push_chunk(Bytes::from_static(&[0; PREVIOUS_TAG_SIZE_LEN]));
        self.sent = [None, None];
        self.header_written = true;
        self.session.begin(Duration::from_millis(self.offset));
        let timestamp = self.offset as u32;
        let filler_configurations = self.filler.configurations();
        for kind in [MediaKind::Video, MediaKind::Audio] {
            match &filler_configurations[kind.index()] {
                Some(configuration) if self.filler.is_playing() => {
                    self.send_filler_configuration(configuration, timestamp, output);
                }
                _ => self.send_stream_configuration(kind.into(), timestamp, output),
            }
        }
    }

    /// Sends a whole media tag (its parts, at `time` on the timeline), unless a file resumed
    /// from inside is being cut before it.
    pub(super) fn send_media_tag(
        &mut self,
        time: Duration,
        random_access: bool,
        parts: Vec<Bytes>,
        output: &mut StageOutput,
    ) {
        let Some(cut) = &mut self.resume else {
            return send_tag(time, parts, output);
        };
        let mut send = Vec::new();
        if cut.take(time, random_access, (time, parts), &mut send) {
            self.resume = None;
        }
        send_tags(send, output);
    }
}

/// Emits a whole media tag (its parts), marked with its time.
pub(super) fn send_tag(time: Duration, parts: Vec<Bytes>, output: &mut StageOutput) {
    output.mark_media_time(time);
    for part in parts {
        output.push_chunk(part);
    }
}

/// Emits whole media tags.
pub(super) fn send_tags(tags: Vec<(Duration, Vec<Bytes>)>, output: &mut StageOutput) {
    for (time, parts) in tags {
        send_tag(time, parts, output);
    }
}

/// Emits one tag: header, data, `PreviousTagSize`.
pub(super) fn push_tag(kind: TagKind, timestamp: u32, data: &Bytes, output: &mut StageOutput) {
    let size = data.len() as u32;
    let [_, s1, s2, s3] = size.to_be_bytes();
    let mut header = [kind.type_byte(), s1, s2, s3, 0, 0, 0, 0, 0, 0, 0];
    header = TagHeader::with_timestamp(&header, timestamp);
    output.push_chunk(Bytes::copy_from_slice(&header));
    output.push_chunk(data.clone());
    output.push_chunk(Bytes::copy_from_slice(
        &(size + TAG_HEADER_LEN as u32).to_be_bytes(),
    ));
}
