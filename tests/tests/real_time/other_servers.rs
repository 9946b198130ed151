//! The `rtmp` sink against servers other than nginx-rtmp: node-media-server 4 (an
//! enhanced-RTMP server, from npm) and ffmpeg's own listener (`ffmpeg -listen 1`). H.264 and
//! AAC: one session, every packet, no decoder error. HEVC over enhanced RTMP to
//! node-media-server, from MP4 fragments and from enhanced-FLV batches: every sample it
//! recorded is byte for byte the input's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use streampub_flv::{FlvTag, FlvTagReader, TagKind};
use streampub_tests::media::{decoder_errors, probe_packets, small_fragments};
use streampub_tests::node_media_server::NodeMediaServer;
use streampub_tests::rtmp::free_port;
use streampub_tests::{run_pipeline_file, TestDir};

use crate::rtmp_protocol::{ffmpeg_listener, wait_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Pipeline `channel-1` publishing the `format` batches in the directory `in` with the `rtmp`
/// sink to `url`, unpaced.
fn pipeline(url: &str, format: &str) -> Value {
    json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": {"type": "rtmp", "url": url, "input_format": format, "pacing": "off",
                     "reconnect_delay": "200ms", "max_reconnect_attempts": 50},
        }],
    })
}

fn video_packets(paths: &[std::path::PathBuf]) -> usize {
    paths
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum()
}

