//! The `ffmpeg-rtmp` and `process` sinks against a real nginx-rtmp server and a real ffmpeg.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::media::{fragments, probe_packets, total_duration, video_frame_hashes};
use streampub_tests::recordings::{input_frames, recorded_stretches, repeats_between_sessions};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::tls::TlsTunnel;
use streampub_tests::{
    merged, run_pipeline_file, run_to_end, streampub_binary, workspace_root, Running, TestDir,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// One 30 s fragment of about 8.8 MB, the size of upstream's batches.
const SEED_FRAGMENT: &[&str] = &[
    "--count",
    "1",
    "--seconds",
    "30",
    "--size",
    "640x360",
    "--bitrate",
    "2200k",
];
/// Short MPEG-TS fragments on one continuous clock: they concatenate correctly without the
/// timeline stage, so these tests check the sink alone.
const SHORT_TS_FRAGMENTS: &[&str] = &[
    "--count",
    "5",
    "--seconds",
    "3",
    "--size",
    "320x180",
    "--bitrate",
    "400k",
    "--fps",
    "25",
    "--format",
    "mpegts",
];

/// Pipeline `channel-1` publishing the directory `in` to `url`, with `sink_options`.
fn rtmp_pipeline(url: &str, format: &str, sink_options: Value) -> Value {
    let sink = merged(
        json!({"type": "ffmpeg-rtmp", "url": url, "input_format": format, "pacing": "off"}),
        sink_options,
    );
    json!({
        "state_dir": "state",
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": sink,
        }],
    })
}

/// Whether `run` logged a clean exit of `program`.
fn exited_cleanly(run: &streampub_tests::Finished, program: &str) -> bool {
    run.events("process_exited")
        .iter()
        .any(|event| event["program"] == program && event["exit_code"] == 0)
}

#[test]
fn one_seed_size_fragment_is_published_whole() {
    let media = fragments(SEED_FRAGMENT);
    let size = std::fs::metadata(&media[0]).unwrap().len();
    assert!(
        (8_000_000..9_600_000).contains(&size),
        "about 8.8 MB, not {size}"
    );
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/seed", server.server_url());
    let config = dir.pipeline_file(&rtmp_pipeline(&url, "mp4", json!({})));

    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["batch-0.mp4"]);
    assert!(exited_cleanly(&run, "ffmpeg"), "{}", run.stderr());
    server.stop();

    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let duration = probe_packets(&recordings[0]).duration();
    assert!(
        (duration - 30.0).abs() <= 0.2,
        "recorded {duration:.3} s, not 30 ± 0.2 s"
    );
}

#[test]
fn the_sink_retries_until_the_server_comes_up() {
    let media = fragments(SHORT_TS_FRAGMENTS);
    let mut server = RtmpServer::reserve();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/late", server.server_url());
    let config = dir.pipeline_file(&rtmp_pipeline(
        &url,
        "mpegts",
        json!({"reconnect_delay": "1s", "max_reconnect_delay": "2s", "max_reconnect_attempts": 10}),
    ));

    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    // The server stays down until the sink has failed and is waiting to reconnect.
    running.wait_for_event(TIMEOUT, "sink_reconnecting", |_| true);
    server.restart();
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 5, "{}", run.stderr());
    assert!(
        !run.events("sink_reconnecting").is_empty(),
        "it had to retry: {}",
        run.stderr()
    );
    server.stop();

    let recorded = total_duration(&server.recordings());
    let expected = total_duration(&media);
    assert!(
        (recorded - expected).abs() < 0.5,
        "recorded {recorded:.2} s of {expected:.2} s"
    );
}

