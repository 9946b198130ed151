use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::*;

/// A stand-in for ffmpeg that prints a clip once the file `go` exists (or after 10 s).
fn slow_ffmpeg(directory: &std::path::Path, go: &std::path::Path) -> PathBuf {
    let program = directory.join("slow-ffmpeg");
    let script = format!(
        "#!/bin/sh\nfor i in $(seq 100); do [ -e '{}' ] && break; sleep 0.1; done\nprintf clip\n",
        go.display()
    );
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    program
}

#[test]
fn a_fill_does_not_wait_for_a_clip_still_being_made() {
    let directory = tempfile::tempdir().unwrap();
    let go = directory.path().join("go");
    let ffmpeg = slow_ffmpeg(directory.path(), &go);
    let mut maker = ClipMaker::new(FillerSource::Generate, ffmpeg);
    let shape = StreamShape {
        video: None,
        audio: None,
    };
    maker.prepare(shape, ClipContainer::MpegTs, |clip, _| Ok(clip.len()));
    // The maker is blocked until `go` exists: an answer now is one that did not wait.
    assert_eq!(maker.ready(), Ok(None));
    std::fs::write(&go, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match maker.ready() {
            Ok(Some(length)) => break assert_eq!(*length, 4),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("no clip: {other:?}"),
        }
    }
}
