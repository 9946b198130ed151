//! The `http` source against the real binary with a real HTTP client: every answer of the API,
//! durability across crashes, parallel uploads, memory, and the metrics and health endpoints.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::http::{parse_prometheus_text, HttpClient};
use streampub_tests::rtmp::free_port;
use streampub_tests::{merged, streampub_binary, test_bytes, Running, Signal, TestDir};

const TOKEN: &str = "test-token-0123456789";

/// Starts `streampub run` on `config` with the token in `STREAMPUB_TOKEN`, and waits until it
/// accepts connections on `address`.
fn start(config: &Path, address: &str) -> Running {
    let running = Running::start_with_env(
        &streampub_binary(),
        &["run", config.to_str().unwrap()],
        &[("STREAMPUB_TOKEN", TOKEN)],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "{address} never accepted connections: {:?}",
            running.logs_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running
}

/// A pipeline file with one `http` source pipeline named `live`, its extra source options,
/// its sink and its own extra options.
fn http_pipeline(
    dir: &TestDir,
    address: &str,
    source_options: Value,
    sink: Value,
    options: Value,
) -> std::path::PathBuf {
    let source = merged(
        json!({"type": "http", "listen": address, "token_env": "STREAMPUB_TOKEN"}),
        source_options,
    );
    let pipeline = merged(
        json!({"name": "live", "source": source, "sink": sink}),
        options,
    );
    dir.pipeline_file(&json!({
        "state_dir": "state",
        "shutdown_timeout": "1s",
        "pipelines": [pipeline],
    }))
}

fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spool_leftovers(spool: &Path) -> Vec<String> {
    std::fs::read_dir(spool)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".upload-"))
        .collect()
}

#[test]
fn every_request_gets_the_documented_answer() {
    let dir = TestDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let config = http_pipeline(
        &dir,
        &address,
        json!({"max_fragment_size": "1MiB"}),
        json!({"type": "file", "path": "archive.bin"}),
        json!({}),
    );
    let running = start(&config, &address);
    let client = HttpClient::new(&address).with_token(TOKEN);
    let body = test_bytes(1, 300_000);

    let created = client.upload("live", "batch-0.mp4", &body);
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.json(),
        serde_json::json!({"pipeline": "live", "name": "batch-0.mp4", "sequence": 1, "bytes": 300000})
    );
    let same = client.upload("live", "batch-0.mp4", &body);
    assert_eq!(same.status, 200, "{}", same.body);
    assert_eq!(same.json()["sequence"], 1);
    let different = client.upload("live", "batch-0.mp4", &test_bytes(2, 300_000));
    assert_eq!(different.status, 409, "{}", different.body);
    assert!(different.json()["error"]
        .as_str()
        .unwrap()
        .contains("already uploaded"));

    wait_until(
        Duration::from_secs(10),
        "batch-0.mp4 to be published",
        || client.fragment("live", "batch-0.mp4").json()["state"] == "published",
    );
    let state = client.fragment("live", "batch-0.mp4").json();
    assert_eq!(
        (state["sequence"].as_u64(), state["bytes"].as_u64()),
        (Some(1), Some(300_000))
    );
    assert_eq!(client.fragment("live", "nothing.mp4").status, 404);

    // Tokens.
    let anonymous = HttpClient::new(&address);
    let refused = anonymous.upload("live", "batch-1.mp4", b"x");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused
        .header("www-authenticate")
        .is_some_and(|value| value.starts_with("Bearer")));
    assert_eq!(anonymous.fragment("live", "batch-0.mp4").status, 401);
    let wrong = HttpClient::new(&address).with_token("test-token-0123456788");
    assert_eq!(wrong.upload("live", "batch-1.mp4", b"x").status, 401);

    // Names.
    let long_name = "n".repeat(256);
    for bad in [
        "a%2Fb.mp4",
        "a%5Cb.mp4",
        "..",
        "a..b",
        ".hidden",
        "a%01b",
        "a%7Fb",
        long_name.as_str(),
    ] {
        let answer = client.upload("live", bad, b"x");
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("fragment name"),
            "{}",
            answer.body
        );
    }
    assert_eq!(client.upload("live", &"n".repeat(255), b"x").status, 201);

    // Pipelines, methods, paths.
    let unknown = client.upload("elsewhere", "a.mp4", b"x");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(unknown.body.contains("elsewhere"));
    let deleted = client.delete("/v1/pipelines/live/fragments/batch-0.mp4");
    assert_eq!(deleted.status, 405, "{}", deleted.body);
    assert_eq!(deleted.header("allow"), Some("GET, PUT"));
    assert_eq!(client.delete("/metrics").status, 405);
    assert_eq!(client.get("/nothing").status, 404);

    // Too large: from Content-Length, and while streaming a body of unknown length.
    let spool = dir.join("state/live/spool");
    let declared = client.upload("live", "big.mp4", &vec![0; 1024 * 1024 + 1]);
    assert_eq!(declared.status, 413, "{}", declared.body);
    let streamed =
        client.upload_stream("live", "big.mp4", std::io::repeat(7).take(3 * 1024 * 1024));
    assert_eq!(streamed.status, 413, "{}", streamed.body);
    assert!(spool_leftovers(&spool).is_empty());
    assert_eq!(client.fragment("live", "big.mp4").status, 404);
    // An empty body: nothing to publish, refused (it would fail on every start).
    let empty = client.upload("live", "empty.mp4", b"");
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(empty.body.contains("empty"), "{}", empty.body);
    assert_eq!(client.fragment("live", "empty.mp4").status, 404);
    // Exactly the limit is fine.
    assert_eq!(
        client
            .upload_stream("live", "limit.mp4", std::io::repeat(1).take(1024 * 1024))
            .status,
        201
    );

    // Health.
    let health = client.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["pipelines"]["live"]["state"], "running");

    // Accepted is not yet published: a stop before its sending began would leave it for the
    // next start.
    running.wait_for_event(Duration::from_secs(30), "fragment_published", |event| {
        event["fragment"] == "limit.mp4"
    });
    running.signal(Signal::TERM);
    let finished = running.wait(Duration::from_secs(30));
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr());
    let archive = std::fs::read(dir.join("archive.bin")).unwrap();
    assert_eq!(
        archive.len(),
        300_000 + 1 + 1024 * 1024,
        "each fragment is published once"
    );
    assert_eq!(&archive[..300_000], &body[..]);
    assert!(!finished.stderr().contains(TOKEN), "the token was logged");
}

