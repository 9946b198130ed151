//! Writing an FLV session: what it begins with (file header, `onMetaData`, sequence headers)
//! and a sequence header again before a tag whose decoder configuration is not its kind's
//! last; shared by `fmp4-to-flv` and `mpegts-to-flv`.

use bytes::Bytes;
use streampub_core::plugin::StageOutput;

use super::tags::{write_tag, Configuration, Tag, SCRIPT_TAG};
use super::FILE_HEADER;
use crate::stream_shape::StreamShape;

/// Writes what an FLV session begins with: the file header (with `header_flags`: audio,
/// video), `onMetaData` when the stream's shape is known, and the sequence headers of
/// `configurations` (per kind: those of the tags that follow), all at the decode time
/// `decode_ms` of the session's first tag, timestamps counted from `session_zero`.
pub(crate) fn write_session_start(
    header_flags: u8,
    shape: Option<&StreamShape>,
    configurations: &[Option<Configuration>; 2],
    (decode_ms, session_zero): (i128, i128),
    output: &mut StageOutput,
) {
    let mut header = FILE_HEADER;
    header[4] = header_flags;
    output.push_chunk(Bytes::copy_from_slice(&header));
    output.push_chunk(Bytes::from_static(&[0, 0, 0, 0]));
    if let Some(shape) = shape {
        let timestamp = (decode_ms - session_zero).rem_euclid(1 << 32) as u32;
        write_tag(
            SCRIPT_TAG,
            timestamp,
            &[],
            shape.on_metadata(configurations),
            output,
        );
    }
    for configuration in configurations.iter().flatten() {
        Tag::sequence_header(configuration.clone(), decode_ms).write(session_zero, output);
    }
}

/// Writes `tag`, after a sequence header when it needs another decoder configuration than
/// the one its kind had last (`sent`, per kind: a switch between stream and filler, or new
/// parameter sets), timestamps counted from `session_zero`.
pub(crate) fn write_with_configuration(
    tag: Tag,
    sent: &mut [Option<Configuration>; 2],
    session_zero: i128,
    output: &mut StageOutput,
) {
    let sent = &mut sent[tag.kind().index()];
    if sent.as_ref() != Some(&tag.configuration) {
        *sent = Some(tag.configuration.clone());
        Tag::sequence_header(tag.configuration.clone(), tag.decode_ms).write(session_zero, output);
    }
    tag.write(session_zero, output);
}
