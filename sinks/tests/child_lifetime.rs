//! A program that embeds streampub keeps the process its sink started for as long as the
//! program runs, even when the thread that started it (by writing the first bytes) has
//! ended; when the program is killed, the process dies with it.
//!
//! The test runs its own binary a second time as the embedding program (selected by an
//! environment variable), so that it can kill that program with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streampub_core::plugin::{Bytes, ComponentContext, FragmentInfo, SinkConfig};
use streampub_sinks::process::{ProcessOptions, ProcessSinkConfig};

/// Set in the embedding program: where its sink's child writes its pid.
const PID_FILE: &str = "STREAMPUB_TEST_EMBEDDER_PID_FILE";
const TEST_NAME: &str = "a_sinks_child_lives_with_the_program_not_with_the_thread_that_built_it";

#[test]
fn a_sinks_child_lives_with_the_program_not_with_the_thread_that_built_it() {
    if let Some(pid_file) = std::env::var_os(PID_FILE) {
        embedding_program(Path::new(&pid_file));
    }
    let directory = tempfile::tempdir().unwrap();
    let pid_file = directory.path().join("child.pid");
    let mut program = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(PID_FILE, &pid_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(program.stdout.take().unwrap()).lines();
    // The embedding program says when its child has outlived the building thread.
    let child: u32 = loop {
        let line = lines
            .next()
            .expect("the embedding program ended before its child was up")
            .unwrap();
        // The test harness may print its own words before ours on the line.
        if let Some((_, pid)) = line.split_once("CHILD ALIVE ") {
            break pid.trim().parse().unwrap();
        }
        if line.contains("CHILD DEAD") {
            program.kill().unwrap();
            program.wait().unwrap();
            panic!("the child died with the thread that built the sink");
        }
    };
    assert!(is_running(child), "the child died with the building thread");
    program.kill().unwrap();
    program.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_running(child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = is_running(child);
    if survived {
        let _ = Command::new("kill")
            .args(["-9", &child.to_string()])
            .status();
    }
    assert!(!survived, "the child {child} outlived the killed program");
}

/// The embedding program: builds a `process` sink on a helper thread that then ends, checks
/// that the sink's child outlives that thread, reports its pid and waits to be killed.
fn embedding_program(pid_file: &Path) -> ! {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
    let config = ProcessSinkConfig {
        command: vec!["sh".into(), "-c".into(), script],
        stdout: None,
        process: ProcessOptions::default(),
        reconnect: streampub_sinks::reconnect_options::ReconnectOptions::default(),
    };
    let context = ComponentContext::new("embedded", Path::new("."));
    let handle = runtime.handle().clone();
    // The child starts with the first bytes written, here on the helper thread.
    let sink = std::thread::spawn(move || {
        handle.block_on(async {
            let mut sink = config.build(&context).await.unwrap();
            let fragment = FragmentInfo {
                sequence: 1,
                name: "f".into(),
                length: None,
            };
            sink.begin_fragment(&fragment).await.unwrap();
            sink.write_chunk(Bytes::from_static(b"x")).await.unwrap();
            sink
        })
    })
    .join()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let child = loop {
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the child never wrote its pid");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Time for a death signal tied to the ended thread to arrive.
    std::thread::sleep(Duration::from_millis(500));
    if is_running(child) {
        println!("CHILD ALIVE {child}");
    } else {
        println!("CHILD DEAD {child}");
    }
    std::thread::sleep(Duration::from_secs(600));
    drop(sink);
    unreachable!("killed by the test long before");
}

/// Whether process `pid` exists and is not a zombie waiting to be reaped.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
