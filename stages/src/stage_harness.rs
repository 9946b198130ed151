//! Running a stage over whole files in tests: core's harness (`streampub_core::testing`) and
//! media made by ffmpeg.

pub(crate) use streampub_core::testing::{feed_damaged_copies, joined, media_times, run_stage};

/// One second of H.264 baseline (whose avcC differs from the filler's, which is High) at
/// 320x180, 25 fps, and AAC-LC 44.1 kHz stereo, made by ffmpeg as `format`, with `extra`
/// options of its muxer.
pub(crate) fn ffmpeg_media(format: &str, extra: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x180:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "1", "-c:v", "libx264", "-profile:v", "baseline"])
        .args(["-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-ac", "2"])
        .args(extra)
        .args(["-f", format, "pipe:1"])
        .output()
        .expect("ffmpeg not found; run scripts/test, which installs it");
    assert!(output.status.success());
    output.stdout
}
