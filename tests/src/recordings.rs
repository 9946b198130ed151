//! What an RTMP server recorded, matched frame by frame to the input: each session's recording
//! as a stretch of consecutive input frames, what no session holds, and what two sessions
//! both hold (repeated after an outage).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::media::{decoder_errors, probe_packets};
use crate::rtmp::RtmpServer;

/// Identifies each video frame of a file, in order.
pub type FrameHashes = fn(&std::path::Path) -> Vec<String>;

/// The input's video frames, in order, and where each one's hash lies among them.
pub fn input_frames(
    media: &[PathBuf],
    hashes: FrameHashes,
) -> (Vec<String>, HashMap<String, usize>) {
    let content: Vec<String> = media.iter().flat_map(|path| hashes(path)).collect();
    let position: HashMap<String, usize> = content
        .iter()
        .enumerate()
        .map(|(index, hash)| (hash.clone(), index))
        .collect();
    assert_eq!(position.len(), content.len(), "every input frame differs");
    (content, position)
}

/// Per session that reached the server, the first and last input frame it recorded; checks
/// that each is a run of consecutive input frames from a keyframe and decodes without error.
pub fn recorded_stretches(
    server: &RtmpServer,
    position: &HashMap<String, usize>,
    hashes: FrameHashes,
) -> Vec<(usize, usize)> {
    stretches_of(&server.recordings(), position, hashes)
}

/// [`recorded_stretches`] of some recordings (one stream's of a server that records several).
pub fn stretches_of(
    recordings: &[PathBuf],
    position: &HashMap<String, usize>,
    hashes: FrameHashes,
) -> Vec<(usize, usize)> {
    let mut stretches = Vec::new();
    for recording in recordings {
        let hashes = hashes(recording);
        if hashes.is_empty() {
            continue;
        }
        let frames: Vec<usize> = hashes
            .iter()
            .map(|hash| {
                *position.get(hash).unwrap_or_else(|| {
                    panic!("{} holds a frame not in the input", recording.display())
                })
            })
            .collect();
        assert!(
            frames.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{} skips or repeats frames inside one session",
            recording.display()
        );
        let packets = probe_packets(recording);
        assert_eq!(
            packets.video.keyframes.first(),
            Some(&true),
            "{} starts with a keyframe",
            recording.display()
        );
        assert_eq!(decoder_errors(recording), 0, "{}", recording.display());
        stretches.push((frames[0], *frames.last().unwrap()));
    }
    stretches
}

/// Checks that the sessions together hold every one of `frames` input frames (of
/// `frame_seconds` each), and returns what each session repeated of the one before, in seconds.
pub fn repeats_between_sessions(
    stretches: &[(usize, usize)],
    frames: usize,
    frame_seconds: f64,
) -> Vec<f64> {
    assert_eq!(
        stretches[0].0, 0,
        "the first session starts at the first frame"
    );
    let mut repeats = Vec::new();
    for pair in stretches.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        assert!(
            later.0 <= earlier.1 + 1,
            "frames {} to {} reached the server in no session: {stretches:?}",
            earlier.1 + 1,
            later.0
        );
        repeats.push((earlier.1 + 1).saturating_sub(later.0) as f64 * frame_seconds);
    }
    assert_eq!(
        stretches.last().unwrap().1,
        frames - 1,
        "the last frame reached the server: {stretches:?}"
    );
    repeats
}