/// The recording node-media-server makes of `stream`, once it holds `video` packets.
fn recording_with(server: &NodeMediaServer, stream: &str, video: usize) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recordings = server.recordings(stream);
        assert!(recordings.len() <= 1, "one session: {recordings:?}");
        if let Some(recording) = recordings.first() {
            if probe_packets(recording).video.count() >= video {
                return recording.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no whole recording: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn node_media_server_records_one_session_with_every_packet() {
    let media = small_fragments(3, 2, &["--bitrate", "300k"]);
    let server = NodeMediaServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/h264", server.server_url());
    let run = run_pipeline_file(&dir.pipeline_file(&pipeline(&url, "mp4")), TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 3);
    assert!(run.events("process_started").is_empty());
    let expected = video_packets(&media);
    let recording = recording_with(&server, "h264", expected);
    assert_eq!(probe_packets(&recording).video.count(), expected);
    assert_eq!(decoder_errors(&recording), 0);
}

#[test]
fn ffmpegs_own_listener_receives_one_session_with_every_packet() {
    let media = small_fragments(3, 2, &["--bitrate", "300k"]);
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let port = free_port();
    let output = dir.join("received.flv");
    // It takes one client; the sink retries until it listens.
    let mut listener = ffmpeg_listener(port, &output);
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let run = run_pipeline_file(&dir.pipeline_file(&pipeline(&url, "mp4")), TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 3);
    assert_eq!(run.events("rtmp_publishing").len(), 1, "one session");
    let status = wait_with_timeout(&mut listener.0, TIMEOUT);
    assert!(status.success(), "ffmpeg's listener failed: {status}");
    assert_eq!(probe_packets(&output).video.count(), video_packets(&media));
    assert_eq!(decoder_errors(&output), 0);
}

#[test]
fn hevc_goes_over_enhanced_rtmp_with_every_sample_unchanged() {
    let media = small_fragments(3, 2, &["--bitrate", "300k", "--video-codec", "hevc"]);
    let server = NodeMediaServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/hevc", server.server_url());
    let run = run_pipeline_file(&dir.pipeline_file(&pipeline(&url, "mp4")), TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 3);
    let input: Vec<String> = media.iter().flat_map(|path| sample_hashes(path)).collect();
    let (starts, frames) = whole_hevc_recording(&server, "hevc", input.len());
    assert_eq!(starts, 1, "one SequenceStart: the stream did not change");
    assert_eq!(
        frames, input,
        "every sample's bytes are the input's, in order"
    );
}

/// HEVC as enhanced-FLV batches (made here by streampub's own `fmp4-to-flv`: Debian's ffmpeg
/// 5.1 writes no enhanced FLV), through `flv-timeline` to node-media-server: one session, every
/// sample byte for byte the input's.
#[test]
fn hevc_flv_batches_go_over_enhanced_rtmp_with_every_sample_unchanged() {
    let media = small_fragments(3, 2, &["--bitrate", "300k", "--video-codec", "hevc"]);
    let dir = TestDir::new();
    dir.mkdir("in");
    for (index, path) in media.iter().enumerate() {
        let source = format!("mp4-{index}");
        dir.copy_in(&source, std::slice::from_ref(path));
        let conversion = json!({"pipelines": [{
            "name": "convert",
            "source": {"type": "directory", "path": source, "follow": false, "settle": "0s"},
            "stages": [{"type": "fmp4-timeline"}, {"type": "fmp4-to-flv", "enhanced_rtmp": true}],
            "sink": {"type": "file", "path": format!("in/batch-{index}.flv"), "mode": "append"},
        }]});
        let run = run_pipeline_file(&dir.pipeline_file(&conversion), TIMEOUT);
        assert_eq!(run.code(), Some(0), "{}", run.stderr());
    }
    let server = NodeMediaServer::start();
    let url = format!("{}/hevc-flv", server.server_url());
    let run = run_pipeline_file(&dir.pipeline_file(&pipeline(&url, "flv")), TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 3);
    assert_eq!(run.events("rtmp_publishing").len(), 1, "one session");
    let input: Vec<String> = media.iter().flat_map(|path| sample_hashes(path)).collect();
    let (starts, frames) = whole_hevc_recording(&server, "hevc-flv", input.len());
    assert_eq!(starts, 1, "one SequenceStart: the stream did not change");
    assert_eq!(
        frames, input,
        "every sample's bytes are the input's, in order"
    );
}

/// SHA-256 of each video sample of an MP4 file, as it is stored (length-prefixed NAL units).
fn sample_hashes(path: &Path) -> Vec<String> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_packets"])
        .args([
            "-show_data_hash",
            "SHA256",
            "-show_entries",
            "packet=data_hash",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe not found; run scripts/test, which installs ffmpeg");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().strip_prefix("SHA256:"))
        .map(str::to_owned)
        .collect()
}

/// The HEVC tags (see `hevc_tags`) of node-media-server's one recording of `stream`, once it
/// holds `frames` frames. Debian's ffmpeg 5.1 cannot read enhanced FLV: it is read here.
fn whole_hevc_recording(
    server: &NodeMediaServer,
    stream: &str,
    frames: usize,
) -> (usize, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recordings = server.recordings(stream);
        assert!(recordings.len() <= 1, "one session: {recordings:?}");
        match recordings.first().map(|path| hevc_tags(path)) {
            Some(read) if read.1.len() >= frames => return read,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => panic!("no whole recording: {}", server.log()),
        }
    }
}

/// In an enhanced FLV recording: how many HEVC SequenceStart tags, and the SHA-256 of each
/// HEVC frame's data (after the packet type, the FourCC and, for CodedFrames, the
/// composition time).
fn hevc_tags(path: &Path) -> (usize, Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = FlvTagReader::default();
    let mut tags: Vec<FlvTag> = Vec::new();
    reader.push(bytes::Bytes::from(bytes), &mut tags).unwrap();
    let mut starts = 0;
    let mut frames = Vec::new();
    for tag in tags.iter().filter(|tag| tag.kind == TagKind::Video) {
        assert_eq!(
            tag.enhanced_fourcc(),
            Some(*b"hvc1"),
            "{:x?}",
            &tag.body[..5]
        );
        let data = match tag.body[0] & 0x0f {
            0 => {
                starts += 1;
                continue;
            }
            1 => &tag.body[8..],
            3 => &tag.body[5..],
            other => panic!("unexpected packet type {other}"),
        };
        frames.push(hex::encode(Sha256::digest(data)));
    }
    (starts, frames)
}
