//! Harness for streampub's end-to-end tests: runs the real binaries on real files, reads their
//! JSON logs, and watches their memory. Every process a test starts is killed when its handle is
//! dropped, so a failing test leaves nothing behind.

pub mod http;
pub mod media;
pub mod node_media_server;
pub mod object_store;
pub mod recordings;
pub mod rtmp;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use serde_json::Value;

/// Sends `signal` to the process `pid`; panics if it cannot.
pub fn send_signal(pid: u32, signal: Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a child's pid is positive");
    rustix::process::kill_process(pid, signal).expect("kill failed");
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// Builds (once per test process, unless `STREAMPUB_TEST_BINARIES_BUILT` says the test command
/// built it) and returns the path of a binary of this workspace: a `bin` of `package`, or an
/// example when `example` is set.
fn build_binary(package: &str, target: &str, example: bool) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = format!("{package}/{target}/{example}");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = if example {
        target_dir.join("debug/examples").join(target)
    } else {
        target_dir.join("debug").join(target)
    };
    // `scripts/test` builds every binary once before the tests start; each test process
    // would otherwise run cargo (which waits for the others' lock) only to find it built.
    let prebuilt = std::env::var_os("STREAMPUB_TEST_BINARIES_BUILT").is_some_and(|set| set == "1");
    if prebuilt {
        assert!(
            path.exists(),
            "{} is missing though STREAMPUB_TEST_BINARIES_BUILT=1 says it was built; run the \
             tests with scripts/test, or unset it",
            path.display()
        );
    } else if !built.contains(&key) {
        let kind = if example { "--example" } else { "--bin" };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--locked", "-p", package, kind, target])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} {kind} {target} failed"
        );
        built.push(key);
    }
    path
}

/// The `streampub` binary.
pub fn streampub_binary() -> PathBuf {
    build_binary("streampub", "streampub", false)
}

/// `streampub` with the example plugins (`manifest` sink, `header` stage) linked in.
pub fn example_plugin_binary() -> PathBuf {
    build_binary(
        "streampub-example-plugin",
        "streampub-example-plugin",
        false,
    )
}

/// The `embed` example.
pub fn embed_example_binary() -> PathBuf {
    build_binary("streampub", "embed", true)
}

