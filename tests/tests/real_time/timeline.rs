//! The `fmp4-timeline` stage end to end: ten 30 s MP4 fragments, each starting at zero, become
//! one continuous 300 s stream on a real RTMP server and in an archive file.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use streampub_tests::media::{fragments, probe_packets, Packets};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{
    run_pipeline_file, send_signal, streampub_binary, Finished, Running, Signal, TestDir,
};

const TIMEOUT: Duration = Duration::from_secs(300);

/// Ten fragments of 30 s and about 8.8 MB, as upstream makes them.
const TEN_SEED_FRAGMENTS: &[&str] = &[
    "--count",
    "10",
    "--seconds",
    "30",
    "--size",
    "640x360",
    "--bitrate",
    "2200k",
];
/// Three short fragments for the reconnect test.
const THREE_SHORT_FRAGMENTS: &[&str] = &[
    "--count",
    "3",
    "--seconds",
    "4",
    "--size",
    "320x180",
    "--bitrate",
    "600k",
];

/// What ffmpeg says when whole MP4 files are joined one after another.
const BROKEN_TIMELINE_WARNINGS: &[&str] =
    &["Non-monotonous DTS", "duplicated MOOV", "discontinuity"];

/// Pipeline `channel-1` from the directory `in` through `stages` into `sink`.
fn pipeline(stages: Value, sink: Value) -> Value {
    json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "stages": stages,
            "sink": sink,
        }],
    })
}

/// The video packets and the duration of the input, probing each file once.
fn input_packets(files: &[PathBuf]) -> (usize, f64) {
    let probed: Vec<Packets> = files.iter().map(|file| probe_packets(file)).collect();
    let video = probed.iter().map(|packets| packets.video.count()).sum();
    (video, probed.iter().map(Packets::duration).sum())
}

/// Asserts a recording or archive is the whole input as one continuous stream.
fn assert_continuous(
    what: &str,
    packets: &Packets,
    input_video_packets: usize,
    input_duration: f64,
) {
    let duration = packets.duration();
    assert!(
        (duration - input_duration).abs() <= input_duration * 0.005,
        "{what}: {duration:.3} s, not within 0.5 % of {input_duration:.3} s"
    );
    assert_eq!(
        packets.video.count(),
        input_video_packets,
        "{what}: video packets"
    );
    assert!(
        packets.video.monotonic(true),
        "{what}: video DTS must strictly increase"
    );
    assert!(
        packets.audio.count() > 0 && packets.audio.monotonic(false),
        "{what}: audio DTS must not decrease"
    );
}

fn assert_no_timeline_warnings(run: &Finished) {
    let ffmpeg_lines = run.events("process_stderr");
    for warning in BROKEN_TIMELINE_WARNINGS {
        let found: Vec<&Value> = ffmpeg_lines
            .iter()
            .filter(|event| event["line"].as_str().unwrap_or_default().contains(warning))
            .collect();
        assert!(found.is_empty(), "ffmpeg said {warning}: {found:?}");
    }
}

#[test]
fn ten_fragments_become_one_continuous_rtmp_stream() {
    let media = fragments(TEN_SEED_FRAGMENTS);
    let (video_packets, duration) = input_packets(&media);
    assert!(
        (duration - 300.0).abs() < 1.0,
        "the input lasts {duration:.2} s"
    );
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&pipeline(
        json!([]),
        json!({
            "type": "ffmpeg-rtmp",
            "url": format!("{}/continuous", server.server_url()),
            "input_format": "mp4",
            "pacing": "off",
        }),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 10);
    assert_eq!(
        run.pipeline_event("pipeline_started", "channel-1")["shape"],
        "directory → fmp4-timeline → fmp4-to-flv → ffmpeg-rtmp",
        "continuity: auto adds the stages"
    );
    assert_no_timeline_warnings(&run);
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    assert_continuous(
        "recording",
        &probe_packets(&recordings[0]),
        video_packets,
        300.0,
    );
}

