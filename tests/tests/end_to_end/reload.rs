//! Reloading the pipeline file of a running instance (SIGHUP, `run --watch`): unchanged
//! pipelines keep their ffmpeg and their RTMP session, added ones start, changed ones restart,
//! and a broken file changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::media::small_fragments;
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{streampub_binary, Running, Signal, TestDir};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A pipeline publishing the directory `in-{name}` to `{server}/{name}`, following it.
fn rtmp_pipeline(name: &str, server: &RtmpServer, extra: Value) -> Value {
    let sink = streampub_tests::merged(
        json!({"type": "ffmpeg-rtmp", "url": format!("{}/{name}", server.server_url()), "pacing": "off"}),
        extra,
    );
    json!({
        "name": name,
        "source": {"type": "directory", "path": format!("in-{name}"), "settle": "0s"},
        "sink": sink,
    })
}

fn pid_of(running: &Running, pipeline: &str) -> Vec<u64> {
    running
        .events_so_far("process_started")
        .iter()
        .filter(|event| event["pipeline"] == pipeline)
        .filter_map(|event| event["pid"].as_u64())
        .collect()
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn sighup_restarts_only_what_changed_and_a_broken_file_changes_nothing() {
    let media = small_fragments(1, 2, &[]);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    for name in ["keep", "change", "added"] {
        dir.copy_in(&format!("in-{name}"), &media);
    }
    let write = |pipelines: Vec<Value>| dir.pipeline_file(&json!({"pipelines": pipelines}));
    let config = write(vec![
        rtmp_pipeline("keep", &server, json!({})),
        rtmp_pipeline("change", &server, json!({})),
    ]);
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    for name in ["keep", "change"] {
        running.wait_for_event(TIMEOUT, "fragment_sent", |event| event["pipeline"] == name);
    }
    let kept_ffmpeg = pid_of(&running, "keep");
    assert_eq!(kept_ffmpeg.len(), 1);

    // Added above the others (so every line moves), one changed, one as it was.
    write(vec![
        rtmp_pipeline("added", &server, json!({})),
        rtmp_pipeline("keep", &server, json!({})),
        rtmp_pipeline("change", &server, json!({"confirm_margin": "2s"})),
    ]);
    running.signal(Signal::HUP);
    let reloaded = running.wait_for_event(TIMEOUT, "config_reloaded", |_| true);
    assert_eq!(reloaded["started"], "added", "{reloaded}");
    assert_eq!(reloaded["restarted"], "change", "{reloaded}");
    assert_eq!(reloaded["unchanged"], "keep", "{reloaded}");
    assert_eq!(reloaded["stopped"], "", "{reloaded}");
    running.wait_for_event(TIMEOUT, "fragment_sent", |event| {
        event["pipeline"] == "added"
    });
    // The restarted pipeline's new ffmpeg, however late it starts under load.
    let first_change = pid_of(&running, "change")[0];
    running.wait_for_event(TIMEOUT, "process_started", |event| {
        event["pipeline"] == "change" && event["pid"].as_u64() != Some(first_change)
    });
    assert_eq!(
        pid_of(&running, "keep"),
        kept_ffmpeg,
        "keep's ffmpeg was not restarted"
    );
    assert!(alive(kept_ffmpeg[0]));
    assert_eq!(
        pid_of(&running, "change").len(),
        2,
        "change got a new ffmpeg"
    );

    // A broken file: logged, nothing stops. (The old `change` finished at the reload.)
    let finished_before = running.events_so_far("pipeline_finished").len();
    std::fs::write(&config, "pipelines: [ {name: broken").unwrap();
    running.signal(Signal::HUP);
    let failed = running.wait_for_event(TIMEOUT, "config_reload_failed", |_| true);
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("pipeline.yaml"),
        "{failed}"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        running.events_so_far("pipeline_finished").len(),
        finished_before
    );
    assert!(alive(kept_ffmpeg[0]));

    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    for name in ["keep", "added"] {
        assert_eq!(published_in(&run, name), 1, "{name}: {}", run.stderr());
    }
    server.stop();
    // keep published through one session from start to end.
    let sessions = |name: &str| {
        server
            .recordings()
            .iter()
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{name}-"))
            })
            .count()
    };
    assert_eq!(sessions("keep"), 1);
    assert_eq!(sessions("added"), 1);
}

fn published_in(run: &streampub_tests::Finished, pipeline: &str) -> usize {
    run.events("fragment_published")
        .iter()
        .filter(|event| event["pipeline"] == pipeline)
        .count()
}

#[test]
fn run_watch_reloads_when_the_file_changes() {
    let dir = TestDir::new();
    dir.write("in-a/batch-0.bin", b"a");
    dir.write("in-b/batch-0.bin", b"b");
    let pipeline = |name: &str| {
        json!({
            "name": name,
            "source": {"type": "directory", "path": format!("in-{name}"), "settle": "0s"},
            "sink": {"type": "null"},
        })
    };
    let config = dir.pipeline_file(&json!({"pipelines": [pipeline("a")]}));
    let running = Running::start(
        &streampub_binary(),
        &["run", "--watch", config.to_str().unwrap()],
    );
    running.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["pipeline"] == "a"
    });
    dir.pipeline_file(&json!({"pipelines": [pipeline("a"), pipeline("b")]}));
    let reloaded = running.wait_for_event(TIMEOUT, "config_reloaded", |_| true);
    assert_eq!(reloaded["started"], "b");
    assert_eq!(reloaded["unchanged"], "a");
    running.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["pipeline"] == "b"
    });
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
}

#[test]
fn a_restarted_upload_pipeline_takes_uploads_again() {
    use streampub_tests::http::HttpClient;
    use streampub_tests::rtmp::free_port;
    let dir = TestDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let write = |sink: Value| {
        dir.pipeline_file(&json!({
            "state_dir": "state",
            "pipelines": [{
                "name": "live",
                "source": {"type": "http", "listen": address, "token_env": "STREAMPUB_TOKEN"},
                "sink": sink,
            }],
        }))
    };
    let config = write(json!({"type": "null"}));
    let running = Running::start_with_env(
        &streampub_binary(),
        &["run", config.to_str().unwrap()],
        &[("STREAMPUB_TOKEN", "secret")],
    );
    running.wait_for_event(TIMEOUT, "pipeline_started", |_| true);
    let client = HttpClient::new(&address).with_token("secret");
    assert_eq!(client.upload("live", "a.bin", b"first").status, 201);
    running.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["fragment"] == "a.bin"
    });

    // The sink changes: the pipeline restarts, its spool is let go and taken again.
    write(json!({"type": "file", "path": "out", "mode": "per_fragment"}));
    running.signal(Signal::HUP);
    let reloaded = running.wait_for_event(TIMEOUT, "config_reloaded", |_| true);
    assert_eq!(reloaded["restarted"], "live", "{reloaded}");
    assert!(running.events_so_far("pipeline_not_started").is_empty());
    assert_eq!(client.upload("live", "b.bin", b"second").status, 201);
    running.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["fragment"] == "b.bin"
    });
    assert_eq!(std::fs::read(dir.join("out/b.bin")).unwrap(), b"second");
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
}
