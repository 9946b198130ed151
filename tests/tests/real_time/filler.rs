//! A live channel against an nginx-rtmp that drops publishers idle for 5 s, with a viewer
//! pulling the stream: small_fragments renamed into the watched directory on schedule ±2 s for
//! 40 s (eight times nginx's idle limit), then one 15 s late. Paced with filler (the
//! defaults), the session never goes idle.

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use streampub_tests::http::{parse_prometheus_text, HttpClient};
use streampub_tests::media::{audio_channels, decoder_errors, probe_packets, small_fragments};
use streampub_tests::rtmp::{free_port, RtmpServer};
use streampub_tests::{streampub_binary, Random, Running, Signal, TestDir};

const FRAGMENT_SECONDS: u64 = 8;
/// Fragments on schedule (±2 s): 5 × 8 s.
const ON_SCHEDULE: usize = 5;
const LATE: Duration = Duration::from_secs(15);

/// A viewer: ffmpeg reading the stream from the server into a file. Killed when dropped.
struct Viewer(Child);

impl Viewer {
    fn start(url: &str, output: &std::path::Path) -> Self {
        let child = Command::new("ffmpeg")
            .args([
                "-nostdin", "-v", "error", "-i", url, "-c", "copy", "-f", "flv", "-y",
            ])
            .arg(output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg not found; run scripts/test, which installs it");
        Self(child)
    }

    /// Lets it finish the file after the stream ended.
    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_late_fragment_is_covered_by_filler_without_an_idle_drop_or_a_reconnect() {
    late_fragment_covered_by_filler("ffmpeg-rtmp", "process_started");
}

#[test]
fn the_native_rtmp_sink_covers_a_late_fragment_with_filler_in_one_session() {
    late_fragment_covered_by_filler("rtmp", "rtmp_publishing");
}

/// `sink` publishes; `session_event` is logged once per session it starts.
fn late_fragment_covered_by_filler(sink: &str, session_event: &str) {
    // The ones on schedule, the late one and the one right after it.
    let media = small_fragments(ON_SCHEDULE as u32 + 2, 8, &["--bitrate", "400k"]);
    let mut server = RtmpServer::start_dropping_idle_publishers(Duration::from_secs(5));
    let dir = TestDir::new();
    let incoming = dir.mkdir("in");
    let url = format!("{}/channel", server.server_url());
    let address = format!("127.0.0.1:{}", free_port());
    let config = dir.pipeline_file(&json!({
        "metrics": {"listen": address},
        "pipelines": [{
            "name": "channel",
            "source": {"type": "directory", "path": "in", "settle": "0s"},
            "sink": {"type": sink, "url": url},
        }],
    }));
    let http = HttpClient::new(&address);
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let rename_in = |index: usize| {
        let staged = dir.join(&format!("batch-{index}.mp4"));
        std::fs::copy(&media[index], &staged).unwrap();
        std::fs::rename(&staged, incoming.join(format!("batch-{index}.mp4"))).unwrap();
    };

    // Fragment k is due k × 8 s after the first; each comes up to 2 s early or late (seeded).
    let mut random = Random(15);
    let start = Instant::now();
    let mut viewer = None;
    for index in 0..=ON_SCHEDULE + 1 {
        let schedule = Duration::from_secs(FRAGMENT_SECONDS * index as u64);
        let at = match index {
            0 => schedule,
            _ if index < ON_SCHEDULE => {
                schedule + Duration::from_millis(random.below(4000)) - Duration::from_secs(2)
            }
            // The late one, then the next right after it.
            _ if index == ON_SCHEDULE => schedule + LATE,
            _ => {
                Duration::from_secs(FRAGMENT_SECONDS * ON_SCHEDULE as u64)
                    + LATE
                    + Duration::from_secs(1)
            }
        };
        thread::sleep(at.saturating_sub(start.elapsed()));
        if index == ON_SCHEDULE {
            // 15 s into the gap: filler is running, and the output keeps up with the clock.
            let health = http.get("/healthz").json();
            let channel = &health["pipelines"]["channel"];
            let filled = channel["filler_seconds"].as_f64().unwrap();
            let lead = channel["output_lead_seconds"].as_f64().unwrap();
            assert!(filled >= 10.0, "{health}");
            assert!((-1.0..=1.0).contains(&lead), "{health}");
        }
        rename_in(index);
        if index == 0 {
            running.wait_for_event(Duration::from_secs(20), session_event, |_| true);
            thread::sleep(Duration::from_secs(1));
            viewer = Some(Viewer::start(&url, &dir.join("viewer.flv")));
        }
    }
    let last = format!("batch-{}.mp4", ON_SCHEDULE + 1);
    running.wait_for_event(Duration::from_secs(60), "fragment_published", |event| {
        event["fragment"] == last.as_str()
    });
    let metrics = parse_prometheus_text(&http.get("/metrics").body);
    let metric =
        metrics[&format!("streampub_filler_seconds_total{{pipeline=\"channel\",sink=\"{sink}\"}}")];
    assert!(metric >= 12.5, "streampub_filler_seconds_total {metric}");
    running.signal(Signal::TERM);
    let run = running.wait(Duration::from_secs(30));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), media.len(), "{}", run.stderr());
    // One session: started once, never reconnected, no new session.
    assert_eq!(run.events(session_event).len(), 1, "{}", run.stderr());
    assert!(
        run.events("sink_reconnected").is_empty(),
        "{}",
        run.stderr()
    );
    assert!(run.events("session_started").is_empty(), "{}", run.stderr());
    server.stop();
    if let Some(viewer) = viewer {
        viewer.finish();
    }
    let recordings = server.recordings();
    assert_eq!(
        recordings.len(),
        1,
        "the server dropped the session: {recordings:?}"
    );

