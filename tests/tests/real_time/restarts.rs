//! Restart safety: an append archive stays one continuous, playable stream whatever stops the
//! process, and every fragment is in it exactly once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use streampub_tests::media::{container_duration, fragments, probe_packets, Packets};
use streampub_tests::{run_pipeline_file, streampub_binary, Random, Running, Signal, TestDir};

const TIMEOUT: Duration = Duration::from_secs(120);

/// 1 s fragments, small enough that a trial is over in moments.
const ONE_SECOND_FRAGMENTS: &[&str] = &[
    "--count",
    "48",
    "--seconds",
    "1",
    "--size",
    "160x90",
    "--fps",
    "15",
    "--bitrate",
    "100k",
    "--audio-bitrate",
    "32k",
];

/// directory `in` → `fmp4-timeline` → append archive `archive.mp4`, with a state directory.
fn archive_pipeline(dir: &TestDir) -> PathBuf {
    dir.pipeline_file(&json!({
        "state_dir": "state",
        "pipelines": [{
            "name": "archive",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "stages": [{"type": "fmp4-timeline"}],
            "sink": {"type": "file", "path": "archive.mp4"},
        }],
    }))
}

/// Moves `file` into `directory` the way upstream does: written beside it, renamed in.
fn deliver(file: &Path, directory: &Path) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let part = directory.join(format!("{name}.part"));
    std::fs::copy(file, &part).unwrap();
    std::fs::rename(&part, directory.join(name)).unwrap();
}

/// What `ffmpeg -v error` says when decoding `file` completely (empty: nothing wrong).
fn decode_errors(file: &Path) -> String {
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the archive is every input fragment exactly once, in order, as one stream.
fn assert_whole(archive: &Path, inputs: &[PathBuf], context: &str) {
    let errors = decode_errors(archive);
    assert!(
        errors.is_empty(),
        "{context}: the archive has decoding errors:\n{errors}"
    );
    let probed: Vec<Packets> = inputs.iter().map(|input| probe_packets(input)).collect();
    let expected_video: usize = probed.iter().map(|packets| packets.video.count()).sum();
    let expected_audio: usize = probed.iter().map(|packets| packets.audio.count()).sum();
    let expected_duration: f64 = inputs.iter().map(|input| container_duration(input)).sum();
    let packets = probe_packets(archive);
    assert_eq!(
        packets.audio.count(),
        expected_audio,
        "{context}: audio packets"
    );
    assert_eq!(
        packets.video.count(),
        expected_video,
        "{context}: video packets (each fragment's exactly once)"
    );
    assert!(
        packets.video.monotonic(true),
        "{context}: video DTS must strictly increase"
    );
    assert!(
        packets.audio.monotonic(false),
        "{context}: audio DTS must not decrease"
    );
    let duration = container_duration(archive);
    assert!(
        (duration - expected_duration).abs() < 0.01,
        "{context}: {duration:.3} s instead of the fragments' {expected_duration:.3} s"
    );
}

/// Asserts that the part of the archive the pipeline's state records as acknowledged (what a
/// restart keeps) decodes without an error, its video in order. What lies beyond it after a
/// `kill -9` is cut off by the next start.
fn assert_acknowledged_part_plays(dir: &TestDir, context: &str) {
    let Ok(state) = std::fs::read(dir.join("state/archive/pipeline.json")) else {
        return;
    };
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let length = state["sink"]["length"]
        .as_u64()
        .expect("the archive's length is recorded");
    if length == 0 {
        return; // Nothing acknowledged yet.
    }
    let archive = std::fs::read(dir.join("archive.mp4")).unwrap();
    assert!(
        archive.len() as u64 >= length,
        "{context}: the archive is shorter than recorded"
    );
    let acknowledged = dir.write("acknowledged.mp4", &archive[..length as usize]);
    let errors = decode_errors(&acknowledged);
    assert!(
        errors.is_empty(),
        "{context}: the acknowledged archive has errors:\n{errors}"
    );
    assert!(
        probe_packets(&acknowledged).video.monotonic(true),
        "{context}: video DTS"
    );
}

/// The test media, and a test directory whose archive pipeline (with its input directory) has
/// published the first fragment.
fn after_a_first_run() -> (Vec<PathBuf>, TestDir, PathBuf, PathBuf) {
    let media = fragments(ONE_SECOND_FRAGMENTS);
    let dir = TestDir::new();
    let input = dir.mkdir("in");
    let config = archive_pipeline(&dir);
    deliver(&media[0], &input);
    let first = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(first.code(), Some(0), "{}", first.stderr());
    (media, dir, input, config)
}

#[test]
fn a_crash_in_the_first_fragment_is_cut_back_on_the_next_start() {
    let media = fragments(ONE_SECOND_FRAGMENTS);
    let dir = TestDir::new();
    let input = dir.mkdir("in");
    let config = archive_pipeline(&dir);
    // A start with nothing to publish saves where the archive starts, before any byte.
    let empty = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(empty.code(), Some(0), "{}", empty.stderr());
    let state = std::fs::read(dir.join("state/archive/pipeline.json")).expect("a saved state");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["sink"]["length"], 0, "{state}");
    // What a kill -9 in the middle of the first fragment leaves.
    let first = std::fs::read(&media[0]).unwrap();
    dir.write("archive.mp4", &first[..first.len() / 2]);
    for file in &media[..2] {
        deliver(file, &input);
    }
    let restarted = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(restarted.code(), Some(0), "{}", restarted.stderr());
    assert_whole(
        &dir.join("archive.mp4"),
        &media[..2],
        "after a crash in the first fragment",
    );
}