#[test]
fn interrupted_and_stalled_uploads_leave_nothing_while_others_are_served() {
    let dir = TestDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let config = http_pipeline(
        &dir,
        &address,
        json!({"upload_timeout": "1s"}),
        json!({"type": "null"}),
        json!({}),
    );
    let running = start(&config, &address);
    let client = HttpClient::new(&address).with_token(TOKEN);
    let head = |name: &str| {
        format!(
            "PUT /v1/pipelines/live/fragments/{name} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000\r\n\r\n"
        )
    };

    // A client that dies half way through its body.
    let mut killed = TcpStream::connect(&address).unwrap();
    killed.write_all(head("killed.mp4").as_bytes()).unwrap();
    killed.write_all(&test_bytes(3, 500_000)).unwrap();
    drop(killed);

    // A client that stops sending; meanwhile another upload goes through.
    let mut stalled = TcpStream::connect(&address).unwrap();
    stalled.write_all(head("stalled.mp4").as_bytes()).unwrap();
    stalled.write_all(&test_bytes(4, 500_000)).unwrap();
    let served = client.upload("live", "meanwhile.mp4", &test_bytes(5, 100_000));
    assert_eq!(served.status, 201, "{}", served.body);
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    let _ = stalled.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "stalled upload got: {answer}"
    );

    running.wait_for_event(Duration::from_secs(10), "fragment_published", |_| true);
    for name in ["killed.mp4", "stalled.mp4"] {
        wait_until(
            Duration::from_secs(10),
            "the partial upload to be refused",
            || {
                running
                    .events_so_far("upload_refused")
                    .iter()
                    .any(|event| event["fragment"] == name)
            },
        );
        assert_eq!(client.fragment("live", name).status, 404, "{name} was kept");
    }
    assert!(spool_leftovers(&dir.join("state/live/spool")).is_empty());
    running.signal(Signal::TERM);
    let finished = running.wait(Duration::from_secs(30));
    assert_eq!(finished.published(), ["meanwhile.mp4"]);
}