#[test]
fn a_server_crash_mid_run_loses_no_fragment() {
    let media = fragments(SHORT_TS_FRAGMENTS);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/crash", server.server_url());
    // Real-time pace (-re): the five 3 s fragments take 15 s, so the crash lands mid-run.
    let config = dir.pipeline_file(&rtmp_pipeline(
        &url,
        "mpegts",
        json!({
            "use_rate_limit": true,
            "reconnect_delay": "1s",
            "max_reconnect_delay": "2s",
            "max_reconnect_attempts": 10,
        }),
    ));

    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "fragment_sent", |event| event["sequence"] == 1);
    std::thread::sleep(Duration::from_millis(2500));
    server.kill();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        !run.events("sink_reconnected").is_empty(),
        "{}",
        run.stderr()
    );
    let names: Vec<String> = media
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(run.published(), names, "every fragment once, in order");
    server.stop();

    // The recordings, matched frame by frame to the input: every frame reached the server,
    // the session after the crash resumed at a keyframe.
    let (content, position) = input_frames(&media, video_frame_hashes);
    let stretches = recorded_stretches(&server, &position, video_frame_hashes);
    assert!(
        stretches.len() >= 2,
        "one recording before the crash, one after: {stretches:?}"
    );
    assert!(
        stretches[0].1 > 25 && stretches[0].1 + 25 < content.len(),
        "the crash must land mid-run: {stretches:?}"
    );
    let repeats = repeats_between_sessions(&stretches, content.len(), 0.04);
    println!("recorded frames per session {stretches:?}; repeated {repeats:.2?} s");
}

#[test]
fn a_stopped_ffmpeg_is_detected_within_stall_timeout_and_replaced() {
    let media = fragments(SHORT_TS_FRAGMENTS);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    // Real-time pace and a small pipe, so that streampub always has input waiting for ffmpeg.
    let url = format!("{}/stall", server.server_url());
    let config = dir.pipeline_file(&rtmp_pipeline(
        &url,
        "mpegts",
        json!({
            "use_rate_limit": true,
            "pipe_buffer": "64KiB",
            "stall_timeout": "2s",
            "reconnect_delay": "200ms",
            "max_reconnect_attempts": 3,
        }),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "fragment_sent", |event| event["sequence"] == 1);
    std::thread::sleep(Duration::from_secs(2));
    let started = running.events_so_far("process_started");
    let pid = started
        .last()
        .and_then(|event| event["pid"].as_u64())
        .expect("ffmpeg's pid") as u32;
    streampub_tests::send_signal(pid, streampub_tests::Signal::STOP);
    let stopped_at = std::time::Instant::now();
    let reconnecting = running.wait_for_event(TIMEOUT, "sink_reconnecting", |_| true);
    assert!(
        stopped_at.elapsed() < Duration::from_secs(6),
        "a stall of 2 s was detected after {:?}",
        stopped_at.elapsed()
    );
    let error = reconnecting["error"].as_str().unwrap_or_default();
    assert!(error.contains("stall_timeout"), "{error}");
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), media.len(), "{}", run.stderr());
    // Only the stop was a stall: playing out what it buffered under -re, ffmpeg takes no input
    // for seconds, but its output goes on.
    assert_eq!(run.events("sink_reconnecting").len(), 1, "{}", run.stderr());
    server.stop();
    let recorded = total_duration(&server.recordings());
    let expected = total_duration(&media);
    assert!(
        recorded >= expected - 0.5,
        "recorded {recorded:.2} s of {expected:.2} s"
    );
}

