//! Several pipelines in one file run concurrently and are isolated.

use std::time::Duration;

use serde_json::json;
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
    let source =
        |path: &str| json!({"type": "directory", "path": path, "follow": false, "settle": "0s"});
    let config = dir.pipeline_file(&json!({
        "pipelines": [
            {
                "name": "slow",
                "source": source("slow"),
                "sink": {"type": "null", "bytes_per_second": "300KB"},
            },
            {
                "name": "broken",
                "source": source("broken"),
                "sink": {"type": "file", "path": "/dev/full"},
            },
            {
                "name": "fast",
                "source": source("fast"),
                "sink": {"type": "file", "mode": "per_fragment", "path": "out"},
            },
        ],
    }));
    let running = Running::start(
        &streampub_tests::streampub_binary(),
        &["run", config.to_str().unwrap()],
    );
    // The fast pipeline finishes while the slow one (5 s of data) is still at it, and although
    // the broken one failed.
    let fast = running.wait_for_event(Duration::from_secs(4), "pipeline_finished", |event| {
        event["pipeline"] == "fast"
    });
    assert_eq!(fast["fragments_published"], 3);
    assert!(
        !running
            .events_so_far("pipeline_finished")
            .iter()
            .any(|event| event["pipeline"] == "slow"),
        "the slow pipeline cannot be done yet"
    );
    let run = running.wait(Duration::from_secs(60));
    assert_eq!(
        run.code(),
        Some(1),
        "one pipeline failed, so the run failed: {}",
        run.stderr()
    );
    run.pipeline_event("pipeline_failed", "broken");
    assert_eq!(
        run.pipeline_event("pipeline_finished", "slow")["fragments_published"],
        3
    );
    for index in 0..3 {
        assert!(dir.join(&format!("out/batch-{index}.bin")).exists());
    }
}
