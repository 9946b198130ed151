//! The command line: the quick start, config errors and the plugin list.

use std::time::Duration;

use streampub_tests::media::probe_packets;
use streampub_tests::{run_pipeline_file, run_to_end, streampub_binary, workspace_root, TestDir};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn quickstart_publishes_the_sample_fragments_into_one_continuous_archive() {
    let dir = TestDir::new();
    // Run a copy so the test does not write into the checkout.
    let examples = workspace_root().join("examples");
    std::fs::copy(
        examples.join("quickstart.yaml"),
        dir.join("quickstart.yaml"),
    )
    .unwrap();
    let fragments = dir.mkdir("fragments");
    let mut inputs = Vec::new();
    for index in 0..3 {
        let name = format!("batch-{index}.mp4");
        std::fs::copy(
            examples.join("fragments").join(&name),
            fragments.join(&name),
        )
        .unwrap();
        inputs.push(probe_packets(&fragments.join(&name)));
    }

    let config = dir.join("quickstart.yaml");
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(
        run.published(),
        ["batch-0.mp4", "batch-1.mp4", "batch-2.mp4"]
    );
    assert_eq!(
        run.pipeline_event("pipeline_finished", "quickstart")["fragments_published"],
        3
    );
    let archive = probe_packets(&dir.join("out/quickstart.mp4"));
    let expected: f64 = inputs.iter().map(|packets| packets.duration()).sum();
    assert!(
        (archive.duration() - expected).abs() < 0.1,
        "{} s of {expected} s",
        archive.duration()
    );
    assert_eq!(
        archive.video.count(),
        inputs
            .iter()
            .map(|packets| packets.video.count())
            .sum::<usize>()
    );
    assert!(archive.video.monotonic(true));

    // A second run has nothing new to publish: the state directory remembers.
    let again = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    assert!(again.published().is_empty());
    assert_eq!(
        again.pipeline_event("source_resumed", "quickstart")["already_published"],
        3
    );
}

#[test]
fn malformed_yaml_exits_2_naming_the_line() {
    let dir = TestDir::new();
    let config = dir.write(
        "bad.yaml",
        "pipelines:\n  - name: a\n    source: {type: directory, path: .\n    sink:\n      type: null\n",
    );
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let message = run.stderr();
    assert!(
        message.contains("bad.yaml:4:"),
        "the error must name line 4: {message}"
    );
}

#[test]
fn unknown_type_lists_the_available_ones() {
    let dir = TestDir::new();
    dir.mkdir("in");
    let config = dir.write(
        "pipeline.yaml",
        "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: nul\n",
    );
    for command in ["run", "validate"] {
        let run = run_to_end(
            &streampub_binary(),
            &[command, config.to_str().unwrap()],
            TIMEOUT,
        );
        assert_eq!(run.code(), Some(2), "{}", run.stderr());
        let message = run.stderr();
        assert!(message.contains("pipeline.yaml:7:"), "{message}");
        assert!(message.contains("unknown sink type `nul`"), "{message}");
        assert!(message.contains("did you mean `null`"), "{message}");
        assert!(
            message.contains("available sink types: ffmpeg-rtmp, file, null, process"),
            "{message}"
        );
    }
}

