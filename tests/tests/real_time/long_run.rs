//! What happens late in a long run, tried by starting the FLV timestamps just before each limit
//! (`start_timestamp` of `fmp4-to-flv`), through a real ffmpeg that keeps the timestamps it
//! reads (`-copyts`, and no `-avoid_negative_ts make_zero`) and nginx-rtmp, whose recordings
//! keep them too; and the planned new session of FLV and MPEG-TS batches, tried with a short
//! `session_limit`.

use std::time::Duration;

use serde_json::json;
use streampub_tests::media::{decoder_errors, probe_packets, small_fragments};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{run_pipeline_file, TestDir};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Which RTMP sink publishes.
#[derive(Clone, Copy)]
enum Publisher {
    Ffmpeg,
    Native,
}

/// Publishes three 2-s fragments whose first timestamp is `start_timestamp`; returns the run,
/// the (stopped) server holding the recordings, and how many video frames were published.
fn publish_from(
    start_timestamp: &str,
    publisher: Publisher,
) -> (streampub_tests::Finished, RtmpServer, usize) {
    let media = small_fragments(3, 2, &[]);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&json!({"pipelines": [{
        "name": "long",
        "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
        "stages": [
            {"type": "fmp4-timeline"},
            {"type": "fmp4-to-flv", "start_timestamp": start_timestamp},
        ],
        "sink": match publisher {
            Publisher::Ffmpeg => json!({
                "type": "ffmpeg-rtmp",
                "url": format!("{}/long", server.server_url()),
                "input_args": ["-copyts"],
                "output_args": ["-c", "copy", "-f", "flv"],
            }),
            // It sends the timestamps it is given; paced, so that each session's recording
            // begins in a second of its own (the server names them by it).
            Publisher::Native => json!({
                "type": "rtmp",
                "url": format!("{}/long", server.server_url()),
            }),
        },
    }]}));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), media.len(), "{}", run.stderr());
    server.stop();
    let content_video = media
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum();
    (run, server, content_video)
}

#[test]
fn timestamps_past_24_bits_go_through_with_the_extended_byte() {
    timestamps_past_24_bits(Publisher::Ffmpeg);
}

#[test]
fn the_native_rtmp_sink_sends_timestamps_past_24_bits() {
    timestamps_past_24_bits(Publisher::Native);
}

fn timestamps_past_24_bits(publisher: Publisher) {
    // 16,777,215 ms is 4h 39m 37.215s: the stream crosses it in its first fragment.
    let (run, server, content_video) = publish_from("4h 39m 37s", publisher);
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "{}", run.stderr());
    let packets = probe_packets(&recordings[0]);
    assert_eq!(packets.video.count(), content_video);
    let first = packets.video.dts[0];
    let last = *packets.video.dts.last().unwrap();
    // nginx-rtmp's recorder counts from the first frame it records: ffmpeg sends its sequence
    // headers at 0, so its recording keeps the stream's times; the native sink sends them at
    // the session's own time, so its recording starts at 0 and must run on without a jump.
    let start = match publisher {
        Publisher::Ffmpeg => 16_777.0,
        Publisher::Native => 0.0,
    };
    assert!((first - start).abs() < 0.1, "first DTS {first}");
    assert!((last - first - 5.96).abs() < 0.1, "last DTS {last}");
    assert!(packets.video.monotonic(true));
    assert_eq!(decoder_errors(&recordings[0]), 0);
}

#[test]
fn a_session_reaching_its_limit_ends_at_a_fragment_boundary_and_the_next_starts_at_zero() {
    session_reaching_its_limit(Publisher::Ffmpeg);
}

#[test]
fn the_native_rtmp_sink_ends_a_session_at_its_limit_and_starts_the_next_at_zero() {
    session_reaching_its_limit(Publisher::Native);
}

fn session_reaching_its_limit(publisher: Publisher) {
    // The default session_limit is 24 days: fragments 1 and 2 reach it, fragment 3 begins a
    // planned new session, whose timestamps start at 0, long before 2^31 ms.
    let (run, server, content_video) = publish_from("23day 23h 59m 57s", publisher);
    let recordings = server.recordings();
    let sessions = run.events("session_started");
    assert_eq!(sessions.len(), 1, "{}", run.stderr());
    assert!(sessions[0]["change"]
        .as_str()
        .unwrap()
        .contains("session_limit"));
    assert_eq!(recordings.len(), 2, "{}", run.stderr());
    let before = probe_packets(&recordings[0]);
    let after = probe_packets(&recordings[1]);
    assert_eq!(before.video.count() + after.video.count(), content_video);
    // As above, the native sink's recordings count from their session's first frame.
    let limit = match publisher {
        Publisher::Ffmpeg => 24.0 * 24.0 * 3600.0,
        Publisher::Native => 3.0,
    };
    assert!((before.video.dts[0] - (limit - 3.0)).abs() < 0.1);
    assert!(*before.video.dts.last().unwrap() > limit - 0.1);
    assert!(after.video.dts[0] < 0.1, "{}", after.video.dts[0]);
    for recording in &recordings {
        assert!(probe_packets(recording).video.monotonic(true));
        assert_eq!(decoder_errors(recording), 0);
    }
}

/// FLV and MPEG-TS batches keep their timeline's timestamps; ffmpeg (with its default
/// `-avoid_negative_ts make_zero`) starts each session's output at 0, and the timeline stage
/// plans a new session once one has carried `session_limit`: tried with a limit of 3 s (paced,
/// so that the server's recordings, named by the second they begin, are two files).
fn batches_end_their_session_at_the_limit(format: &str, stage: &str) {
    let media = small_fragments(3, 2, &["--format", format]);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&json!({"pipelines": [{
        "name": "long",
        "source": {"type": "directory", "path": "in", "pattern": "*", "follow": false, "settle": "0s"},
        "stages": [{"type": stage, "session_limit": "3s"}],
        "sink": {
            "type": "ffmpeg-rtmp",
            "url": format!("{}/long", server.server_url()),
            "input_format": format,
        },
    }]}));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), media.len(), "{}", run.stderr());
    server.stop();
    // Fragments 1 and 2 carry 4 s: fragment 3 begins the second session.
    let sessions = run.events("session_started");
    assert_eq!(sessions.len(), 1, "{}", run.stderr());
    assert!(sessions[0]["change"]
        .as_str()
        .unwrap()
        .contains("session_limit"));
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 2, "{}", run.stderr());
    let content_video: usize = media
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum();
    let before = probe_packets(&recordings[0]);
    let after = probe_packets(&recordings[1]);
    assert_eq!(before.video.count() + after.video.count(), content_video);
    assert!(after.video.dts[0] < 0.1, "{}", after.video.dts[0]);
    for recording in &recordings {
        assert!(probe_packets(recording).video.monotonic(true));
        assert_eq!(decoder_errors(recording), 0);
    }
}

#[test]
fn flv_batches_end_their_session_at_the_limit_and_the_next_starts_at_zero() {
    batches_end_their_session_at_the_limit("flv", "flv-timeline");
}

#[test]
fn mpegts_batches_end_their_session_at_the_limit_and_the_next_starts_at_zero() {
    batches_end_their_session_at_the_limit("mpegts", "mpegts-timeline");
}