    // The late fragment was covered by about 15 s of filler (less what earlier jitter already
    // added to the schedule), and it took over at once.
    let ended = run.events("filler_ended");
    let late = ended
        .iter()
        .find(|event| event["sequence"] == ON_SCHEDULE as u64 + 1)
        .unwrap_or_else(|| panic!("no filler before the late fragment: {}", run.stderr()));
    let late_filler = late["filler_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!(
        (12.5..=16.0).contains(&late_filler),
        "filler before the late fragment: {late_filler} s"
    );
    let filled: f64 = ended
        .iter()
        .map(|event| event["filler_ms"].as_u64().unwrap() as f64 / 1000.0)
        .sum();
    assert!(
        filled <= 19.0,
        "{filled} s of filler in all: {}",
        run.stderr()
    );

    // The recording: every content packet, plus the filler (at 25 fps), in one timeline.
    let content_video: usize = media
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum();
    let content_seconds = (FRAGMENT_SECONDS * media.len() as u64) as f64;
    let recorded = probe_packets(&recordings[0]);
    assert!(recorded.video.monotonic(true), "video DTS goes back");
    assert!(recorded.audio.monotonic(false), "audio DTS goes back");
    let filler_frames = recorded.video.count() as f64 - content_video as f64;
    let recorded_filler = recorded.duration() - content_seconds;
    assert!(
        filler_frames >= 25.0 * (filled - 0.5),
        "{filler_frames} filler frames for {filled} s of filler"
    );
    assert!(
        (filled - 0.5..=filled + 4.0).contains(&recorded_filler),
        "recorded {:.2} s: {recorded_filler:.2} s beyond the content, {filled:.2} s of filler \
         between fragments",
        recorded.duration()
    );
    assert_eq!(decoder_errors(&recordings[0]), 0);

    // The viewer saw the same stream: continuous, decodable.
    let seen = probe_packets(&dir.join("viewer.flv"));
    assert!(seen.video.monotonic(true));
    assert!(
        seen.duration() > content_seconds - FRAGMENT_SECONDS as f64,
        "the viewer saw {:.1} s",
        seen.duration()
    );
    assert_eq!(decoder_errors(&dir.join("viewer.flv")), 0);
}

#[test]
fn a_server_outage_during_the_filler_gives_a_new_session_that_decodes_from_its_start() {
    outage_during_the_filler("mp4", "mp4");
}