#[test]
fn a_clean_restart_continues_the_archive_without_a_second_init_segment() {
    let (media, dir, input, config) = after_a_first_run();
    for file in &media[1..3] {
        deliver(file, &input);
    }
    let second = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(second.code(), Some(0), "{}", second.stderr());
    assert_eq!(second.published(), ["batch-1.mp4", "batch-2.mp4"]);
    assert_whole(
        &dir.join("archive.mp4"),
        &media[..3],
        "after a clean restart",
    );
}

#[test]
fn an_archive_changed_outside_streampub_is_refused_not_appended_to() {
    let (media, dir, input, config) = after_a_first_run();
    let archive = dir.join("archive.mp4");
    let length = std::fs::metadata(&archive).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_len(length - 100)
        .unwrap();
    deliver(&media[1], &input);
    let refused = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr());
    let failed = refused.pipeline_event("pipeline_failed", "archive");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("archive.mp4"), "names the file: {error}");
    assert!(error.contains("move it away"), "names the remedy: {error}");
    assert!(refused.published().is_empty());
    assert_eq!(
        std::fs::metadata(&archive).unwrap().len(),
        length - 100,
        "left as it was"
    );
}

#[test]
fn sigterm_and_sigkill_at_random_moments_leave_one_whole_archive() {
    const SEED: u64 = 20261125;
    const TRIALS_EACH: usize = 11;
    let media = fragments(ONE_SECOND_FRAGMENTS);
    let dir = TestDir::new();
    let input = dir.mkdir("in");
    let config = archive_pipeline(&dir);
    let mut random = Random(SEED);
    // As many of each signal, in a seeded order.
    let mut signals: Vec<Signal> = [Signal::TERM, Signal::KILL]
        .into_iter()
        .flat_map(|signal| std::iter::repeat_n(signal, TRIALS_EACH))
        .collect();
    for index in (1..signals.len()).rev() {
        signals.swap(index, random.below(index as u64 + 1) as usize);
    }
    // Upstream keeps delivering while the publisher is stopped and started again.
    let mut next = media.iter();
    let mut interrupted = 0;
    for (trial, signal) in signals.into_iter().enumerate() {
        for file in next.by_ref().take(2) {
            deliver(file, &input);
        }
        let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(random.below(60)));
        running.signal(signal);
        let stopped = running.wait(TIMEOUT);
        assert_acknowledged_part_plays(&dir, &format!("seed {SEED}, trial {trial}"));
        // Stopped before its input ended (a SIGTERM that came before the handlers were
        // installed kills like SIGKILL).
        if stopped.events("pipeline_finished").is_empty() || !stopped.published().is_empty() {
            interrupted += 1;
        }
    }
    assert!(
        interrupted >= TRIALS_EACH,
        "seed {SEED}: only {interrupted} trials were stopped while publishing; the test needs \
         more work per trial"
    );
    for file in next {
        deliver(file, &input);
    }
    let last = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(last.code(), Some(0), "{}", last.stderr());
    assert_whole(
        &dir.join("archive.mp4"),
        &media,
        &format!("seed {SEED}, after {} stops", 2 * TRIALS_EACH),
    );
}
