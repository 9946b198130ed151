//! Several pipelines in one file run concurrently and are isolated.

use std::time::Duration;

use streampub_tests::{test_bytes, Running, TestDir};

#[test]
fn a_failed_or_slow_pipeline_does_not_stall_the_others() {
    let dir = TestDir::new();
    for pipeline in ["fast", "slow", "broken"] {
        for index in 0..3 {
            dir.write(
                &format!("{pipeline}/batch-{index}.bin"),
                test_bytes(index, 500_000),
            );
        }
    }
    let source = |path: &str| {
        format!("    source:\n      type: directory\n      path: {path}\n      follow: false\n      settle: 0s\n")
    };
    let config = dir.write(
        "pipeline.yaml",
        format!(
            "pipelines:\n  - name: slow\n{}    sink:\n      type: null\n      bytes_per_second: 300KB\n  - name: broken\n{}    sink:\n      type: file\n      path: /dev/full\n  - name: fast\n{}    sink:\n      type: file\n      mode: per_fragment\n      path: out\n",
            source("slow"),
            source("broken"),
            source("fast")
        ),
    );
    let running = Running::start(
        &streampub_tests::streampub_binary(),
        &["run", config.to_str().unwrap()],
    );
    // The fast pipeline finishes while the slow one (5 s of data) is still at it, and although
    // the broken one failed.
    running.wait_for_log(Duration::from_secs(4), |line| {
        line.contains("Pipeline fast finished: 3 fragments published")
    });
    assert!(
        !running
            .logs_so_far()
            .iter()
            .any(|line| line.contains("Pipeline slow finished")),
        "the slow pipeline cannot be done yet"
    );
    let run = running.wait(Duration::from_secs(60));
    assert_eq!(
        run.code(),
        Some(1),
        "one pipeline failed, so the run failed: {}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("Pipeline broken failed"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains("Pipeline slow finished: 3 fragments published"),
        "{}",
        run.stderr()
    );
    for index in 0..3 {
        assert!(dir.join(&format!("out/batch-{index}.bin")).exists());
    }
}
