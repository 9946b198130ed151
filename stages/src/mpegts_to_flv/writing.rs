//! Writing the tags as one FLV session: interleaved by decode time (a transport stream
//! carries several audio frames in one PES, and its PES packets are only roughly in order),
//! the session's file header, `onMetaData` and sequence headers before its first tag, and a
//! new sequence header before a tag whose decoder configuration is not its kind's last.

use std::collections::VecDeque;

use streampub_core::plugin::StageOutput;

use super::conversion::Conversion;
use crate::formats::flv::session::{write_session_start, write_with_configuration};
use crate::formats::flv::tags::{Configuration, Tag};
use crate::formats::flv::MediaKind;

/// How long a tag waits for one of the other kind to be interleaved with before it is
/// written anyway (a stream whose audio pauses must not stall its video).
const MAX_WAIT_MS: i128 = 1000;

/// The session's tags on their way out.
#[derive(Debug, Default)]
pub(super) struct FlvWriter {
    /// Per kind (video, audio), the tags not written yet, in decode order.
    queues: [VecDeque<Tag>; 2],
    /// The session still needs its file header and sequence headers.
    headers_due: bool,
    /// The decode time (ms) that is the session's timestamp 0.
    session_zero: Option<i128>,
    /// Per kind, the decoder configuration the session got last.
    sent: [Option<Configuration>; 2],
}

impl FlvWriter {
    pub(super) fn new() -> Self {
        Self {
            headers_due: true,
            ..Self::default()
        }
    }

    pub(super) fn queue(&mut self, tag: Tag) {
        self.queues[tag.kind().index()].push_back(tag);
    }

    /// A new session: headers again, timestamps from 0. What is still queued belongs to the
    /// old one (a program change inside a file) and goes: the tail of a GOP cannot open a
    /// session.
    pub(super) fn start_session(&mut self) {
        self.abort();
        self.headers_due = true;
        self.session_zero = None;
        self.sent = [None, None];
    }

    /// The fragment failed or is sent again: its queued tags go.
    pub(super) fn abort(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
    }

    /// The latest decode time queued.
    fn newest_ms(&self) -> Option<i128> {
        self.queues
            .iter()
            .filter_map(|queue| queue.back().map(|tag| tag.decode_ms))
            .max()
    }

    /// Writes what can be written: the earliest tag while each of the stream's kinds
    /// (`kinds`: video, audio) has one queued or it has waited long enough; everything when
    /// `flush` (the file ended).
    pub(super) fn write(
        &mut self,
        kinds: [bool; 2],
        conversion: &Conversion,
        flush: bool,
        output: &mut StageOutput,
    ) {
        loop {
            let earliest = [MediaKind::Video, MediaKind::Audio]
                .into_iter()
                .filter_map(|kind| Some((self.queues[kind.index()].front()?.decode_ms, kind)))
                .min_by_key(|(decode_ms, _)| *decode_ms);
            let Some((decode_ms, kind)) = earliest else {
                return;
            };
            let waiting_for_other = (0..2).any(|other| {
                kinds[other] && self.queues[other].is_empty() && other != kind.index()
            });
            let waited_enough = self
                .newest_ms()
                .is_some_and(|newest| newest - decode_ms >= MAX_WAIT_MS);
            if !flush && waiting_for_other && !waited_enough {
                return;
            }
            // `onMetaData` gives the frame rate: wait for two frames when it is not known.
            if !flush && self.headers_due && kinds[0] && conversion.frame_interval.is_none() {
                return;
            }
            let tag = self.queues[kind.index()]
                .pop_front()
                .expect("it has a front");
            self.write_tag(tag, kinds, conversion, output);
        }
    }

    fn write_tag(
        &mut self,
        tag: Tag,
        kinds: [bool; 2],
        conversion: &Conversion,
        output: &mut StageOutput,
    ) {
        let zero = *self.session_zero.get_or_insert(tag.decode_ms);
        if std::mem::take(&mut self.headers_due) {
            // Per kind, the configuration of the first tag queued: both are known once the
            // queues have been interleaved.
            for kind in [MediaKind::Video, MediaKind::Audio] {
                let first = match kind == tag.kind() {
                    true => Some(&tag),
                    false => self.queues[kind.index()].front(),
                };
                self.sent[kind.index()] = first.map(|first| first.configuration.clone());
            }
            let flags = u8::from(kinds[0]) | u8::from(kinds[1]) << 2;
            write_session_start(
                flags,
                conversion.shape().as_ref(),
                &self.sent,
                (tag.decode_ms, zero),
                output,
            );
        }
        // A tag that waited for nothing and then met an earlier one of the other kind.
        let tag = match tag.decode_ms < zero {
            true => tag.shifted(zero - tag.decode_ms),
            false => tag,
        };
        write_with_configuration(tag, &mut self.sent, zero, output);
    }
}