#[test]
fn ten_fragments_become_one_playable_archive() {
    let media = fragments(TEN_SEED_FRAGMENTS);
    let (video_packets, _) = input_packets(&media);
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&pipeline(
        json!([{"type": "fmp4-timeline"}]),
        json!({"type": "file", "path": "archive.mp4"}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_continuous(
        "archive",
        &probe_packets(&dir.join("archive.mp4")),
        video_packets,
        300.0,
    );
}

#[test]
fn without_the_timeline_the_seed_design_loses_content() {
    // The measured flaw this project exists to fix: whole MP4 files written one after another.
    let media = fragments(THREE_SHORT_FRAGMENTS);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&pipeline(
        json!([]),
        json!({
            "type": "ffmpeg-rtmp",
            "url": format!("{}/seed", server.server_url()),
            "input_format": "mp4",
            "continuity": "off",
        }),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    server.stop();
    let recorded = probe_packets(&server.recordings()[0]).duration();
    let (_, input) = input_packets(&media);
    assert!(
        recorded < input * 0.75,
        "continuity: off should show the flaw, but {recorded:.2} of {input:.2} s were recorded"
    );
}

#[test]
fn after_ffmpeg_dies_mid_fragment_the_new_session_starts_on_a_keyframe_and_continues() {
    let media = fragments(THREE_SHORT_FRAGMENTS);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    // Real-time pace, so that ffmpeg is mid-fragment when it is killed.
    let config = dir.pipeline_file(&pipeline(
        json!([]),
        json!({
            "type": "ffmpeg-rtmp",
            "url": format!("{}/reconnect", server.server_url()),
            "input_format": "mp4",
            "use_rate_limit": true,
            "reconnect_delay": "500ms",
        }),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let started = running.wait_for_event(TIMEOUT, "process_started", |event| {
        event["program"] == "ffmpeg"
    });
    std::thread::sleep(Duration::from_secs(6));
    let pid = started["pid"].as_u64().expect("ffmpeg's pid is logged");
    send_signal(pid as u32, Signal::KILL);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        !run.events("sink_reconnected").is_empty(),
        "{}",
        run.stderr()
    );
    assert_no_timeline_warnings(&run);
    server.stop();

    let recordings = server.recordings();
    assert_eq!(
        recordings.len(),
        2,
        "one session before the kill, one after: {recordings:?}"
    );
    let before = probe_packets(&recordings[0]);
    let after = probe_packets(&recordings[1]);
    assert_eq!(
        after.video.keyframes.first(),
        Some(&true),
        "the new session starts with a decodable keyframe"
    );
    assert!(
        after.video.monotonic(true) && after.audio.monotonic(false),
        "timestamps continue within the new session"
    );
    // Nothing is lost: what the first session missed, the second one has.
    let (_, input) = input_packets(&media);
    assert!(
        before.duration() + after.duration() >= input - 0.3,
        "before {:.2} s + after {:.2} s < {input:.2} s",
        before.duration(),
        after.duration()
    );
}

#[test]
fn non_fragmented_mp4_is_remuxed_when_asked_and_named_when_not() {
    // Plain MP4 with the moov at the end: ffmpeg cannot even read it from a pipe.
    let media = fragments(&[
        "--count",
        "3",
        "--seconds",
        "4",
        "--size",
        "320x180",
        "--bitrate",
        "600k",
        "--movflags",
        "+default_base_moof",
    ]);
    let (video_packets, duration) = input_packets(&media);
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let with_stage = |stage: Value| {
        pipeline(
            json!([stage]),
            json!({"type": "file", "path": "archive.mp4"}),
        )
    };

    let refused = dir.pipeline_file(&with_stage(json!({"type": "fmp4-timeline"})));
    let run = run_pipeline_file(&refused, TIMEOUT);
    assert_eq!(
        run.code(),
        Some(3),
        "bad fragments fail alone, and the exit code says so: {}",
        run.stderr()
    );
    assert!(run.published().is_empty());
    let failures = run.events("fragment_failed");
    assert_eq!(failures.len(), 3, "{}", run.stderr());
    for failure in &failures {
        let error = failure["error"].as_str().unwrap_or_default();
        assert!(error.contains("remux: ffmpeg"), "names the option: {error}");
    }
    std::fs::remove_file(dir.join("archive.mp4")).ok();

    let remuxed = dir.pipeline_file(&with_stage(
        json!({"type": "fmp4-timeline", "remux": "ffmpeg"}),
    ));
    let run = run_pipeline_file(&remuxed, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 3, "{}", run.stderr());
    let remuxed: Vec<Value> = run
        .events("fragment_remuxed")
        .iter()
        .map(|event| event["fragment"].clone())
        .collect();
    assert_eq!(remuxed, ["batch-0.mp4", "batch-1.mp4", "batch-2.mp4"]);
    assert_continuous(
        "remuxed archive",
        &probe_packets(&dir.join("archive.mp4")),
        video_packets,
        duration,
    );
}

#[test]
fn a_stop_is_not_held_up_by_a_remux_that_hangs() {
    let media = fragments(&[
        "--count",
        "1",
        "--seconds",
        "2",
        "--size",
        "160x90",
        "--bitrate",
        "100k",
        "--movflags",
        "+default_base_moof",
    ]);
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    // An "ffmpeg" that never finishes (bounded, so nothing outlives the test).
    let bin = dir.mkdir("bin");
    let fake = bin.join("ffmpeg");
    let remuxing = dir.join("remuxing");
    let script = format!("#!/bin/sh\ntouch '{}'\nexec sleep 30\n", remuxing.display());
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut config = pipeline(
        json!([{"type": "fmp4-timeline", "remux": "ffmpeg"}]),
        json!({"type": "file", "path": "archive.mp4"}),
    );
    config["shutdown_timeout"] = json!("1s");
    let config = dir.pipeline_file(&config);
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let running = Running::start_with_env(
        &streampub_binary(),
        &["run", config.to_str().unwrap()],
        &[("PATH", &path)],
    );
    // Stopped while the remux runs.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !remuxing.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the remux never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal(Signal::TERM);
    let started = std::time::Instant::now();
    let run = running.wait(Duration::from_secs(20));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the stop took {:?}",
        started.elapsed()
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(run.published().is_empty());
}
