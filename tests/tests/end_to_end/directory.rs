//! The directory source end to end: order, completeness, restarts.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::{
    merged, run_pipeline_file, streampub_binary, test_bytes, Running, Signal, TestDir,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Pipeline `channel-1` reading the directory `in` with `source_options`, into `sink`, with
/// `options` of its own.
fn pipeline(source_options: Value, sink: Value, options: Value) -> Value {
    let source = merged(json!({"type": "directory", "path": "in"}), source_options);
    let pipeline = merged(
        json!({"name": "channel-1", "source": source, "sink": sink}),
        options,
    );
    json!({"state_dir": "state", "pipelines": [pipeline]})
}

fn is_started(event: &Value) -> bool {
    event["pipeline"] == "channel-1"
}

#[test]
fn five_fragments_to_the_null_sink_are_published_in_numeric_order() {
    let dir = TestDir::new();
    // Written out of order, with a two-digit number, a temporary file and a dotfile.
    for index in [4, 10, 1, 3, 2] {
        dir.write(&format!("in/batch-{index}.mp4"), test_bytes(index, 100_000));
    }
    dir.write("in/batch-11.mp4.part", b"being written");
    dir.write("in/.batch-12.mp4", b"hidden");
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": false, "settle": "0s"}),
        json!({"type": "null"}),
        json!({}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(
        run.published(),
        [
            "batch-1.mp4",
            "batch-2.mp4",
            "batch-3.mp4",
            "batch-4.mp4",
            "batch-10.mp4"
        ]
    );
    let published = run.events("fragment_published");
    let sequences: Vec<&Value> = published.iter().map(|event| &event["sequence"]).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    assert_eq!(published[4]["published_total"], 5);
    assert_eq!(published[4]["bytes"], 100_000);
    assert_eq!(
        run.pipeline_event("pipeline_finished", "channel-1")["fragments_published"],
        5
    );
}

#[test]
fn a_file_appended_slowly_is_published_once_and_complete() {
    let dir = TestDir::new();
    dir.mkdir("in");
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": true, "settle": "500ms"}),
        json!({"type": "file", "mode": "per_fragment", "path": "out"}),
        json!({}),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "pipeline_started", is_started);

    // 20 appends, 100 ms apart: never unchanged for 500 ms until the writer is done.
    let expected = test_bytes(7, 20 * 50_000);
    let path = dir.join("in/slow.mp4");
    let mut file = std::fs::File::create(&path).unwrap();
    for piece in expected.chunks(50_000) {
        file.write_all(piece).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(file);
    let finished_writing = Instant::now();

    running.wait_for_event(TIMEOUT, "fragment_published", |_| true);
    // Picked up within settle + 200 ms, plus the scheduling slack of a shared machine.
    assert!(
        finished_writing.elapsed() < Duration::from_secs(3),
        "took {:?}",
        finished_writing.elapsed()
    );
    std::thread::sleep(Duration::from_millis(1200));
    running.signal(Signal::INT);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["slow.mp4"], "published once");
    assert!(
        std::fs::read(dir.join("out/slow.mp4")).unwrap() == expected,
        "published complete"
    );
}

#[test]
fn a_file_renamed_into_place_is_published_without_waiting_for_settle() {
    let dir = TestDir::new();
    dir.mkdir("in");
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": true, "settle": "10s", "poll_interval": "30s"}),
        json!({"type": "null"}),
        json!({}),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    // A file renamed in before the source watches the directory is found by a scan and
    // settles like any other: wait until it watches.
    running.wait_for_event(TIMEOUT, "source_watching", is_started);
    dir.write("in/batch-0.mp4.part", test_bytes(1, 10_000));
    let renamed_at = Instant::now();
    std::fs::rename(dir.join("in/batch-0.mp4.part"), dir.join("in/batch-0.mp4")).unwrap();
    running.wait_for_event(TIMEOUT, "fragment_published", |_| true);
    assert!(
        renamed_at.elapsed() < Duration::from_secs(3),
        "a renamed file waited {:?} (settle is 10 s)",
        renamed_at.elapsed()
    );
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["batch-0.mp4"]);
}