#[test]
fn with_mpegts_batches_a_session_that_begins_in_a_gap_gets_the_program_tables_first() {
    outage_during_the_filler("mpegts", "ts");
}

/// Batches of `format`: the server goes away 2 s into the filler and comes back; both
/// sessions decode from their start.
fn outage_during_the_filler(format: &str, extension: &str) {
    let media = small_fragments(2, 4, &["--bitrate", "400k", "--format", format]);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    let incoming = dir.mkdir("in");
    let config = dir.pipeline_file(&json!({"pipelines": [{
        "name": "channel",
        "source": {"type": "directory", "path": "in", "pattern": format!("*.{extension}"), "settle": "0s"},
        "sink": {
            "type": "ffmpeg-rtmp",
            "url": format!("{}/channel", server.server_url()),
            "input_format": format,
            "reconnect_delay": "1s",
        },
    }]}));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let rename_in = |index: usize| {
        let staged = dir.join(&format!("batch-{index}.{extension}"));
        std::fs::copy(&media[index], &staged).unwrap();
        std::fs::rename(&staged, incoming.join(format!("batch-{index}.{extension}"))).unwrap();
    };
    rename_in(0);
    // The filler runs; the server goes away in the middle of it and comes back.
    running.wait_for_event(Duration::from_secs(30), "filler_started", |_| true);
    thread::sleep(Duration::from_secs(2));
    server.kill();
    thread::sleep(Duration::from_secs(2));
    server.restart();
    running.wait_for_event(Duration::from_secs(30), "sink_reconnected", |_| true);
    thread::sleep(Duration::from_secs(2));
    rename_in(1);
    let last = format!("batch-1.{extension}");
    running.wait_for_event(Duration::from_secs(30), "fragment_published", |event| {
        event["fragment"] == last.as_str()
    });
    running.signal(Signal::TERM);
    let run = running.wait(Duration::from_secs(30));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 2, "{}", run.stderr());
    // The new session begins with the filler's keyframe and its own decoder configuration.
    for recording in &recordings {
        let packets = probe_packets(recording);
        assert!(packets.video.keyframes[0], "{}", recording.display());
        assert!(packets.video.monotonic(true));
        assert_eq!(decoder_errors(recording), 0, "{}", recording.display());
    }
}

#[test]
fn flv_batches_are_filled_too_and_the_stream_resumes_with_its_own_configuration() {
    a_late_batch_is_filled("flv", "flv", &[]);
}

#[test]
fn mpegts_batches_are_filled_too() {
    a_late_batch_is_filled("mpegts", "ts", &[]);
}

// The filler's audio matches every channel layout and rate: MP4's sample entries say 2
// channels whatever the stream, so the stream's AudioSpecificConfig is what counts.
#[test]
fn mono_48_khz_is_filled() {
    a_late_batch_is_filled("mp4", "mp4", &["--channels", "1", "--sample-rate", "48000"]);
}

#[test]
fn stereo_44_1_khz_is_filled() {
    a_late_batch_is_filled("mp4", "mp4", &["--channels", "2", "--sample-rate", "44100"]);
}

#[test]
fn surround_5_1_48_khz_is_filled() {
    a_late_batch_is_filled("mp4", "mp4", &["--channels", "6", "--sample-rate", "48000"]);
}

#[test]
fn mono_flv_and_5_1_mpegts_batches_are_filled() {
    a_late_batch_is_filled("flv", "flv", &["--channels", "1", "--sample-rate", "22050"]);
    a_late_batch_is_filled(
        "mpegts",
        "ts",
        &["--channels", "6", "--sample-rate", "32000"],
    );
}

