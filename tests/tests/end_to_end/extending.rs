//! Extending streampub: a plugin from another crate, and a program embedding the runtime.

use std::time::Duration;

use streampub_tests::{
    embed_example_binary, example_plugin_binary, run_to_end, test_bytes, TestDir,
};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_plugin_from_another_crate_runs_from_yaml() {
    let dir = TestDir::new();
    dir.write("in/batch-0.mp4", test_bytes(0, 1000));
    dir.write("in/batch-1.mp4", test_bytes(1, 2000));
    let config = dir.pipeline_file(&serde_json::json!({
        "pipelines": [{
            "name": "custom",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "stages": [{"type": "header", "text": "0123456789"}],
            "sink": {"type": "manifest", "path": "manifest.txt"},
        }],
    }));
    let run = run_to_end(
        &example_plugin_binary(),
        &["run", config.to_str().unwrap()],
        TIMEOUT,
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let manifest = std::fs::read_to_string(dir.join("manifest.txt")).unwrap();
    // Each fragment counted with the stage's 10-byte header in front.
    assert_eq!(manifest, "1 batch-0.mp4 1010\n2 batch-1.mp4 2010\n");

    let plugins = run_to_end(&example_plugin_binary(), &["plugins"], TIMEOUT);
    assert!(
        plugins.stdout.contains("manifest") && plugins.stdout.contains("header"),
        "{}",
        plugins.stdout
    );
}

#[test]
fn an_embedding_program_pushes_fragments_through_a_channel() {
    let dir = TestDir::new();
    let output = dir.mkdir("out");
    let run = run_to_end(
        &embed_example_binary(),
        &[output.to_str().unwrap()],
        TIMEOUT,
    );
    assert_eq!(run.code(), Some(0), "{}\n{}", run.stdout, run.stderr());
    for (name, contents) in [
        ("from-memory.bin", "fragment held in memory"),
        ("from-reader.bin", "fragment streamed from a reader"),
        ("from-file.bin", "fragment stored in a file"),
    ] {
        assert_eq!(
            std::fs::read_to_string(output.join(name)).unwrap(),
            contents
        );
    }
}
