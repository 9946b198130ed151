//! The `fmp4-to-flv` stage's state between fragments: the stream's tracks as FLV, the current
//! session's timestamps and headers, the filler and a fragment being resumed.

use std::path::PathBuf;

use streampub_core::plugin::FillerSource;

use crate::filler::default_ffmpeg;
use crate::formats::flv::filler::Filler;
use crate::formats::flv::tags::{Configuration, FlvTrack, Tag};
use crate::formats::mp4::TrackDescription;
use crate::resume_cut::ResumeCut;
use crate::session_limit::SessionLimit;
use crate::session_options::SessionSettings;
use crate::stream_shape::StreamShape;

impl SessionSettings for Fmp4ToFlv {
    fn set_session_limit(&mut self, limit: SessionLimit) {
        self.session = limit;
    }

    fn set_filler(&mut self, source: FillerSource, ffmpeg: PathBuf) {
        self.filler = Filler::new(source, ffmpeg);
    }
}

/// The FLV part of the `fmp4-to-flv` stage: the stream and its session as FLV.
#[derive(Debug)]
pub(crate) struct Fmp4ToFlv {
    pub(super) session: SessionLimit,
    /// The decode time (ms) that is the session's timestamp 0, once its first tag is written.
    pub(super) session_zero: Option<i128>,
    /// The timestamp the next session's first tag gets: `start_timestamp`, then 0.
    pub(super) next_session_timestamp: i128,
    /// The decode time (ms) of the last tag written.
    pub(super) last_written: i128,
    /// The stream's tracks as its `moov` describes them, and what each becomes in FLV.
    pub(super) descriptions: Vec<TrackDescription>,
    pub(super) tracks: Vec<FlvTrack>,
    /// The FLV file header flags (audio, video) of the stream.
    pub(super) header_flags: u8,
    /// The session still needs its file header and sequence headers.
    pub(super) headers_due: bool,
    /// Why the stream's init segment cannot become FLV (a codec FLV cannot carry): every
    /// fragment of that stream fails with it, until an init segment that can.
    pub(super) refused: Option<String>,
    /// Per kind (video, audio), the decoder configuration the session got last.
    pub(super) sent_configurations: [Option<Configuration>; 2],
    /// What the stream is (from its init segment and first media segment), for `onMetaData`
    /// and the filler.
    pub(super) shape: Option<StreamShape>,
    /// Where the stream's media written so far ends (ms): where filler would begin.
    pub(super) content_end_ms: Option<i128>,
    pub(super) filler: Filler,
    /// Whether HEVC, AV1, VP9 and Opus are written as enhanced RTMP (else refused).
    pub(super) enhanced_rtmp: bool,
    /// While a fragment sent again from inside is being cut.
    pub(super) resume: Option<ResumeCut<Tag>>,
}

impl Default for Fmp4ToFlv {
    fn default() -> Self {
        Self {
            session: SessionLimit::default(),
            session_zero: None,
            next_session_timestamp: 0,
            last_written: 0,
            descriptions: Vec::new(),
            tracks: Vec::new(),
            header_flags: 0,
            headers_due: false,
            refused: None,
            sent_configurations: [None, None],
            shape: None,
            content_end_ms: None,
            filler: Filler::new(FillerSource::None, default_ffmpeg()),
            enhanced_rtmp: false,
            resume: None,
        }
    }
}
