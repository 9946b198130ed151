//! Resuming inside a fragment, against a real nginx-rtmp, with the batches users deliver:
//! 30-s fragments with 2-s GOPs through the default (paced) `ffmpeg-rtmp`, disrupted every
//! 25 s, so that no session lives long enough to carry a whole batch. The recordings are
//! matched frame by frame to the input (by the hash of each video packet) to tell what was
//! lost and what repeated.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::json;
use streampub_tests::media::{fragments, video_frame_hashes, video_packet_hashes};
use streampub_tests::recordings::{input_frames, recorded_stretches, repeats_between_sessions};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{send_signal, streampub_binary, Random, Running, Signal, TestDir};

pub(crate) const SEED: u64 = 20261202;
/// 25 fps.
const FRAME: f64 = 0.04;

/// Four 30-s batches of 640x360 at 2 Mbit/s, 2-s GOPs: 120 s of content.
pub(crate) const BATCHES: &[&str] = &[
    "--count",
    "4",
    "--seconds",
    "30",
    "--size",
    "640x360",
    "--bitrate",
    "2000k",
    "--fps",
    "25",
    "--gop",
    "2",
    "--audio-bitrate",
    "128k",
];

/// Pipeline `channel-1`: the directory `in` published once, with the default `ffmpeg-rtmp`
/// (paced by streampub) and `sink_options`.
fn pipeline(url: &str, sink_options: serde_json::Value) -> serde_json::Value {
    json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": streampub_tests::merged(json!({"type": "ffmpeg-rtmp", "url": url}), sink_options),
        }],
    })
}

#[test]
fn disruptions_every_25_seconds_repeat_at_most_a_gop_and_lose_no_frame() {
    let media = fragments(BATCHES);
    let (content, position) = input_frames(&media, video_packet_hashes);

    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/resumed", server.server_url());
    let config = dir.pipeline_file(&pipeline(&url, json!({})));
    let mut random = Random(SEED);
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(Duration::from_secs(60), "process_started", |_| true);
    let started = Instant::now();
    // Alternately the server crashes (down 2-3 s) and ffmpeg is killed, every 25 s, four times.
    for disruption in 0..4 {
        let due = started + Duration::from_secs(25 * (disruption + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        assert!(
            running.events_so_far("pipeline_finished").is_empty(),
            "the run ended before disruption {disruption}"
        );
        if disruption % 2 == 0 {
            server.kill();
            std::thread::sleep(Duration::from_millis(2000 + random.below(1000)));
            server.restart();
        } else {
            let ffmpeg = running
                .events_so_far("process_started")
                .last()
                .and_then(|event| event["pid"].as_u64())
                .expect("ffmpeg's pid") as u32;
            send_signal(ffmpeg, Signal::KILL);
        }
    }
    let run = running.wait(Duration::from_secs(240));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let names: Vec<String> = media
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(run.published(), names, "every batch once, in order");
    let resumed: Vec<u64> = run
        .events("fragment_resent")
        .iter()
        .filter_map(|event| event["resumed_at_ms"].as_u64())
        .collect();
    server.stop();

    let stretches = recorded_stretches(&server, &position, video_packet_hashes);
    println!("recorded frames per session {stretches:?}; resumed at {resumed:?} ms");
    let repeats = repeats_between_sessions(&stretches, content.len(), FRAME);
    println!("seed {SEED}: repeated per disruption {repeats:.2?} s");
    assert!(
        repeats.len() >= 4,
        "a session per disruption: {stretches:?}"
    );
    // At most a GOP (2 s) and confirm_margin (1 s), plus ffmpeg's report interval and a frame;
    // 3 s per disruption on average.
    for repeat in &repeats {
        assert!(
            *repeat <= 3.2,
            "a disruption repeated {repeat:.2} s: {repeats:.2?}"
        );
    }
    let mean = repeats.iter().sum::<f64>() / repeats.len() as f64;
    assert!(
        mean <= 3.0,
        "{mean:.2} s repeated per disruption: {repeats:.2?}"
    );
    // A disruption within a batch's first GOP resends it from its start; the others resume
    // inside it.
    assert!(
        resumed.len() >= 3,
        "the disruptions resumed inside the batches: {resumed:?}"
    );
}

#[test]
fn a_server_that_never_lets_the_output_advance_still_runs_out_of_attempts() {
    let media = fragments(BATCHES);
    // Takes connections and reads what comes, never answering the RTMP handshake.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0; 4096];
                while matches!(stream.read(&mut buffer), Ok(read) if read > 0) {}
            });
        }
    });
    let dir = TestDir::new();
    dir.copy_in("in", &media[..1]);
    let config = dir.pipeline_file(&pipeline(
        &format!("rtmp://127.0.0.1:{port}/live/silent"),
        json!({
            "max_reconnect_attempts": 2,
            "reconnect_delay": "200ms",
            "stall_timeout": "2s",
        }),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let run = running.wait(Duration::from_secs(180));
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let attempts: Vec<u64> = run
        .events("sink_reconnecting")
        .iter()
        .filter_map(|event| event["attempt"].as_u64())
        .collect();
    assert_eq!(attempts, [1, 2], "{}", run.stderr());
    let failed = run.pipeline_event("pipeline_failed", "channel-1");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("gave up after 2 reconnect attempts"),
        "{error}"
    );
    assert!(run.published().is_empty());
}