#[test]
fn a_server_that_never_comes_up_fails_the_run_within_the_backoff_budget() {
    let media = fragments(SHORT_TS_FRAGMENTS);
    let server = RtmpServer::reserve();
    let dir = TestDir::new();
    dir.copy_in("in", &media[..1]);
    let url = format!("{}/never", server.server_url());
    let config = dir.pipeline_file(&rtmp_pipeline(
        &url,
        "mpegts",
        json!({"reconnect_delay": "200ms", "max_reconnect_delay": "400ms", "max_reconnect_attempts": 3}),
    ));
    let started = Instant::now();
    let run = run_pipeline_file(&config, TIMEOUT);
    let elapsed = started.elapsed();
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    // Backoff budget: 0.24 + 0.36 + 0.48 s, plus four ffmpeg attempts that each fail at once.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    assert_eq!(run.events("sink_reconnecting").len(), 3, "{}", run.stderr());
    let failed = run.pipeline_event("pipeline_failed", "channel-1");
    // Sent into ffmpeg but never confirmed: not published, and counted once, as failed.
    assert!(run.published().is_empty(), "{}", run.stderr());
    assert_eq!(failed["fragments_published"], 0);
    assert_eq!(failed["fragments_failed"], 1);
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Connection refused"),
        "the final error quotes ffmpeg's cause: {error}"
    );
    assert!(
        run.events("process_stderr")
            .iter()
            .any(|event| event["program"] == "ffmpeg"
                && event["line"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Connection refused")),
        "ffmpeg's reason is logged: {}",
        run.stderr()
    );
    // One line for the fragment: what happened and what happens to it.
    let failed = run.events("fragment_failed");
    assert_eq!(failed.len(), 1, "{}", run.stderr());
    assert_eq!(failed[0]["fragment"], "batch-0.ts");
    assert_eq!(failed[0]["reason"], "sink_failed");

    // Not acknowledged: once the server is up, the next run publishes it.
    let mut server = server;
    server.restart();
    let again = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    assert_eq!(again.published(), ["batch-0.ts"]);
}

#[test]
fn a_run_with_nothing_to_publish_exits_0() {
    let dir = TestDir::new();
    dir.mkdir("in");
    // Nothing is sent, so ffmpeg never connects (it exits on its empty input).
    let config = dir.pipeline_file(&rtmp_pipeline(
        "rtmp://127.0.0.1:1/live/x",
        "mp4",
        json!({}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(
        run.pipeline_event("pipeline_finished", "channel-1")["fragments_published"],
        0
    );
}

#[test]
fn validate_explains_a_missing_ffmpeg_and_a_bad_url() {
    let dir = TestDir::new();
    dir.mkdir("in");
    let config = dir.pipeline_file(&rtmp_pipeline(
        "rtmp://127.0.0.1:1/live/x",
        "mp4",
        json!({}),
    ));
    let empty_path = dir.mkdir("empty-path");
    let run = Running::start_with_env(
        &streampub_binary(),
        &["validate", config.to_str().unwrap()],
        &[("PATH", empty_path.to_str().unwrap())],
    )
    .wait(TIMEOUT);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("ffmpeg not found on PATH; Debian: apt-get install ffmpeg"),
        "{}",
        run.stderr()
    );

    let http = dir.pipeline_file(&rtmp_pipeline(
        "http://127.0.0.1/live/secret-key",
        "mp4",
        json!({}),
    ));
    let run = run_to_end(
        &streampub_binary(),
        &["validate", http.to_str().unwrap()],
        TIMEOUT,
    );
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr().contains("is not an rtmp:// or rtmps:// URL"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("secret-key"), "{}", run.stderr());
}

#[test]
fn the_process_sink_with_cat_writes_byte_identical_output() {
    let media = fragments(SHORT_TS_FRAGMENTS);
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&json!({
        "pipelines": [{
            "name": "copy",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": {"type": "process", "command": ["cat"], "stdout": "out.ts"},
        }],
    }));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let expected: Vec<u8> = media
        .iter()
        .flat_map(|path| std::fs::read(path).unwrap())
        .collect();
    let written = std::fs::read(dir.join("out.ts")).unwrap();
    assert!(
        written == expected,
        "cat's output differs from the fragments"
    );
    assert!(exited_cleanly(&run, "cat"), "{}", run.stderr());
}

#[test]
fn the_stream_key_appears_in_no_log_line() {
    const KEY: &str = "sEcReT-stream-key-4711";
    let media = fragments(SHORT_TS_FRAGMENTS);
    let mut server = RtmpServer::reserve();
    let dir = TestDir::new();
    dir.copy_in("in", &media[..2]);
    let config = dir.join("pipeline.yaml");
    std::fs::copy(
        workspace_root().join("tests/fixtures/stream-key.yaml"),
        &config,
    )
    .unwrap();
    let server_url = server.server_url();
    // The server comes up late, so ffmpeg fails first and its errors (which name the URL) are
    // logged too.
    let running = Running::start_with_env(
        &streampub_binary(),
        &["-vv", "run", config.to_str().unwrap()],
        &[("STREAM_KEY", KEY), ("SERVER_URL", &server_url)],
    );
    running.wait_for_event(TIMEOUT, "sink_reconnecting", |_| true);
    server.restart();
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        run.stderr().contains("<redacted>"),
        "the URL was logged, redacted: {}",
        run.stderr()
    );
    let leaks: Vec<&String> = run.logs.iter().filter(|line| line.contains(KEY)).collect();
    assert!(leaks.is_empty(), "the stream key leaked: {leaks:?}");
    // It did reach the server.
    server.stop();
    assert!(server
        .recordings()
        .iter()
        .any(|path| file_name(path).starts_with(KEY)));
}

#[test]
fn only_the_url_password_and_a_one_letter_key_are_redacted() {
    let media = fragments(SHORT_TS_FRAGMENTS);
    let server = RtmpServer::reserve();
    let dir = TestDir::new();
    dir.copy_in("in", &media[..1]);
    // Nothing listens: ffmpeg's errors name the URL.
    let url = server
        .server_url()
        .replace("rtmp://", "rtmp://user:s3cret@")
        + "/k";
    let config = dir.pipeline_file(&rtmp_pipeline(
        &url,
        "mpegts",
        json!({"reconnect_delay": "100ms", "max_reconnect_delay": "100ms", "max_reconnect_attempts": 1}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let stderr = run.stderr();
    assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
    assert!(stderr.contains("user:<redacted>@"), "{stderr}");
    // Every replacement stands where the password or the key stood in a URL.
    let replaced = stderr.matches("<redacted>").count();
    let in_place =
        stderr.matches("user:<redacted>@").count() + stderr.matches("/live/<redacted>").count();
    assert_eq!(
        replaced, in_place,
        "text outside a URL was touched: {stderr}"
    );
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn rtmps_refuses_an_unknown_certificate_by_default_and_trusts_tls_ca_file() {
    let media = fragments(SHORT_TS_FRAGMENTS);
    let mut server = RtmpServer::start();
    let tunnel = TlsTunnel::start(server.port());
    let url = format!("rtmps://127.0.0.1:{}/live/secure", tunnel.port());
    let dir = TestDir::new();
    dir.copy_in("in", &media[..2]);
    let options = json!({"reconnect_delay": "200ms", "max_reconnect_attempts": 5});

    // A self-signed certificate: refused at the first attempt, the error names both options.
    let refused = run_pipeline_file(
        &dir.pipeline_file(&rtmp_pipeline(&url, "mpegts", options.clone())),
        TIMEOUT,
    );
    assert_certificate_refused(&refused);
    assert_eq!(refused.events("process_started").len(), 1);
    assert!(server.recordings().is_empty(), "nothing reached the server");

    // Its certificate as the CA: published.
    let trusted = run_pipeline_file(
        &dir.pipeline_file(&rtmp_pipeline(
            &url,
            "mpegts",
            merged(options, json!({"tls_ca_file": tunnel.certificate()})),
        )),
        TIMEOUT,
    );
    assert_eq!(trusted.code(), Some(0), "{}", trusted.stderr());
    assert_eq!(trusted.published().len(), 2, "{}", trusted.stderr());
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let expected: usize = media[..2]
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum();
    assert_eq!(probe_packets(&recordings[0]).video.count(), expected);
}

/// `run` failed at the first attempt on the server's certificate, naming both ways out, and
/// published nothing.
pub(crate) fn assert_certificate_refused(run: &streampub_tests::Finished) {
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.events("sink_reconnecting").is_empty(),
        "a certificate that does not verify is not retried: {}",
        run.stderr()
    );
    let failed = run.pipeline_event("pipeline_failed", "channel-1");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("certificate")
            && error.contains("tls_ca_file")
            && error.contains("tls_verify: false"),
        "{error}"
    );
    assert!(run.published().is_empty());
}