#[test]
fn parallel_uploads_are_published_once_in_the_order_they_were_acknowledged() {
    let dir = TestDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let config = http_pipeline(
        &dir,
        &address,
        json!({}),
        json!({"type": "file", "path": "archive.bin"}),
        json!({}),
    );
    let running = start(&config, &address);
    let uploads: Vec<_> = (0..20u64)
        .map(|index| {
            let address = address.clone();
            std::thread::spawn(move || {
                let body = test_bytes(100 + index, 200_000 + index as usize * 1000);
                let answer = HttpClient::new(&address).with_token(TOKEN).upload(
                    "live",
                    &format!("part-{index}.bin"),
                    &body,
                );
                assert_eq!(answer.status, 201, "{}", answer.body);
                (
                    answer.json()["sequence"].as_u64().unwrap(),
                    format!("part-{index}.bin"),
                    body,
                )
            })
        })
        .collect();
    let mut accepted: Vec<(u64, String, Vec<u8>)> = uploads
        .into_iter()
        .map(|upload| upload.join().unwrap())
        .collect();
    accepted.sort_by_key(|(sequence, ..)| *sequence);
    let sequences: Vec<u64> = accepted.iter().map(|(sequence, ..)| *sequence).collect();
    assert_eq!(sequences, (1..=20).collect::<Vec<_>>());

    wait_until(
        Duration::from_secs(30),
        "20 fragments to be published",
        || running.published_so_far().len() >= 20,
    );
    running.signal(Signal::TERM);
    let finished = running.wait(Duration::from_secs(30));
    let names: Vec<String> = accepted.iter().map(|(_, name, _)| name.clone()).collect();
    assert_eq!(
        finished.published(),
        names,
        "published once each, in acknowledged order"
    );
    let expected: Vec<u8> = accepted
        .iter()
        .flat_map(|(.., body)| body.clone())
        .collect();
    assert!(
        std::fs::read(dir.join("archive.bin")).unwrap() == expected,
        "archive differs"
    );
}

#[test]
fn a_full_backlog_answers_503_and_spooled_fragments_survive_a_crash() {
    let dir = TestDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    // A sink so slow that nothing finishes: fragment_buffer_size 1 + spool_limit 2 = 3 wait.
    let slow = http_pipeline(
        &dir,
        &address,
        json!({"spool_limit": 2}),
        json!({"type": "null", "bytes_per_second": "1KB"}),
        json!({"fragment_buffer_size": 1}),
    );
    let running = start(&slow, &address);
    let client = HttpClient::new(&address).with_token(TOKEN);
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|index| test_bytes(200 + index, 50_000))
        .collect();
    for (index, body) in bodies.iter().enumerate() {
        let answer = client.upload("live", &format!("batch-{index}.mp4"), body);
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    let full = client.upload("live", "batch-3.mp4", b"more");
    assert_eq!(full.status, 503, "{}", full.body);
    assert_eq!(full.header("retry-after"), Some("5"));
    running.signal(Signal::KILL);
    let crashed = running.wait(Duration::from_secs(10));
    assert!(crashed.published().is_empty());

    let fast = http_pipeline(
        &dir,
        &address,
        json!({}),
        json!({"type": "file", "path": "archive.bin"}),
        json!({}),
    );
    let running = start(&fast, &address);
    wait_until(
        Duration::from_secs(20),
        "the spooled fragments to be published",
        || running.published_so_far().len() >= 3,
    );
    let again = client.upload("live", "batch-0.mp4", &bodies[0]);
    assert_eq!(
        again.status, 200,
        "an identical re-upload after the restart: {}",
        again.body
    );
    assert_eq!(
        client.fragment("live", "batch-2.mp4").json()["state"],
        "published"
    );
    running.signal(Signal::TERM);
    let finished = running.wait(Duration::from_secs(30));
    assert_eq!(
        finished.published(),
        ["batch-0.mp4", "batch-1.mp4", "batch-2.mp4"]
    );
    assert_eq!(
        finished.pipeline_event("spool_recovered", "live")["fragments"],
        3
    );
    assert!(std::fs::read(dir.join("archive.bin")).unwrap() == bodies.concat());
}