#[test]
fn a_crash_inside_a_batch_resumes_it_at_its_keyframe_on_the_next_start() {
    let media = fragments(BATCHES);
    let media = &media[..2];
    let (content, position) = input_frames(media, video_packet_hashes);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", media);
    let url = format!("{}/crash", server.server_url());
    let mut config = pipeline(&url, json!({}));
    config["state_dir"] = json!("state");
    let config = dir.pipeline_file(&config);
    let arguments = ["run", config.to_str().unwrap()];

    let running = Running::start(&streampub_binary(), &arguments);
    running.wait_for_event(Duration::from_secs(60), "process_started", |_| true);
    // 16 s into the first batch, streampub dies at once; its ffmpeg ends with its input.
    std::thread::sleep(Duration::from_secs(16));
    running.signal(Signal::KILL);
    let killed = running.wait(Duration::from_secs(30));
    assert_eq!(killed.code(), None, "killed by the signal");
    std::thread::sleep(Duration::from_secs(2));

    let run =
        streampub_tests::run_to_end(&streampub_binary(), &arguments, Duration::from_secs(180));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let resumed = run.events("fragment_resumed");
    assert_eq!(resumed.len(), 1, "{}", run.stderr());
    assert_eq!(resumed[0]["fragment"], "batch-0.mp4");
    let confirmed_ms = resumed[0]["confirmed_ms"].as_u64().unwrap();
    // ffmpeg started with the first media, which runs up to max_lead ahead of the clock.
    assert!(
        (8_000..=20_000).contains(&confirmed_ms),
        "confirmed {confirmed_ms} ms after 16 s"
    );
    assert_eq!(run.published(), ["batch-0.mp4", "batch-1.mp4"]);
    server.stop();

    let stretches = recorded_stretches(&server, &position, video_packet_hashes);
    let repeats = repeats_between_sessions(&stretches, content.len(), FRAME);
    println!("recorded frames per session {stretches:?}; repeated {repeats:.2?} s");
    assert_eq!(stretches.len(), 2, "{stretches:?}");
    // A GOP (2 s), confirm_margin (1 s), the interval between saves (1 s) and a chunk of media
    // (about 1 s at 2 Mbit/s) at most.
    assert!(repeats[0] <= 5.2, "the crash repeated {:.2} s", repeats[0]);
}

/// Two 30-s batches of `format` (2-s GOPs), ffmpeg killed 15 s into the first: the second
/// session resumes the batch at a keyframe, and the recordings hold every frame.
fn a_batch_of_another_container_resumes_at_a_keyframe(format: &str, extension: &str) {
    let media = fragments(&[
        "--count",
        "2",
        "--seconds",
        "30",
        "--size",
        "320x180",
        "--bitrate",
        "800k",
        "--fps",
        "25",
        "--gop",
        "2",
        "--audio-bitrate",
        "64k",
        "--format",
        format,
    ]);
    let (content, position) = input_frames(&media, video_frame_hashes);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/{format}", server.server_url());
    let mut config = pipeline(&url, json!({"input_format": format}));
    config["pipelines"][0]["source"]["pattern"] = json!(format!("*.{extension}"));
    let config = dir.pipeline_file(&config);
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let started = running.wait_for_event(Duration::from_secs(60), "process_started", |_| true);
    std::thread::sleep(Duration::from_secs(15));
    send_signal(started["pid"].as_u64().unwrap() as u32, Signal::KILL);
    let run = running.wait(Duration::from_secs(180));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let resumed: Vec<u64> = run
        .events("fragment_resent")
        .iter()
        .filter_map(|event| event["resumed_at_ms"].as_u64())
        .collect();
    assert_eq!(resumed.len(), 1, "{}", run.stderr());
    server.stop();
    let stretches = recorded_stretches(&server, &position, video_frame_hashes);
    let repeats = repeats_between_sessions(&stretches, content.len(), FRAME);
    println!("{format}: recorded frames per session {stretches:?}; repeated {repeats:.2?} s");
    assert_eq!(stretches.len(), 2, "{stretches:?}");
    // A GOP and confirm_margin, plus ffmpeg's report interval and a frame.
    assert!(repeats[0] <= 3.2, "{format}: repeated {:.2} s", repeats[0]);
}

#[test]
fn an_mpegts_batch_resumes_at_a_keyframe() {
    a_batch_of_another_container_resumes_at_a_keyframe("mpegts", "ts");
}

#[test]
fn an_flv_batch_resumes_at_a_keyframe() {
    a_batch_of_another_container_resumes_at_a_keyframe("flv", "flv");
}
