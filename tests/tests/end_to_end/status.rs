//! `streampub status` against a running instance.

use std::time::Duration;

use serde_json::{json, Value};
use streampub_tests::rtmp::free_port;
use streampub_tests::{run_to_end, streampub_binary, test_bytes, Running, Signal, TestDir};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn status_shows_each_pipeline_of_a_running_instance() {
    let dir = TestDir::new();
    dir.write("in/batch-0.mp4", test_bytes(0, 100_000));
    let address = format!("127.0.0.1:{}", free_port());
    let config = dir.pipeline_file(&json!({
        "metrics": {"listen": address},
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "settle": "0s"},
            "sink": {"type": "null"},
        }],
    }));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "fragment_published", |_| true);
    let url = format!("http://{address}");

    let table = run_to_end(&streampub_binary(), &["status", "--url", &url], TIMEOUT);
    assert_eq!(table.code(), Some(0), "{}", table.stderr());
    let row = table
        .stdout
        .lines()
        .find(|line| line.starts_with("channel-1"))
        .unwrap_or_else(|| panic!("no row for channel-1: {}", table.stdout));
    for cell in ["running", "1", "batch-0.mp4"] {
        assert!(row.contains(cell), "`{cell}` missing from {row}");
    }

    let as_json = run_to_end(
        &streampub_binary(),
        &["status", "--url", &url, "--json"],
        TIMEOUT,
    );
    let status: Value = serde_json::from_str(&as_json.stdout).unwrap();
    let pipeline = &status["pipelines"]["channel-1"];
    assert_eq!(status["status"], "ok");
    assert_eq!(pipeline["state"], "running");
    assert_eq!(pipeline["fragments_published"], 1);
    assert_eq!(pipeline["last_fragment"], "batch-0.mp4");
    assert!(pipeline["last_publish_unix_seconds"].as_f64().unwrap() > 0.0);

    running.signal(Signal::TERM);
    let stopped = running.wait(TIMEOUT);
    assert_eq!(stopped.code(), Some(0), "{}", stopped.stderr());
    let gone = run_to_end(&streampub_binary(), &["status", "--url", &url], TIMEOUT);
    assert_eq!(gone.code(), Some(1));
    assert!(gone.stderr().contains("--url"), "{}", gone.stderr());
}