/// A temporary directory for one test.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("streampub-test-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Copies `files` into the directory `relative` (created), keeping their names.
    pub fn copy_in(&self, relative: &str, files: &[PathBuf]) -> PathBuf {
        let directory = self.mkdir(relative);
        for file in files {
            std::fs::copy(file, directory.join(file.file_name().unwrap())).unwrap();
        }
        directory
    }

    /// Writes `config` (a serde value) as the pipeline file `pipeline.yaml` and returns its
    /// path. It is written as JSON, which is YAML too, so tests build pipelines from data.
    pub fn pipeline_file(&self, config: &Value) -> PathBuf {
        self.write(
            "pipeline.yaml",
            serde_json::to_string_pretty(config).expect("a serde value serializes"),
        )
    }

    pub fn mkdir(&self, relative: &str) -> PathBuf {
        let path = self.join(relative);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// `base` with the entries of the mapping `extra` added or replaced (both must be mappings).
pub fn merged(mut base: Value, extra: Value) -> Value {
    let (Value::Object(base_entries), Value::Object(extra_entries)) = (&mut base, extra) else {
        panic!("merged() takes two mappings");
    };
    base_entries.extend(extra_entries);
    base
}

/// A small deterministic generator, so that a failing run of a test with random moments can
/// be run again the same way.
pub struct Random(pub u64);

impl Random {
    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Deterministic pseudo-random bytes, different for each `seed`.
pub fn test_bytes(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A running binary whose stderr (JSON logs) is collected and whose peak memory is sampled.
pub struct Running {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    /// Set once the process's stderr has closed (it exited): its logs are complete.
    logs_complete: Arc<AtomicBool>,
    stdout: Arc<Mutex<String>>,
    peak_rss_kib: Arc<Mutex<u64>>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Lines of stderr: JSON log events, or plain error messages.
    pub logs: Vec<String>,
    pub stdout: String,
    /// The highest VmHWM seen while the process ran.
    pub peak_rss_kib: u64,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stderr(&self) -> String {
        self.logs.join("\n")
    }

    /// The names of the fragments logged as published, in order.
    pub fn published(&self) -> Vec<String> {
        published_fragments(&self.logs)
    }

    /// The JSON log events whose `event` field is `event`, in order.
    pub fn events(&self, event: &str) -> Vec<Value> {
        events(&self.logs, event)
    }

    /// The one `event` of `pipeline`; panics with the logs if there is not exactly one.
    pub fn pipeline_event(&self, event: &str, pipeline: &str) -> Value {
        let matching: Vec<Value> = self
            .events(event)
            .into_iter()
            .filter(|found| found["pipeline"] == pipeline)
            .collect();
        match <[Value; 1]>::try_from(matching) {
            Ok([found]) => found,
            Err(matching) => panic!(
                "expected one `{event}` event of pipeline {pipeline}, found {}; logs:\n{}",
                matching.len(),
                self.stderr()
            ),
        }
    }
}

/// The JSON log events in `logs` whose `event` field is `event`, in order.
pub fn events(logs: &[String], event: &str) -> Vec<Value> {
    logs.iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|found| found["event"] == event)
        .collect()
}

/// Names of the fragments in `fragment_published` log events, in order.
pub fn published_fragments(logs: &[String]) -> Vec<String> {
    events(logs, "fragment_published")
        .iter()
        .filter_map(|event| event["fragment"].as_str().map(str::to_owned))
        .collect()
}

/// Names of the fragments the destination `sink` logged as published, in order.
pub fn published_by(logs: &[String], sink: &str) -> Vec<String> {
    events(logs, "fragment_published")
        .into_iter()
        .filter(|event| event["sink"] == sink)
        .map(|event| event["fragment"].as_str().unwrap_or_default().to_owned())
        .collect()
}

impl Running {
    /// Starts `binary` with `args` and JSON logs.
    pub fn start(binary: &Path, args: &[&str]) -> Self {
        Self::start_with_env(binary, args, &[])
    }

    pub fn start_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .arg("--log-format=json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let peak_rss_kib = Arc::new(Mutex::new(0));
        let stderr_pipe = child.stderr.take().unwrap();
        let stdout_pipe = child.stdout.take().unwrap();
        let mut readers = Vec::new();
        let log_sink = Arc::clone(&logs);
        let logs_complete = Arc::new(AtomicBool::new(false));
        let complete = Arc::clone(&logs_complete);
        readers.push(thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                log_sink.lock().unwrap().push(line);
            }
            complete.store(true, Ordering::SeqCst);
        }));
        let stdout_sink = Arc::clone(&stdout);
        readers.push(thread::spawn(move || {
            for line in BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
                let mut stdout = stdout_sink.lock().unwrap();
                stdout.push_str(&line);
                stdout.push('\n');
            }
        }));
        let pid = child.id();
        let peak = Arc::clone(&peak_rss_kib);
        // Sampling ends by itself when /proc/<pid> goes away.
        thread::spawn(move || {
            while let Some(hwm) = read_vm_hwm_kib(pid) {
                let mut peak = peak.lock().unwrap();
                *peak = (*peak).max(hwm);
                drop(peak);
                thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            child,
            logs,
            logs_complete,
            stdout,
            peak_rss_kib,
            readers,
        }
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a log line satisfies `predicate`; panics with the logs after `timeout`, or
    /// at once when the process has exited without one.
    pub fn wait_for_log(&self, timeout: Duration, predicate: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let complete = self.logs_complete.load(Ordering::SeqCst);
            if self.logs.lock().unwrap().iter().any(|line| predicate(line)) {
                return;
            }
            if complete {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no matching log line within {timeout:?} (or before the process exited); logs:\n{}",
            self.logs.lock().unwrap().join("\n")
        );
    }

    /// Waits until a JSON log event named `event` satisfies `predicate`, and returns it; panics
    /// with the logs after `timeout`, or at once when the process has exited without one.
    pub fn wait_for_event(
        &self,
        timeout: Duration,
        event: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let complete = self.logs_complete.load(Ordering::SeqCst);
            let found = events(&self.logs.lock().unwrap(), event)
                .into_iter()
                .find(|found| predicate(found));
            if let Some(found) = found {
                return found;
            }
            if complete {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no `{event}` event as expected within {timeout:?} (or before the process exited); \
             logs:\n{}",
            self.logs.lock().unwrap().join("\n")
        );
    }

    /// The JSON log events named `event` so far.
    pub fn events_so_far(&self, event: &str) -> Vec<Value> {
        events(&self.logs.lock().unwrap(), event)
    }

    /// The log lines so far.
    pub fn logs_so_far(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Fragments published so far.
    pub fn published_so_far(&self) -> Vec<String> {
        published_fragments(&self.logs.lock().unwrap())
    }

    pub fn signal(&self, signal: Signal) {
        send_signal(self.child.id(), signal);
    }

    /// Waits for the process to exit; kills it and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "process did not exit within {timeout:?}; logs:\n{}",
                    self.logs.lock().unwrap().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let logs = std::mem::take(&mut *self.logs.lock().unwrap());
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        let peak_rss_kib = *self.peak_rss_kib.lock().unwrap();
        Finished {
            status,
            logs,
            stdout,
            peak_rss_kib,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `binary` to completion (at most `timeout`).
pub fn run_to_end(binary: &Path, args: &[&str], timeout: Duration) -> Finished {
    Running::start(binary, args).wait(timeout)
}

/// Runs `streampub run CONFIG` to completion (at most `timeout`).
pub fn run_pipeline_file(config: &Path, timeout: Duration) -> Finished {
    run_to_end(
        &streampub_binary(),
        &["run", config.to_str().expect("test paths are UTF-8")],
        timeout,
    )
}

/// The peak resident set size (VmHWM) of a live process, in KiB.
fn read_vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}