#[test]
fn config_errors_name_pipeline_component_and_field() {
    let dir = TestDir::new();
    dir.mkdir("in");
    let cases = [
        // (yaml body, expected fragments of the message)
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n      folow: true\n    sink:\n      type: null\n",
            vec![":6:", "pipeline `a`", "source `directory`", "unknown field `folow`", "did you mean `follow`"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: missing\n    sink:\n      type: null\n",
            vec![":5:", "field `path`", "is not a directory"],
        ),
        (
            "pipelines:\n  - name: a\n    chunk_size: 2MiB\n    source:\n      type: directory\n      path: in\n    sink:\n      type: null\n",
            vec!["pipeline `a`", "field `max_in_flight`", "at least chunk_size"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: file\n      path: ${STREAMPUB_TEST_UNSET_VARIABLE}\n",
            vec![":8:", "STREAMPUB_TEST_UNSET_VARIABLE", "is not set"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n      settle: soon\n    sink:\n      type: null\n",
            vec![":6:", "field `settle`", "invalid duration"],
        ),
        (
            "pipelines:\n  - name: a\n    fragment_buffer_size: 18446744073709551615\n    source:\n      type: directory\n      path: in\n    sink:\n      type: null\n",
            vec![":3:", "field `fragment_buffer_size`", "from 1 to 4096"],
        ),
        (
            "pipelines:\n  - name: a\n    max_in_flight: 8GiB\n    source:\n      type: directory\n      path: in\n    sink:\n      type: null\n",
            vec![":3:", "field `max_in_flight`", "at most 1GiB"],
        ),
        (
            "shutdown_timeout: 2d\npipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: null\n",
            vec![":1:", "field `shutdown_timeout`", "at most 1day"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: process\n      command: [cat]\n      max_reconnect_delay: 2d\n",
            vec![":9:", "field `max_reconnect_delay`", "at most 1day"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: ffmpeg-rtmp\n      url: rtmp://127.0.0.1/live/a\n      pacing: realtime\n      use_rate_limit: true\n",
            vec!["field `pacing`", "keep one"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: ffmpeg-rtmp\n      url: rtmp://127.0.0.1/live/a\n      pacing: realtime\n      ffmpeg_input: mp4\n",
            vec!["field `pacing`", "use_rate_limit"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: ffmpeg-rtmp\n      url: rtmp://127.0.0.1/live/a\n      ffmpeg_input: mp4\n      filler: generate\n",
            vec!["field `filler`", "paced output"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: ffmpeg-rtmp\n      url: rtmp://127.0.0.1/live/a\n      pacing: off\n      filler: generate\n",
            vec!["field `filler`", "paced output"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: ffmpeg-rtmp\n      url: rtmp://127.0.0.1/live/a\n      filler: /nonexistent/slate.mp4\n",
            vec!["field `filler`", "/nonexistent/slate.mp4 is not a readable file"],
        ),
        // Each names the fix, never an internal type name.
        ("", vec!["the file is empty", "pipelines:"]),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n      follow: no\n    sink:\n      type: null\n",
            vec![":6:", "field `follow`", "write true or false"],
        ),
        (
            "metrics:\n  listen: localhost:9090\npipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n      type: null\n",
            vec![":2:", "field `metrics.listen`", "e.g. 127.0.0.1:9090"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n      settle: fast\n    sink:\n      type: null\n",
            vec!["not a number followed by a unit", "500ms"],
        ),
        (
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n      pattern: 5\n    sink:\n      type: null\n",
            vec![":6:", "field `pattern`", "a glob like"],
        ),
        (
            "pipelines:\n  - name: a\n    chunk_size: -5\n    source:\n      type: directory\n      path: in\n    sink:\n      type: null\n",
            vec![":3:", "field `chunk_size`", "negative", "1MiB"],
        ),
    ];
    for (yaml, expected) in cases {
        let config = dir.write("pipeline.yaml", yaml);
        let run = run_to_end(
            &streampub_binary(),
            &["validate", config.to_str().unwrap()],
            TIMEOUT,
        );
        assert_eq!(run.code(), Some(2), "{yaml}\n{}", run.stderr());
        for internal in ["FileOptions", "untagged enum", "expected number at"] {
            assert!(!run.stderr().contains(internal), "{}", run.stderr());
        }
        for fragment in expected {
            assert!(
                run.stderr().contains(fragment),
                "expected `{fragment}` in: {}",
                run.stderr()
            );
        }
    }
}

#[test]
fn both_process_sinks_read_the_shared_options_and_refuse_unknown_ones() {
    let dir = TestDir::new();
    dir.mkdir("in");
    let validate = |sink: &str| {
        let yaml = format!(
            "pipelines:\n  - name: a\n    source:\n      type: directory\n      path: in\n    sink:\n{sink}"
        );
        let config = dir.write("pipeline.yaml", yaml);
        run_to_end(
            &streampub_binary(),
            &["validate", config.to_str().unwrap()],
            TIMEOUT,
        )
    };
    for sink in [
        "      type: process\n      command: [cat]\n",
        "      type: ffmpeg-rtmp\n      url: rtmp://127.0.0.1/live/key\n",
    ] {
        let shared = validate(&format!(
            "{sink}      pipe_buffer: 2MiB\n      splice: false\n"
        ));
        assert_eq!(shared.code(), Some(0), "{}", shared.stderr());
        let typo = validate(&format!("{sink}      pipe_bufer: 2MiB\n"));
        assert_eq!(typo.code(), Some(2));
        let message = typo.stderr();
        assert!(message.contains("pipeline.yaml:"), "{message}");
        assert!(message.contains("unknown field `pipe_bufer`"), "{message}");
        assert!(message.contains("did you mean `pipe_buffer`"), "{message}");
        let small = validate(&format!("{sink}      pipe_buffer: 1KiB\n"));
        assert_eq!(small.code(), Some(2));
        assert!(
            small.stderr().contains("field `pipe_buffer`"),
            "{}",
            small.stderr()
        );
        assert!(
            small.stderr().contains("from 4KiB to 1GiB"),
            "{}",
            small.stderr()
        );
    }
}

#[test]
fn variables_are_substituted_in_every_string_style() {
    let dir = TestDir::new();
    dir.write("in/one.bin", b"payload");
    // Plain, double- and single-quoted, inside a flow mapping, a number, and an escape.
    let config = dir.write(
        "pipeline.yaml",
        "pipelines:\n  - name: a\n    fragment_buffer_size: ${BUFFER}\n    source: {type: directory, path: \"${INPUT}\", follow: false}\n    sink:\n      type: file\n      mode: per_fragment\n      path: 'out/${ARCHIVE}-$${LITERAL}'\n",
    );
    let run = streampub_tests::Running::start_with_env(
        &streampub_binary(),
        &["run", config.to_str().unwrap()],
        &[("INPUT", "in"), ("ARCHIVE", "from-env"), ("BUFFER", "2")],
    )
    .wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(
        std::fs::read(dir.join("out/from-env-${LITERAL}/one.bin")).unwrap(),
        b"payload"
    );
}

#[test]
fn plugins_lists_every_builtin_with_its_options() {
    let run = run_to_end(&streampub_binary(), &["plugins", "--json"], TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let plugins: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<(String, String)> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|plugin| {
            (
                plugin["kind"].as_str().unwrap().to_owned(),
                plugin["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (kind, name) in [
        ("sink", "ffmpeg-rtmp"),
        ("sink", "process"),
        ("stage", "fmp4-timeline"),
        ("stage", "flv-timeline"),
        ("source", "directory"),
        ("source", "channel"),
        ("source", "http"),
        ("sink", "file"),
        ("sink", "null"),
        ("file", "top-level"),
        ("pipeline", "pipeline"),
        ("destination", "destination"),
    ] {
        assert!(
            names.contains(&(kind.to_owned(), name.to_owned())),
            "{kind} {name} missing from {names:?}"
        );
    }
    let option_names = |type_name: &str| -> Vec<String> {
        let entry = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|plugin| plugin["type"] == type_name)
            .unwrap();
        entry["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|option| option["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        option_names("top-level"),
        ["state_dir", "shutdown_timeout", "metrics", "pipelines"]
    );
    assert_eq!(
        option_names("pipeline"),
        [
            "name",
            "chunk_size",
            "max_in_flight",
            "fragment_buffer_size",
            "source",
            "stages",
            "sink",
            "sinks"
        ]
    );
    assert_eq!(
        option_names("destination"),
        ["name", "required", "max_lag", "stages"]
    );
    let directory = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["type"] == "directory")
        .unwrap();
    let options: Vec<&str> = directory["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        options,
        [
            "path",
            "pattern",
            "init_pattern",
            "follow",
            "settle",
            "empty_timeout",
            "on_done",
            "done_dir",
            "poll_interval"
        ]
    );

    let text = run_to_end(&streampub_binary(), &["plugins"], TIMEOUT);
    assert!(text.stdout.contains("directory"), "{}", text.stdout);
    assert!(
        text.stdout
            .contains("on_done (keep | delete | move, default \"keep\")"),
        "{}",
        text.stdout
    );
}

#[test]
fn every_example_pipeline_is_valid() {
    let examples = workspace_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("yaml") {
            continue;
        }
        let run = streampub_tests::Running::start_with_env(
            &streampub_binary(),
            &["validate", path.to_str().unwrap()],
            &[("STREAM_KEY", "example"), ("STREAMPUB_TOKEN", "example")],
        )
        .wait(TIMEOUT);
        assert_eq!(run.code(), Some(0), "{}: {}", path.display(), run.stderr());
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example pipelines found");
}

#[test]
fn completions_are_printed_for_each_shell_and_bash_accepts_them() {
    let dir = TestDir::new();
    let bash = run_to_end(&streampub_binary(), &["completions", "bash"], TIMEOUT);
    assert_eq!(bash.code(), Some(0), "{}", bash.stderr());
    for subcommand in ["run", "validate", "bench", "plugins", "completions"] {
        assert!(bash.stdout.contains(subcommand), "{subcommand} missing");
    }
    let script = dir.write("streampub.bash", &bash.stdout);
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(checked.success(), "bash -n rejects the script");
    let zsh = run_to_end(&streampub_binary(), &["completions", "zsh"], TIMEOUT);
    assert!(
        zsh.stdout.starts_with("#compdef streampub"),
        "{}",
        zsh.stdout
    );
    let fish = run_to_end(&streampub_binary(), &["completions", "fish"], TIMEOUT);
    assert!(
        fish.stdout.contains("complete -c streampub"),
        "{}",
        fish.stdout
    );
    let unknown = run_to_end(&streampub_binary(), &["completions", "tcsh"], TIMEOUT);
    assert_eq!(unknown.code(), Some(2));
}

#[test]
fn validate_names_every_problem_of_a_file_in_one_run() {
    let dir = TestDir::new();
    dir.mkdir("in");
    // Three option mistakes in two pipelines, then (once the options are right) two
    // environment problems in two pipelines.
    let options = dir.write(
        "options.yaml",
        "pipelines:\n  - name: a\n    source: {type: directory, path: in, follow: no}\n    sink: {type: file, path: x, fsyncc: true}\n  - name: b\n    source: {type: directory, path: in, settle: fast}\n    sink: {type: null}\n",
    );
    let run = run_to_end(
        &streampub_binary(),
        &["validate", options.to_str().unwrap()],
        TIMEOUT,
    );
    assert_eq!(run.code(), Some(2));
    // Each problem is a JSON event (the tests log JSON) with its fields; its message is what
    // the plain `error: …` line says.
    let events = run.events("config_error");
    assert_eq!(events.len(), 3, "{}", run.stderr());
    for (event, expected) in events.iter().zip(["`follow`", "`fsyncc`", "`settle`"]) {
        let message = event["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("options.yaml:"), "{message}");
    }
    // Without JSON logs: one `error: …` line per problem.
    let plain = std::process::Command::new(streampub_binary())
        .args(["validate", options.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.starts_with("error: "))
            .count(),
        3,
        "{stderr}"
    );
    assert_eq!(events[0]["line"], 3);
    assert_eq!(events[0]["pipeline"], "a");
    assert_eq!(events[0]["field"], "follow");
    assert_eq!(events[2]["field"], "settle");
    let environment = dir.write(
        "environment.yaml",
        "pipelines:\n  - name: a\n    source: {type: directory, path: missing-a}\n    sink: {type: null}\n  - name: b\n    source: {type: directory, path: missing-b}\n    sink: {type: null}\n",
    );
    let run = run_to_end(
        &streampub_binary(),
        &["validate", environment.to_str().unwrap()],
        TIMEOUT,
    );
    assert_eq!(run.code(), Some(2));
    let stderr = run.stderr();
    assert!(
        stderr.contains("missing-a") && stderr.contains("missing-b"),
        "{stderr}"
    );
}
