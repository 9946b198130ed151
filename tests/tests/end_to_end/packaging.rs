//! The packaging in `packaging/`: the systemd unit is one systemd accepts.

use streampub_tests::{streampub_binary, workspace_root, TestDir};

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