#[test]
fn an_empty_file_waits_for_content_and_a_dangling_link_is_reported_once() {
    let dir = TestDir::new();
    dir.write("in/batch-0.mp4", b"");
    std::os::unix::fs::symlink(dir.join("missing.mp4"), dir.join("in/batch-9.mp4")).unwrap();
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": true, "settle": "300ms", "poll_interval": "100ms"}),
        json!({"type": "file", "mode": "per_fragment", "path": "out"}),
        json!({}),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "entry_unusable", |event| {
        event["fragment"] == "batch-9.mp4"
    });
    // Several rescans later: still nothing published, and the link reported once.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        running.published_so_far().is_empty(),
        "an empty file is not complete"
    );
    let content = test_bytes(3, 50_000);
    std::fs::write(dir.join("in/batch-0.mp4"), &content).unwrap();
    running.wait_for_event(TIMEOUT, "fragment_published", |_| true);
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["batch-0.mp4"]);
    assert!(std::fs::read(dir.join("out/batch-0.mp4")).unwrap() == content);
    assert_eq!(run.events("entry_unusable").len(), 1, "{}", run.stderr());
}

/// `batch-1.mp4` left empty (its writer crashed) before 14 good batches.
fn an_empty_batch_among_good_ones(dir: &TestDir) {
    dir.write("in/batch-1.mp4", b"");
    for index in (0..=15).filter(|index| *index != 1) {
        dir.write(&format!("in/batch-{index}.mp4"), test_bytes(index, 10_000));
    }
}

fn good_batches() -> Vec<String> {
    (0..=15)
        .filter(|index| *index != 1)
        .map(|index| format!("batch-{index}.mp4"))
        .collect()
}

#[test]
fn an_empty_file_fails_alone_after_empty_timeout_and_the_files_after_it_go_on() {
    let dir = TestDir::new();
    an_empty_batch_among_good_ones(&dir);
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": true, "settle": "0s", "empty_timeout": "3s"}),
        json!({"type": "file", "mode": "per_fragment", "path": "out"}),
        json!({}),
    ));
    let started = Instant::now();
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["fragment"] == "batch-15.mp4"
    });
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3 + 5), "took {elapsed:?}");
    assert_eq!(running.published_so_far(), good_batches());
    let failed = running.events_so_far("fragment_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["fragment"], "batch-1.mp4");
    assert_eq!(failed[0]["reason"], "empty");
    // Left in place, and offered again once written.
    assert!(dir.join("in/batch-1.mp4").exists());
    std::fs::write(dir.join("in/batch-1.mp4"), test_bytes(1, 10_000)).unwrap();
    running.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["fragment"] == "batch-1.mp4"
    });
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    // Exit 3: a fragment failed in this run (its second offer, once written, did not).
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    assert_eq!(
        std::fs::read(dir.join("out/batch-1.mp4")).unwrap(),
        test_bytes(1, 10_000)
    );
    let finished = run.pipeline_event("pipeline_finished", "channel-1");
    assert_eq!(finished["fragments_failed"], 1, "{finished}");
    assert_eq!(finished["fragments_published"], 16, "{finished}");
}

#[test]
fn a_one_shot_run_fails_an_empty_file_alone_and_the_next_run_offers_it_again() {
    let dir = TestDir::new();
    an_empty_batch_among_good_ones(&dir);
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": false, "settle": "0s", "empty_timeout": "2s"}),
        json!({"type": "file", "mode": "per_fragment", "path": "out"}),
        json!({}),
    ));
    let first = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(
        first.code(),
        Some(3),
        "one fragment failed: {}",
        first.stderr()
    );
    assert_eq!(first.published(), good_batches());
    let waiting = first.pipeline_event("fragment_waiting", "channel-1");
    assert_eq!(waiting["fragment"], "batch-1.mp4");
    assert_eq!(waiting["reason"], "empty");
    // One line for its outcome: the runtime's, which says what happens next.
    let failed = first.events("fragment_failed");
    assert_eq!(failed.len(), 1, "{}", first.stderr());
    assert_eq!(failed[0]["reason"], "empty");
    assert!(first.events("fragment_not_published").is_empty());
    let again = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(again.code(), Some(3), "{}", again.stderr());
    assert!(again.published().is_empty(), "{}", again.stderr());
    dir.write("in/batch-1.mp4", test_bytes(1, 1000));
    let written = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(written.code(), Some(0), "{}", written.stderr());
    assert_eq!(written.published(), ["batch-1.mp4"]);
}

