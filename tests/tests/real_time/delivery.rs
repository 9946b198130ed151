//! What the `ffmpeg-rtmp` sink resends after an outage, and when it gives up, against a real
//! nginx-rtmp: a paced stream of MP4 fragments (1 s GOP) through the timeline stage, with the
//! server killed and ffmpeg killed at seeded moments. The recordings tell what reached the
//! server; the logs tell which fragment each session began with.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::media::{fragments, video_packet_hashes};
use streampub_tests::recordings::{input_frames, recorded_stretches, repeats_between_sessions};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{
    run_pipeline_file, send_signal, streampub_binary, Finished, Random, Running, Signal, TestDir,
};

const TIMEOUT: Duration = Duration::from_secs(240);
const SEED: u64 = 20261125;

/// 2 s fragments of 1 s GOPs: 20 make a 40 s stream.
const PACED_FRAGMENTS: &[&str] = &[
    "--count",
    "20",
    "--seconds",
    "2",
    "--size",
    "320x180",
    "--bitrate",
    "500k",
    "--fps",
    "25",
    "--audio-bitrate",
    "64k",
];

/// How far apart two recorded stretches of content may be and still count as touching
/// (timestamps are rounded to milliseconds in FLV; frames last 40 ms).
const TOLERANCE: f64 = 0.1;

/// Pipeline `channel-1` publishing the directory `in`, paced, to `url`, with `sink_options`.
fn paced_pipeline(url: &str, sink_options: Value) -> Value {
    let sink = streampub_tests::merged(
        json!({"type": "ffmpeg-rtmp", "url": url, "use_rate_limit": true}),
        sink_options,
    );
    json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": sink,
        }],
    })
}

/// Checks that the recordings hold every frame of `media` (each a run of consecutive frames
/// from a keyframe), and returns what each disruption repeated, in seconds.
fn repeats_per_disruption(server: &RtmpServer, media: &[std::path::PathBuf]) -> Vec<f64> {
    let (content, position) = input_frames(media, video_packet_hashes);
    let stretches = recorded_stretches(server, &position, video_packet_hashes);
    println!("recorded frames per session {stretches:?}");
    repeats_between_sessions(&stretches, content.len(), 0.04)
}

fn assert_every_fragment_published_once(run: &Finished, media: &[std::path::PathBuf]) {
    let names: Vec<String> = media
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(run.published(), names, "every fragment once, in order");
}

#[test]
fn three_server_crashes_lose_nothing_and_repeat_little() {
    let media = fragments(PACED_FRAGMENTS);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/crashes", server.server_url());
    let config = dir.pipeline_file(&paced_pipeline(
        &url,
        json!({"reconnect_delay": "500ms", "max_reconnect_delay": "2s"}),
    ));
    let mut random = Random(SEED);
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "fragment_published", |_| true);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(3000 + random.below(3000)));
        server.kill();
        std::thread::sleep(Duration::from_millis(1000));
        server.restart();
        // The next crash comes once the stream is live again.
        let reconnects = running.events_so_far("sink_reconnected").len();
        running.wait_for_event(TIMEOUT, "sink_reconnected", |_| true);
        while running.events_so_far("sink_reconnected").len() == reconnects {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_every_fragment_published_once(&run, &media);
    server.stop();

    let repeats = repeats_per_disruption(&server, &media);
    let total: f64 = repeats.iter().sum();
    println!(
        "seed {SEED}: repeated per server crash {repeats:.2?} s, {total:.2} s in all ({:.2} s per disruption)",
        total / repeats.len() as f64
    );
    assert_eq!(repeats.len(), 3);
    for repeat in &repeats {
        assert!(
            *repeat <= 3.0 + TOLERANCE,
            "seed {SEED}: a crash repeated {repeat:.2} s: {repeats:.2?}"
        );
    }
}