/// A tmpfs of `size` mounted at `path`, unmounted when dropped.
struct SmallFilesystem(std::path::PathBuf);

impl SmallFilesystem {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("cannot run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        Self(path.to_path_buf())
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_spool_disk_answers_507_and_keeps_nothing_half_written() {
    let dir = TestDir::new();
    let _disk = SmallFilesystem::mount(&dir.join("spool"), "1m");
    let address = format!("127.0.0.1:{}", free_port());
    let config = http_pipeline(
        &dir,
        &address,
        json!({"spool_dir": "spool"}),
        json!({"type": "null"}),
        json!({}),
    );
    let running = start(&config, &address);
    let client = HttpClient::new(&address).with_token(TOKEN);
    let answer = client.upload("live", "huge.mp4", &test_bytes(6, 2_000_000));
    assert_eq!(answer.status, 507, "{}", answer.body);
    assert!(answer.json()["error"].as_str().unwrap().contains("full"));
    assert!(spool_leftovers(&dir.join("spool")).is_empty());
    assert_eq!(client.fragment("live", "huge.mp4").status, 404);
    let small = client.upload("live", "small.mp4", &test_bytes(7, 100_000));
    assert_eq!(
        small.status, 201,
        "the spool works again once there is room: {}",
        small.body
    );
    running.wait_for_event(Duration::from_secs(10), "fragment_published", |_| true);
    running.signal(Signal::TERM);
    assert_eq!(
        running.wait(Duration::from_secs(30)).published(),
        ["small.mp4"]
    );
}

#[test]
fn a_256_mib_upload_to_the_null_sink_keeps_peak_rss_under_32_mib() {
    let dir = TestDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let config = http_pipeline(
        &dir,
        &address,
        json!({"max_fragment_size": "300MiB"}),
        json!({"type": "null"}),
        json!({}),
    );
    let running = start(&config, &address);
    let client = HttpClient::new(&address).with_token(TOKEN);
    let answer = client.upload_stream("live", "huge.bin", std::io::repeat(42).take(256 << 20));
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.json()["bytes"], 256u64 << 20);
    running.wait_for_event(Duration::from_secs(60), "fragment_published", |_| true);
    running.signal(Signal::TERM);
    let finished = running.wait(Duration::from_secs(30));
    assert!(finished.peak_rss_kib > 0, "VmHWM was never sampled");
    assert!(
        finished.peak_rss_kib < 32 * 1024,
        "peak RSS {} KiB is not under 32 MiB",
        finished.peak_rss_kib
    );
    assert!(
        !dir.join("state/live/spool/000000000001.fragment").exists(),
        "published fragments leave the spool"
    );
}

#[test]
fn metrics_and_health_cover_every_pipeline_whatever_its_source() {
    let dir = TestDir::new();
    for index in 0..3 {
        dir.write(
            &format!("in/batch-{index}.bin"),
            test_bytes(300 + index, 100_000 + index as usize),
        );
        dir.write(
            &format!("broken/batch-{index}.bin"),
            test_bytes(400 + index, 1000),
        );
    }
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let config = dir.pipeline_file(&json!({
        "metrics": {"listen": metrics_address},
        "pipelines": [
            {
                "name": "files",
                "source": {"type": "directory", "path": "in"},
                "sink": {"type": "null"},
            },
            {
                "name": "broken",
                "source": {"type": "directory", "path": "broken"},
                "sink": {"type": "file", "path": "/dev/full"},
            },
        ],
    }));
    let running = start(&config, &metrics_address);
    let client = HttpClient::new(&metrics_address);
    wait_until(
        Duration::from_secs(20),
        "3 fragments published and the broken pipeline failed",
        || running.published_so_far().len() >= 3 && client.get("/healthz").status == 503,
    );
    let health = client.get("/healthz").json();
    assert_eq!(health["status"], "failing");
    assert_eq!(health["pipelines"]["files"]["state"], "running");
    assert_eq!(health["pipelines"]["broken"]["state"], "failed");
    assert!(
        health["pipelines"]["broken"]["error"]
            .as_str()
            .unwrap()
            .contains("/dev/full"),
        "{health}"
    );

    let metrics = client.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let samples = parse_prometheus_text(&metrics.body);
    let value = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", metrics.body))
    };
    assert_eq!(
        value(r#"streampub_fragments_published_total{pipeline="files",sink="null"}"#),
        3.0
    );
    assert_eq!(
        value(r#"streampub_bytes_published_total{pipeline="files",sink="null"}"#),
        300_003.0
    );
    assert_eq!(
        value(r#"streampub_publish_latency_seconds_count{pipeline="files",sink="null"}"#),
        3.0
    );
    assert_eq!(
        value(r#"streampub_fragments_failed_total{pipeline="files",sink="null"}"#),
        0.0
    );
    assert_eq!(
        value(r#"streampub_fragments_published_total{pipeline="broken",sink="file"}"#),
        0.0
    );
    assert_eq!(value(r#"streampub_pipeline_up{pipeline="files"}"#), 1.0);
    assert_eq!(value(r#"streampub_pipeline_up{pipeline="broken"}"#), 0.0);
    assert_eq!(value(r#"streampub_bytes_in_flight{pipeline="files"}"#), 0.0);
    assert_eq!(
        value(r#"streampub_fragments_queued{pipeline="files"}"#),
        0.0
    );
    assert_eq!(
        value(r#"streampub_sink_reconnects_total{pipeline="files",sink="null"}"#),
        0.0
    );
    let last_publish =
        value(r#"streampub_last_publish_timestamp_seconds{pipeline="files",sink="null"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&last_publish),
        "{last_publish} vs {now}"
    );
    running.signal(Signal::TERM);
    running.wait(Duration::from_secs(30));
}

#[test]
fn uploads_and_metrics_share_one_listener_across_pipelines() {
    let dir = TestDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let pipeline = |name: &str| {
        json!({
            "name": name,
            "source": {"type": "http", "listen": address, "token_env": "STREAMPUB_TOKEN"},
            "sink": {"type": "null"},
        })
    };
    let config = dir.pipeline_file(&json!({
        "state_dir": "state",
        "pipelines": [pipeline("first"), pipeline("second")],
    }));
    let running = start(&config, &address);
    let client = HttpClient::new(&address).with_token(TOKEN);
    assert_eq!(client.upload("first", "a.mp4", b"first").status, 201);
    assert_eq!(client.upload("second", "a.mp4", b"second!").status, 201);
    wait_until(Duration::from_secs(10), "both published", || {
        running.published_so_far().len() >= 2
    });
    let samples = parse_prometheus_text(&client.get("/metrics").body);
    assert_eq!(
        samples[r#"streampub_bytes_published_total{pipeline="first",sink="null"}"#],
        5.0
    );
    assert_eq!(
        samples[r#"streampub_bytes_published_total{pipeline="second",sink="null"}"#],
        7.0
    );
    running.signal(Signal::TERM);
    running.wait(Duration::from_secs(30));
}

#[test]
fn an_unauthenticated_listener_beyond_loopback_is_a_config_error() {
    let dir = TestDir::new();
    let config = dir.write(
        "pipeline.yaml",
        "state_dir: state\npipelines:\n  - name: live\n    source:\n      type: http\n      listen: 0.0.0.0:8080\n    sink:\n      type: null\n",
    );
    let run = streampub_tests::run_to_end(
        &streampub_binary(),
        &["validate", config.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("no token is configured; set `token_env`"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("pipeline.yaml:6"), "{}", run.stderr());

    let missing_token = dir.write(
        "missing.yaml",
        "pipelines:\n  - name: live\n    source:\n      type: http\n      listen: 127.0.0.1:8080\n      token_env: STREAMPUB_NO_SUCH_TOKEN\n    sink:\n      type: null\n",
    );
    let run = streampub_tests::run_to_end(
        &streampub_binary(),
        &["validate", missing_token.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr().contains("STREAMPUB_NO_SUCH_TOKEN is not set"),
        "{}",
        run.stderr()
    );
}
