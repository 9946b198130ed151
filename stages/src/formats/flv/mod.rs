//! FLV format code shared by the stages: the tag model of `streampub-flv` (the file header,
//! tag headers, what a tag's first bytes say about it, shared with the `rtmp` sink); tags made
//! from MP4 samples (`tags`), the `onMetaData` tag
//! (`metadata`), a session's start and configuration switches (`session`) and the filler as
//! FLV tags (`filler`). No plugin lives here.

pub(crate) mod filler;
pub(crate) mod metadata;
pub(crate) mod session;
pub(crate) mod tags;

pub(crate) use streampub_flv::{
    classify, is_video_keyframe, read_file_header, Payload, TagHeader, TagKind, CLASSIFY_LEN,
    FILE_HEADER, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
};

/// The kind of a track, and of the tags that carry its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Video,
    Audio,
}

impl MediaKind {
    pub(crate) fn type_byte(self) -> u8 {
        TagKind::from(self).type_byte()
    }

    /// Where per-kind state is kept in `[video, audio]` arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Video => 0,
            Self::Audio => 1,
        }
    }
}

impl From<MediaKind> for TagKind {
    fn from(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Video => Self::Video,
            MediaKind::Audio => Self::Audio,
        }
    }
}