#[test]
fn sighup_reloads_and_an_unchanged_file_changes_nothing() {
    let dir = TestDir::new();
    dir.write("in/batch-0.mp4", test_bytes(0, 10_000));
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": true, "settle": "0s"}),
        json!({"type": "null"}),
        json!({}),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "fragment_published", |_| true);
    running.signal(Signal::HUP);
    let reloaded = running.wait_for_event(TIMEOUT, "config_reloaded", |_| true);
    assert_eq!(reloaded["unchanged"], "channel-1");
    assert!(running.events_so_far("pipeline_finished").is_empty());
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    run.pipeline_event("pipeline_finished", "channel-1");
}

#[test]
fn an_interrupted_run_resumes_without_duplicates_or_gaps() {
    let dir = TestDir::new();
    let names: Vec<String> = (0..5).map(|index| format!("batch-{index}.mp4")).collect();
    for (index, name) in names.iter().enumerate() {
        dir.write(&format!("in/{name}"), test_bytes(index as u64, 1_000_000));
    }
    // About one second per fragment: a slow consumer.
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": false, "settle": "0s"}),
        json!({"type": "null", "bytes_per_second": "1MB"}),
        json!({}),
    ));

    let first = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    first.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["published_total"] == 2
    });
    first.signal(Signal::INT);
    let first = first.wait(TIMEOUT);
    assert_eq!(first.code(), Some(0), "graceful stop: {}", first.stderr());
    let first_published = first.published();
    assert!(
        (2..=3).contains(&first_published.len()),
        "the fragment in flight may finish, nothing more: {first_published:?}"
    );
    // Every fragment counted once, in its final state.
    let summary = first.pipeline_event("pipeline_finished", "channel-1");
    assert_eq!(summary["fragments_published"], first_published.len());
    assert_eq!(summary["fragments_left"], 5 - first_published.len());
    assert_eq!(summary["fragments_failed"], 0);

    let second = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(second.code(), Some(0), "{}", second.stderr());
    let mut all = first_published.clone();
    all.extend(second.published());
    assert_eq!(all, names, "every fragment exactly once, in order");

    // A third run has nothing left to publish.
    let third = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(third.code(), Some(0), "{}", third.stderr());
    assert!(third.published().is_empty(), "{:?}", third.published());
}

#[test]
fn on_done_move_moves_published_files_and_a_vanished_file_fails_alone() {
    let dir = TestDir::new();
    for index in 0..3 {
        dir.write(
            &format!("in/batch-{index}.mp4"),
            test_bytes(index, 2_000_000),
        );
    }
    // One second per fragment, and the chunking stage at most one chunk ahead: batch-1 is
    // queued but not yet opened when it is deleted.
    let config = dir.pipeline_file(&pipeline(
        json!({"follow": false, "settle": "0s", "on_done": "move", "done_dir": "done"}),
        json!({"type": "null", "bytes_per_second": "2MB"}),
        json!({"chunk_size": "256KiB", "max_in_flight": "256KiB"}),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    // batch-0 takes a second; batch-1 is opened only once batch-0 has been read.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        running.published_so_far().is_empty(),
        "too slow to test: batch-0 is already done"
    );
    std::fs::remove_file(dir.join("in/batch-1.mp4")).unwrap();
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(3), "a fragment failed: {}", run.stderr());
    assert_eq!(run.published(), ["batch-0.mp4", "batch-2.mp4"]);
    assert!(dir.join("done/batch-0.mp4").exists() && dir.join("done/batch-2.mp4").exists());
    assert!(!dir.join("in/batch-0.mp4").exists());
    let failures = run.events("fragment_failed");
    assert_eq!(failures.len(), 1, "{}", run.stderr());
    assert_eq!(failures[0]["fragment"], "batch-1.mp4");
    assert_eq!(failures[0]["sequence"], 2);
}
