//! FLV as streampub writes and reads it: the file header, tag headers and what a tag's first
//! bytes say it is (`tag`), and a reader that takes tags out of the chunks of an FLV stream
//! (`reader`). The timeline stages write FLV with it and the `rtmp` sink reads the stages'
//! output with it, so both agree on one model; an RTMP audio, video or data message is an FLV
//! tag's body. No I/O, no other streampub crate.

mod reader;
mod tag;

pub use self::reader::{FlvTag, FlvTagReader};
pub use self::tag::{
    classify, is_video_keyframe, read_file_header, FlvError, Payload, TagHeader, TagKind,
    CLASSIFY_LEN, FILE_HEADER, FILE_HEADER_LEN, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
};