#[test]
fn disruptions_every_12_seconds_still_reach_the_end() {
    let media = fragments(PACED_FRAGMENTS);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/disrupted", server.server_url());
    // Each outage takes one or two attempts; three outages share no budget of three.
    let config = dir.pipeline_file(&paced_pipeline(
        &url,
        json!({
            "reconnect_delay": "1s",
            "max_reconnect_delay": "2s",
            "max_reconnect_attempts": 3,
        }),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "pipeline_started", |_| true);
    let started = Instant::now();
    let mut disruptions = 0;
    // Alternately the server crashes and ffmpeg is killed, every 12 s, until the run ends.
    while started.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_secs(12));
        if !running.events_so_far("pipeline_finished").is_empty()
            || !running.events_so_far("pipeline_failed").is_empty()
        {
            break;
        }
        if disruptions % 2 == 0 {
            server.kill();
            std::thread::sleep(Duration::from_millis(1000));
            server.restart();
        } else {
            let ffmpeg = running
                .events_so_far("process_started")
                .last()
                .and_then(|event| event["pid"].as_u64())
                .expect("ffmpeg's pid") as u32;
            send_signal(ffmpeg, Signal::KILL);
        }
        disruptions += 1;
    }
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        disruptions >= 3,
        "only {disruptions} disruptions: the run was too short"
    );
    assert_every_fragment_published_once(&run, &media);
    server.stop();
    let repeats = repeats_per_disruption(&server, &media);
    let total: f64 = repeats.iter().sum();
    println!("{disruptions} disruptions 12 s apart: repeated {repeats:.2?} s, {total:.2} s in all");
    let attempts: Vec<u64> = run
        .events("sink_reconnecting")
        .iter()
        .filter_map(|event| event["attempt"].as_u64())
        .collect();
    assert!(
        attempts.iter().all(|attempt| *attempt <= 3),
        "attempts count per outage: {attempts:?}"
    );
}

#[test]
fn a_codec_flv_cannot_carry_fails_at_once_naming_it() {
    let media = fragments(&[
        "--count",
        "2",
        "--seconds",
        "2",
        "--size",
        "320x180",
        "--bitrate",
        "300k",
        "--video-codec",
        "hevc",
    ]);
    let server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/hevc", server.server_url());
    let names_codec_and_way_out = |error: &str| {
        error.contains("hevc") && error.contains("H.264") && error.contains("enhanced-RTMP")
    };

    // By default ffmpeg reads FLV tags that the fmp4-to-flv stage makes: each HEVC fragment
    // fails there, before ffmpeg, and the run says so (exit 3).
    let config = dir.pipeline_file(&paced_pipeline(&url, json!({"reconnect_delay": "200ms"})));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    assert!(
        run.events("sink_reconnecting").is_empty(),
        "{}",
        run.stderr()
    );
    let failures = run.events("fragment_failed");
    assert_eq!(failures.len(), media.len(), "{}", run.stderr());
    for failure in &failures {
        let error = failure["error"].as_str().unwrap_or_default();
        assert!(names_codec_and_way_out(error), "{error}");
    }
    assert!(run.published().is_empty());
    // Nothing to send: no ffmpeg was started, so none failed on an empty input.
    assert!(run.events("process_started").is_empty(), "{}", run.stderr());
    assert!(run.events("process_stderr").is_empty(), "{}", run.stderr());

    // Reading the timeline's MP4 (for an ffmpeg with enhanced RTMP), ffmpeg refuses HEVC into
    // FLV: fatal at the first attempt, with ffmpeg's words and the way out.
    let config = dir.pipeline_file(&paced_pipeline(
        &url,
        json!({"reconnect_delay": "200ms", "ffmpeg_input": "mp4"}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.events("sink_reconnecting").is_empty(),
        "no new ffmpeg can carry HEVC in FLV: {}",
        run.stderr()
    );
    assert_eq!(run.events("process_started").len(), 1, "{}", run.stderr());
    let failed = run.pipeline_event("pipeline_failed", "channel-1");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        names_codec_and_way_out(error),
        "the error names the codec and the way out: {error}"
    );
    assert!(run.published().is_empty());
}
