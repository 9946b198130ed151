//! The packaging in `packaging/`: the systemd unit is one systemd accepts; the Kubernetes
//! manifests validate for a current Kubernetes, their pipeline file loads, and the container's
//! entry command reloads a ConfigMap-mounted pipeline file when kubelet swaps it.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use streampub_tests::{streampub_binary, workspace_root, Running, Signal, TestDir};

const TIMEOUT: Duration = Duration::from_secs(60);
/// The Kubernetes version the manifests are validated for.
const KUBERNETES: &str = "1.34.0";

#[test]
fn systemd_accepts_the_unit() {
    // scripts/test installs systemd; without it this fails rather than passing unchecked.
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze is not installed (Debian: apt-get install systemd)");
    assert!(found.status.success());
    // The unit names the installed binary; verify checks that it is executable, so the test
    // points it at the one just built.
    let unit = std::fs::read_to_string(workspace_root().join("packaging/streampub.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/streampub",
            &streampub_binary().display().to_string(),
        );
    let dir = TestDir::new();
    let path = dir.write("streampub.service", unit);
    let verified = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
}

#[test]
fn the_kubernetes_manifests_validate() {
    let manifests = workspace_root().join("packaging/kubernetes");
    let files: Vec<String> = [
        "configmap.yaml",
        "secret.example.yaml",
        "service.yaml",
        "statefulset.yaml",
        "poddisruptionbudget.yaml",
    ]
    .iter()
    .map(|file| manifests.join(file).display().to_string())
    .collect();
    // scripts/test installs kubernetes-validate (PyPI) into target/test-tools/python; without
    // it (or one on PATH) this fails rather than passing unchecked.
    let installed = workspace_root().join("target/test-tools/python/bin/kubernetes-validate");
    let program = match installed.exists() {
        true => installed,
        false => "kubernetes-validate".into(),
    };
    let validated = std::process::Command::new(program)
        .args(["--strict", "--kubernetes-version", KUBERNETES])
        .args(&files)
        .output()
        .expect("kubernetes-validate is not installed (pip install kubernetes-validate)");
    let said = String::from_utf8_lossy(&validated.stdout).into_owned()
        + &String::from_utf8_lossy(&validated.stderr);
    assert!(validated.status.success(), "kubernetes-validate: {said}");
    assert!(!said.contains("ERROR"), "{said}");
}

#[test]
fn the_configmaps_pipeline_file_loads() {
    let configmap =
        std::fs::read_to_string(workspace_root().join("packaging/kubernetes/configmap.yaml"))
            .unwrap();
    let pipeline = configmap
        .split_once("pipeline.yaml: |\n")
        .map(|(_, rest)| rest)
        .expect("the ConfigMap holds pipeline.yaml");
    let pipeline: String = pipeline
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    let dir = TestDir::new();
    let path = dir.write("pipeline.yaml", pipeline);
    let checked = Running::start_with_env(
        &streampub_binary(),
        &["validate", path.to_str().unwrap()],
        &[
            ("CHANNEL_1_KEY", "key"),
            ("CHANNEL_2_KEY", "key"),
            ("STREAMPUB_TOKEN", "token"),
            ("AWS_ACCESS_KEY_ID", "key-id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    )
    .wait(TIMEOUT);
    assert_eq!(checked.code(), Some(0), "{}", checked.stderr());
}

/// Writes `config` as `pipeline.yaml` in a new directory `..<version>` of `mount` and points
/// `..data` at it, as kubelet's atomic writer does: a new symlink renamed over the old one.
fn publish_configmap(mount: &Path, version: &str, config: &serde_json::Value) {
    let data = mount.join(format!("..{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("pipeline.yaml"), config.to_string()).unwrap();
    let staged = mount.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &staged).unwrap();
    std::fs::rename(&staged, mount.join("..data")).unwrap();
    let link = mount.join("pipeline.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/pipeline.yaml", &link).unwrap();
    }
}

#[test]
fn a_configmap_swap_reloads_the_changed_pipeline_only() {
    let dir = TestDir::new();
    let inputs = (dir.mkdir("in-a"), dir.mkdir("in-b"));
    std::fs::write(inputs.0.join("batch-0.bin"), b"a").unwrap();
    std::fs::write(inputs.1.join("batch-0.bin"), b"b").unwrap();
    let pipeline = |name: &str, input: &Path, chunk_size: &str| {
        json!({
            "name": name,
            "chunk_size": chunk_size,
            "source": {"type": "directory", "path": input, "settle": "0s"},
            "sink": {"type": "null"},
        })
    };
    let mount = dir.mkdir("etc-streampub");
    let first = json!({"pipelines": [
        pipeline("a", &inputs.0, "64KiB"), pipeline("b", &inputs.1, "64KiB"),
    ]});
    publish_configmap(&mount, "2026_12_04_00_00_00.1", &first);
    // The container's entry command (packaging/Containerfile: `streampub --log-format json`,
    // which `Running` adds) with the StatefulSet's args.
    let entry = mount.join("pipeline.yaml");
    let running = Running::start(
        &streampub_binary(),
        &["run", "--watch", entry.to_str().unwrap()],
    );
    for name in ["a", "b"] {
        running.wait_for_event(TIMEOUT, "fragment_published", |event| {
            event["pipeline"] == name
        });
    }
    let second = json!({"pipelines": [
        pipeline("a", &inputs.0, "64KiB"), pipeline("b", &inputs.1, "128KiB"),
    ]});
    publish_configmap(&mount, "2026_12_04_00_01_00.2", &second);
    std::fs::remove_dir_all(mount.join("..2026_12_04_00_00_00.1")).unwrap();
    let reloaded = running.wait_for_event(TIMEOUT, "config_reloaded", |_| true);
    assert_eq!(reloaded["restarted"], "b", "{reloaded}");
    assert_eq!(reloaded["unchanged"], "a", "{reloaded}");
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let started_a = run
        .events("pipeline_started")
        .into_iter()
        .filter(|event| event["pipeline"] == "a")
        .count();
    assert_eq!(started_a, 1, "a kept running");
}