/// Batches of `format` (file names ending `.extension`, made with `audio` options), 4 s each,
/// the third 8 s late, to an nginx-rtmp that drops publishers idle for 5 s: one session,
/// filler in the gap, every content frame, 0 decoder errors.
fn a_late_batch_is_filled(format: &str, extension: &str, audio: &[&str]) {
    let mut options = vec!["--bitrate", "400k", "--format", format];
    options.extend_from_slice(audio);
    let media = small_fragments(3, 4, &options);
    let late = Duration::from_secs(8);
    let mut server = RtmpServer::start_dropping_idle_publishers(Duration::from_secs(5));
    let dir = TestDir::new();
    let incoming = dir.mkdir("in");
    let config = dir.pipeline_file(&json!({"pipelines": [{
        "name": "channel",
        "source": {"type": "directory", "path": "in", "pattern": format!("*.{extension}"), "settle": "0s"},
        "sink": {
            "type": "ffmpeg-rtmp",
            "url": format!("{}/channel", server.server_url()),
            "input_format": format,
        },
    }]}));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let start = Instant::now();
    for (index, at) in [0, 4, 8 + late.as_secs()].into_iter().enumerate() {
        thread::sleep(Duration::from_secs(at).saturating_sub(start.elapsed()));
        let staged = dir.join(&format!("batch-{index}.{extension}"));
        std::fs::copy(&media[index], &staged).unwrap();
        std::fs::rename(&staged, incoming.join(format!("batch-{index}.{extension}"))).unwrap();
    }
    let last = format!("batch-2.{extension}");
    running.wait_for_event(Duration::from_secs(30), "fragment_published", |event| {
        event["fragment"] == last.as_str()
    });
    running.signal(Signal::TERM);
    let run = running.wait(Duration::from_secs(30));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 3, "{}", run.stderr());
    assert_eq!(run.events("process_started").len(), 1, "{}", run.stderr());
    assert!(
        run.events("sink_reconnected").is_empty(),
        "{}",
        run.stderr()
    );
    assert!(run.events("filler_failed").is_empty(), "{}", run.stderr());
    let ended = run.events("filler_ended");
    let before_late = ended
        .iter()
        .find(|event| event["sequence"] == 3)
        .unwrap_or_else(|| panic!("no filler before the late batch: {}", run.stderr()));
    let filled = before_late["filler_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!((6.5..=9.0).contains(&filled), "{filled} s of filler");
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "the server dropped the session");
    let content_video: usize = media
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum();
    let recorded = probe_packets(&recordings[0]);
    assert!(recorded.video.monotonic(true), "video DTS goes back");
    assert!(recorded.audio.monotonic(false), "audio DTS goes back");
    let filler_frames = recorded.video.count() as f64 - content_video as f64;
    assert!(
        filler_frames >= 25.0 * (filled - 0.5),
        "{filler_frames} filler frames for {filled} s of filler"
    );
    // The filler's decoder configuration differs from the stream's (another encoder's
    // settings); both decode because each switch carries it (an FLV sequence header, the
    // parameter sets before each H.264 keyframe in MPEG-TS).
    assert_eq!(decoder_errors(&recordings[0]), 0);
    assert_eq!(
        audio_channels(&recordings[0]),
        audio_channels(&media[0]),
        "the recording's audio has another layout than the input's"
    );
}

/// Whether process `pid` runs (a zombie, killed but not yet reaped, does not).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z')
        })
        .unwrap_or(false)
}

#[test]
fn the_ffmpeg_making_the_filler_dies_with_streampub() {
    let media = small_fragments(1, 2, &["--bitrate", "400k"]);
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    // An "ffmpeg" that takes its time making the filler.
    let pid_file = dir.join("maker.pid");
    let maker = dir.write(
        "slow-ffmpeg",
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    );
    std::fs::set_permissions(&maker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.pipeline_file(&json!({"pipelines": [{
        "name": "channel",
        "source": {"type": "directory", "path": "in", "settle": "0s"},
        "stages": [
            {"type": "fmp4-timeline"},
            {"type": "fmp4-to-flv", "filler": "generate", "ffmpeg": maker},
        ],
        "sink": {"type": "process", "command": ["cat"], "stdout": "out.flv"},
    }]}));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the filler was never started");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(runs(pid));
    running.signal(Signal::KILL);
    running.wait(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while runs(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let survived = runs(pid);
    if survived {
        streampub_tests::send_signal(pid, Signal::KILL);
    }
    assert!(!survived, "the filler's ffmpeg outlived streampub");
}
