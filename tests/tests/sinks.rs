//! The built-in sinks end to end.

use std::time::Duration;

use streampub_tests::{run_pipeline_file, test_bytes, TestDir};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn per_fragment_output_is_byte_identical_to_the_input() {
    let dir = TestDir::new();
    // Sizes around the chunk size, and an empty fragment.
    let sizes = [0, 1, 262_143, 262_144, 262_145, 3_000_001];
    for (index, size) in sizes.iter().enumerate() {
        dir.write(
            &format!("in/f-{index}.bin"),
            test_bytes(index as u64, *size),
        );
    }
    let config = dir.write(
        "pipeline.yaml",
        "pipelines:\n  - name: copy\n    source:\n      type: directory\n      path: in\n      follow: false\n      settle: 0s\n    sink:\n      type: file\n      mode: per_fragment\n      path: out\n      fsync: true\n",
    );
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
    let config = dir.write(
        "pipeline.yaml",
        "pipelines:\n  - name: archive\n    source:\n      type: directory\n      path: in\n      follow: false\n      settle: 0s\n      on_done: delete\n    sink:\n      type: file\n      path: out/archive.bin\n",
    );
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
    let pipeline = |sink_path: &str| {
        format!(
            "state_dir: state\npipelines:\n  - name: archive\n    source:\n      type: directory\n      path: in\n      follow: false\n      settle: 0s\n    sink:\n      type: file\n      path: {sink_path}\n"
        )
    };

    // A directory where the archive file should be is caught before anything starts.
    dir.mkdir("taken");
    let taken = dir.write("taken.yaml", pipeline("taken"));
    let run = run_pipeline_file(&taken, TIMEOUT);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("is a directory"), "{}", run.stderr());

    // /dev/full fails every write with ENOSPC, like a full disk.
    let full = dir.write("full.yaml", pipeline("/dev/full"));
    let run = run_pipeline_file(&full, TIMEOUT);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("/dev/full") && run.stderr().contains("No space left on device"),
        "{}",
        run.stderr()
    );
    assert!(run.published().is_empty());

    // The fragment was not acknowledged: the next run, with room, publishes it.
    let good = dir.write("good.yaml", pipeline("out/archive.bin"));
    let again = run_pipeline_file(&good, TIMEOUT);
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    assert_eq!(again.published(), ["a.bin"]);
    assert_eq!(
        std::fs::read(dir.join("out/archive.bin")).unwrap(),
        b"payload"
    );
}
