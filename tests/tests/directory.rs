//! The directory source end to end: order, completeness, restarts.

use std::io::Write;
use std::time::{Duration, Instant};

use streampub_tests::{run_pipeline_file, streampub_binary, test_bytes, Running, Signal, TestDir};

const TIMEOUT: Duration = Duration::from_secs(60);

fn pipeline(source_options: &str, sink: &str) -> String {
    format!(
        "state_dir: state\npipelines:\n  - name: channel-1\n    source:\n      type: directory\n      path: in\n{source_options}    sink:\n{sink}"
    )
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
    let config = dir.write(
        "pipeline.yaml",
        pipeline(
            "      follow: false\n      settle: 0s\n",
            "      type: null\n",
        ),
    );
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
    assert!(
        run.stderr().contains("Published fragment 5 ("),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("5 total)"), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("Pipeline channel-1 finished: 5 fragments published"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_file_appended_slowly_is_published_once_and_complete() {
    let dir = TestDir::new();
    dir.mkdir("in");
    let config = dir.write(
        "pipeline.yaml",
        pipeline(
            "      follow: true\n      settle: 500ms\n",
            "      type: file\n      mode: per_fragment\n      path: out\n",
        ),
    );
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_log(TIMEOUT, |line| line.contains("Pipeline channel-1 started"));

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

    running.wait_for_log(TIMEOUT, |line| line.contains("Published fragment"));
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
    let config = dir.write(
        "pipeline.yaml",
        pipeline(
            "      follow: true\n      settle: 10s\n      poll_interval: 30s\n",
            "      type: null\n",
        ),
    );
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_log(TIMEOUT, |line| line.contains("Pipeline channel-1 started"));
    dir.write("in/batch-0.mp4.part", test_bytes(1, 10_000));
    let renamed_at = Instant::now();
    std::fs::rename(dir.join("in/batch-0.mp4.part"), dir.join("in/batch-0.mp4")).unwrap();
    running.wait_for_log(Duration::from_secs(5), |line| {
        line.contains("Published fragment")
    });
    assert!(renamed_at.elapsed() < Duration::from_secs(3));
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["batch-0.mp4"]);
}

#[test]
fn an_interrupted_run_resumes_without_duplicates_or_gaps() {
    let dir = TestDir::new();
    let names: Vec<String> = (0..5).map(|index| format!("batch-{index}.mp4")).collect();
    for (index, name) in names.iter().enumerate() {
        dir.write(&format!("in/{name}"), test_bytes(index as u64, 1_000_000));
    }
    // About one second per fragment: a slow consumer.
    let config = dir.write(
        "pipeline.yaml",
        pipeline(
            "      follow: false\n      settle: 0s\n",
            "      type: null\n      bytes_per_second: 1MB\n",
        ),
    );

    let first = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    first.wait_for_log(TIMEOUT, |line| line.contains("2 total)"));
    first.signal(Signal::INT);
    let first = first.wait(TIMEOUT);
    assert_eq!(first.code(), Some(0), "graceful stop: {}", first.stderr());
    let first_published = first.published();
    assert!(
        (2..=3).contains(&first_published.len()),
        "the fragment in flight may finish, nothing more: {first_published:?}"
    );

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
    let config = dir.write(
        "pipeline.yaml",
        pipeline(
            "      follow: false\n      settle: 0s\n      on_done: move\n      done_dir: done\n",
            "      type: null\n      bytes_per_second: 2MB\n    chunk_size: 256KiB\n    max_in_flight: 256KiB\n",
        ),
    );
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    // batch-0 takes a second; batch-1 is opened only once batch-0 has been read.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        running.published_so_far().is_empty(),
        "too slow to test: batch-0 is already done"
    );
    std::fs::remove_file(dir.join("in/batch-1.mp4")).unwrap();
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["batch-0.mp4", "batch-2.mp4"]);
    assert!(dir.join("done/batch-0.mp4").exists() && dir.join("done/batch-2.mp4").exists());
    assert!(!dir.join("in/batch-0.mp4").exists());
    let failure = run
        .logs
        .iter()
        .find(|line| line.contains("failed and was skipped"))
        .unwrap_or_else(|| panic!("the failure is logged: {}", run.stderr()));
    assert!(
        failure.contains("batch-1.mp4") && failure.contains("No such file"),
        "{failure}"
    );
}
