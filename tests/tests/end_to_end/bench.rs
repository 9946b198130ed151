//! `streampub bench` and the summary `streampub run` prints for null-sink pipelines.

use std::time::Duration;

use serde_json::Value;
use streampub_tests::{run_pipeline_file, run_to_end, streampub_binary, test_bytes, TestDir};

fn bench_json(args: &[&str]) -> Value {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let run = run_to_end(&streampub_binary(), &all, Duration::from_secs(120));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|error| panic!("{error}: {}", run.stdout))
}

fn assert_sane(summary: &Value, bytes: u64, fragments: u64) {
    let keys: Vec<&str> = summary
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "bytes",
            "fragments",
            "seconds",
            "throughput_mib_s",
            "latency_ms",
            "peak_rss_kib",
            "cpu_seconds"
        ]
    );
    assert_eq!(summary["bytes"], bytes);
    assert_eq!(summary["fragments"], fragments);
    let seconds = summary["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0);
    let throughput = summary["throughput_mib_s"].as_f64().unwrap();
    let expected = bytes as f64 / 1048576.0 / seconds;
    assert!(
        (throughput - expected).abs() <= expected * 1e-6,
        "{summary}"
    );
    let latency = &summary["latency_ms"];
    let (p50, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= max && max <= seconds * 1000.0,
        "{summary}"
    );
    assert!(
        summary["peak_rss_kib"].as_u64().unwrap() > 1000,
        "{summary}"
    );
    assert!(summary["cpu_seconds"].as_f64().unwrap() > 0.0, "{summary}");
}

#[test]
fn bench_reports_every_field_for_synthetic_fragments() {
    let summary = bench_json(&[
        "--fragments",
        "4",
        "--fragment-size",
        "1MB",
        "--chunk-size",
        "64KiB",
    ]);
    assert_sane(&summary, 4_000_000, 4);
}

/// A fan-out to three null sinks: each fragment counted once (acknowledged when all three
/// took it), every destination publishing all of them.
#[test]
fn bench_measures_a_fan_out() {
    let summary = bench_json(&[
        "--fragments",
        "3",
        "--fragment-size",
        "1MB",
        "--destinations",
        "3",
    ]);
    assert_sane(&summary, 3_000_000, 3);
}

#[test]
fn bench_pipes_into_a_process_and_reads_a_given_directory() {
    let dir = TestDir::new();
    for index in 0..3 {
        dir.write(&format!("in/batch-{index}.bin"), test_bytes(index, 500_000));
    }
    let summary = bench_json(&[
        "--dir",
        dir.join("in").to_str().unwrap(),
        "--sink",
        &format!("process:cat > {}", dir.join("out.bin").display()),
    ]);
    assert_sane(&summary, 1_500_000, 3);
    let expected: Vec<u8> = (0..3)
        .flat_map(|index| test_bytes(index, 500_000))
        .collect();
    assert!(std::fs::read(dir.join("out.bin")).unwrap() == expected);
}

#[test]
fn bench_reads_a_relative_directory_from_the_working_directory() {
    let dir = TestDir::new();
    for index in 0..2 {
        dir.write(
            &format!("frags/batch-{index}.bin"),
            test_bytes(index, 100_000),
        );
    }
    let output = std::process::Command::new(streampub_binary())
        .args(["bench", "--json", "--dir", "frags"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_sane(&summary, 200_000, 2);
}

#[test]
fn bench_rejects_an_unknown_sink() {
    let run = run_to_end(
        &streampub_binary(),
        &["bench", "--sink", "rtmp"],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), Some(2));
    assert!(
        run.stderr().contains("expected `null` or `process:CMD`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn run_prints_the_benchmark_summary_for_null_sinks() {
    let dir = TestDir::new();
    dir.write("in/a.bin", test_bytes(1, 300_000));
    let config = dir.pipeline_file(&serde_json::json!({
        "pipelines": [{
            "name": "measured",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": {"type": "null"},
        }],
    }));
    let run = run_pipeline_file(&config, Duration::from_secs(60));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    for expected in [
        "Pipeline measured (null sink):",
        "bytes       300000",
        "fragments   1",
        "throughput",
        "latency     p50",
        "peak RSS",
        "CPU time",
    ] {
        assert!(
            run.stdout.contains(expected),
            "{expected} missing from:\n{}",
            run.stdout
        );
    }
}
