//! `pacing: realtime` on `ffmpeg-rtmp`: media reaches the server by the wall clock, not in
//! bursts.

use std::time::{Duration, Instant};

use serde_json::json;
use streampub_tests::media::{probe_packets, small_fragments};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{run_pipeline_file, TestDir};

const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn paced_media_takes_its_own_duration_and_unpaced_media_does_not() {
    // Five 2-s fragments: 10 s of media.
    let media = small_fragments(5, 2, &[]);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let run_with = |pacing: &str| {
        let config = dir.pipeline_file(&json!({"pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": {
                "type": "ffmpeg-rtmp",
                "url": format!("{}/{pacing}", server.server_url()),
                "pacing": pacing,
                "max_lead": "1s",
            },
        }]}));
        let started = Instant::now();
        let run = run_pipeline_file(&config, TIMEOUT);
        assert_eq!(run.code(), Some(0), "{}", run.stderr());
        assert_eq!(run.published().len(), media.len(), "{}", run.stderr());
        started.elapsed()
    };
    let paced = run_with("realtime");
    let unpaced = run_with("off");
    // Paced: the last tag leaves at 10 s - 1 s of lead at the earliest.
    assert!(paced >= Duration::from_secs(8), "paced run took {paced:?}");
    assert!(
        unpaced < paced / 2,
        "unpaced {unpaced:?} vs paced {paced:?}"
    );
    server.stop();
    for recording in server.recordings() {
        let duration = probe_packets(&recording).duration();
        assert!(
            (duration - 10.0).abs() < 0.2,
            "{}: {duration:.2} s",
            recording.display()
        );
    }
}

/// Five 2-s batches of `format` (10 s of media), through its timeline stage, with the
/// defaults: paced.
fn batches_are_paced_by_default(format: &str) {
    let media = small_fragments(5, 2, &["--format", format]);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&json!({"pipelines": [{
        "name": "channel-1",
        "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
        "sink": {
            "type": "ffmpeg-rtmp",
            "url": format!("{}/{format}", server.server_url()),
            "input_format": format,
            "max_lead": "1s",
        },
    }]}));
    let started = Instant::now();
    let run = run_pipeline_file(&config, TIMEOUT);
    let took = started.elapsed();
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), media.len(), "{}", run.stderr());
    assert!(
        took >= Duration::from_secs(8),
        "{format}: paced run took {took:?}"
    );
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1);
    let duration = probe_packets(&recordings[0]).duration();
    assert!((duration - 10.0).abs() < 0.2, "{format}: {duration:.2} s");
}

#[test]
fn flv_batches_are_paced_by_default() {
    batches_are_paced_by_default("flv");
}

#[test]
fn mpegts_batches_are_paced_by_default() {
    batches_are_paced_by_default("mpegts");
}
