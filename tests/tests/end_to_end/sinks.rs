//! The built-in sinks end to end.

use std::time::Duration;

use serde_json::{json, Value};
use streampub_tests::{run_pipeline_file, test_bytes, TestDir};

/// One pipeline named `name` reading the directory `in` once, into `sink`.
fn pipeline(name: &str, sink: Value) -> Value {
    json!({
        "pipelines": [{
            "name": name,
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": sink,
        }],
    })
}

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn per_fragment_output_is_byte_identical_to_the_input() {
    let dir = TestDir::new();
    // Sizes around the chunk size (an empty file is not a complete fragment: see the directory
    // source's tests).
    let sizes = [1, 262_143, 262_144, 262_145, 3_000_001];
    for (index, size) in sizes.iter().enumerate() {
        dir.write(
            &format!("in/f-{index}.bin"),
            test_bytes(index as u64, *size),
        );
    }
    let config = dir.pipeline_file(&pipeline(
        "copy",
        json!({"type": "file", "mode": "per_fragment", "path": "out", "fsync": true}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    for index in 0..sizes.len() {
        let name = format!("f-{index}.bin");
        let input = std::fs::read(dir.join("in").join(&name)).unwrap();
        let output = std::fs::read(dir.join("out").join(&name)).unwrap();
        assert!(input == output, "{name} differs");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn append_mode_continues_the_archive_across_runs() {
    let dir = TestDir::new();
    dir.write("in/a.bin", b"first-");
    let mut config = pipeline(
        "archive",
        json!({"type": "file", "path": "out/archive.bin"}),
    );
    config["pipelines"][0]["source"]["on_done"] = json!("delete");
    let config = dir.pipeline_file(&config);
    let first = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(first.code(), Some(0), "{}", first.stderr());
    dir.write("in/b.bin", b"second");
    let second = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(second.code(), Some(0), "{}", second.stderr());
    assert_eq!(
        std::fs::read(dir.join("out/archive.bin")).unwrap(),
        b"first-second"
    );
}

#[test]
fn a_full_disk_fails_the_run_and_keeps_the_fragment() {
    let dir = TestDir::new();
    dir.write("in/a.bin", b"payload");
    let with_archive = |file: &str, sink_path: &str| {
        let mut config = pipeline("archive", json!({"type": "file", "path": sink_path}));
        config["state_dir"] = json!("state");
        dir.write(file, config.to_string())
    };

    // A directory where the archive file should be is caught before anything starts.
    dir.mkdir("taken");
    let taken = with_archive("taken.yaml", "taken");
    let run = run_pipeline_file(&taken, TIMEOUT);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("is a directory"), "{}", run.stderr());

    // /dev/full fails every write with ENOSPC, like a full disk.
    let full = with_archive("full.yaml", "/dev/full");
    let run = run_pipeline_file(&full, TIMEOUT);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let failed = run.pipeline_event("pipeline_failed", "archive");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("/dev/full"), "names the file: {error}");
    assert!(run.published().is_empty());

    // The fragment was not acknowledged: the next run, with room, publishes it.
    let good = with_archive("good.yaml", "out/archive.bin");
    let again = run_pipeline_file(&good, TIMEOUT);
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    assert_eq!(again.published(), ["a.bin"]);
    assert_eq!(
        std::fs::read(dir.join("out/archive.bin")).unwrap(),
        b"payload"
    );
}

#[test]
fn a_process_that_stops_reading_is_restarted_after_stall_timeout_then_fails() {
    for splice in [true, false] {
        let dir = TestDir::new();
        // More than the 1 MiB pipe holds, for a process that never reads.
        dir.write("in/batch-0.bin", test_bytes(0, 3_000_000));
        let config = dir.pipeline_file(&pipeline(
            "stalled",
            json!({
                "type": "process",
                "command": ["sleep", "30"],
                "splice": splice,
                "stall_timeout": "1s",
                "reconnect_delay": "100ms",
                "max_reconnect_delay": "100ms",
                "max_reconnect_attempts": 1,
            }),
        ));
        let started = std::time::Instant::now();
        let run = run_pipeline_file(&config, TIMEOUT);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "splice {splice}: took {:?}",
            started.elapsed()
        );
        assert_eq!(run.code(), Some(1), "splice {splice}: {}", run.stderr());
        let reconnects = run.events("sink_reconnecting");
        assert_eq!(reconnects.len(), 1, "splice {splice}: {}", run.stderr());
        let error = reconnects[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("stall_timeout"), "splice {splice}: {error}");
        assert!(run.published().is_empty());
    }
}
