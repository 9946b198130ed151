//! Writing FLV: a session's file header, `onMetaData` and sequence headers before its first
//! tag, then the tags of the stream or of the filler, each after the sequence header it needs
//! when that is not the one its kind had last.

use streampub_core::plugin::StageOutput;

use super::reading::Fmp4ToFlvFile;
use super::stream_state::Fmp4ToFlv;
use crate::formats::flv::session::{write_session_start, write_with_configuration};
use crate::formats::flv::tags::{Configuration, Tag};
use crate::formats::flv::MediaKind;

impl Fmp4ToFlv {
    /// Writes the tags of the last `mdat`: the fragment went on past it.
    pub(super) fn write_held(&mut self, file: &mut Fmp4ToFlvFile, output: &mut StageOutput) {
        let tags = std::mem::take(&mut file.held);
        if let Some(end) = tags.iter().map(|tag| tag.decode_ms + tag.duration_ms).max() {
            self.content_end_ms = Some(self.content_end_ms.map_or(end, |known| known.max(end)));
        }
        let tags = self.cut(tags);
        self.write_tags(tags, self.stream_configurations(), output);
    }

    /// Per kind, the stream's decoder configuration.
    pub(super) fn stream_configurations(&self) -> [Option<Configuration>; 2] {
        let mut configurations = [None, None];
        for track in &self.tracks {
            configurations[track.kind().index()] = Some(track.configuration.clone());
        }
        configurations
    }

    /// What of `tags` is sent: all of them, unless a fragment resumed from inside is being cut.
    fn cut(&mut self, tags: Vec<Tag>) -> Vec<Tag> {
        let has_video = self
            .tracks
            .iter()
            .any(|track| track.kind() == MediaKind::Video);
        let Some(cut) = &mut self.resume else {
            return tags;
        };
        let mut send = Vec::new();
        let mut tags = tags.into_iter();
        let mut done = false;
        for tag in tags.by_ref() {
            // Without video, a decoder can start at any audio frame.
            let random_access = tag.is_keyframe() || !has_video;
            if cut.take(tag.media_time(), random_access, tag, &mut send) {
                done = true;
                break;
            }
        }
        if done {
            self.resume = None;
        }
        send.extend(tags);
        send
    }

    /// The file header, `onMetaData` and the sequence headers of `configurations` (per kind:
    /// those of the tags that follow, the stream's or the filler's): a session begins at the
    /// sample decoded at `decode_ms`.
    fn write_headers(
        &mut self,
        decode_ms: i128,
        configurations: [Option<Configuration>; 2],
        output: &mut StageOutput,
    ) {
        let zero = decode_ms - std::mem::take(&mut self.next_session_timestamp);
        self.session_zero = Some(zero);
        self.session.begin(std::time::Duration::ZERO);
        write_session_start(
            self.header_flags,
            self.shape.as_ref(),
            &configurations,
            (decode_ms, zero),
            output,
        );
        self.sent_configurations = configurations;
        self.headers_due = false;
    }

    /// Writes tags of the stream or of the filler (whose decoder configurations per kind are
    /// `configurations`): after the session's headers when they are its first, and each after
    /// a sequence header when it needs another decoder configuration than the last one sent
    /// for its kind (a switch between stream and filler).
    pub(super) fn write_tags(
        &mut self,
        tags: Vec<Tag>,
        configurations: [Option<Configuration>; 2],
        output: &mut StageOutput,
    ) {
        let Some(first) = tags.first() else {
            return;
        };
        if self.headers_due {
            self.write_headers(first.decode_ms, configurations, output);
        }
        for tag in tags {
            let zero = self.session_zero.unwrap_or(tag.decode_ms);
            output.mark_media_time(tag.media_time());
            self.last_written = tag.decode_ms;
            write_with_configuration(tag, &mut self.sent_configurations, zero, output);
        }
    }
}
