//! Memory stays bounded whatever the fragment size.

use std::time::Duration;

use serde_json::json;
use streampub_tests::{run_pipeline_file, TestDir};

#[test]
fn a_1_gib_fragment_through_the_null_sink_keeps_peak_rss_under_32_mib() {
    let dir = TestDir::new();
    dir.mkdir("in");
    // Sparse: reads return zeros at memory speed without using the disk.
    let file = std::fs::File::create(dir.join("in/huge.bin")).unwrap();
    file.set_len(1 << 30).unwrap();
    drop(file);
    let config = dir.pipeline_file(&json!({
        "pipelines": [{
            "name": "huge",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": {"type": "null"},
        }],
    }));
    let run = run_pipeline_file(&config, Duration::from_secs(300));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["huge.bin"]);
    assert_eq!(run.events("fragment_published")[0]["bytes"], 1u64 << 30);
    assert!(run.peak_rss_kib > 0, "VmHWM was never sampled");
    assert!(
        run.peak_rss_kib < 32 * 1024,
        "peak RSS {} KiB is not under 32 MiB",
        run.peak_rss_kib
    );
}
