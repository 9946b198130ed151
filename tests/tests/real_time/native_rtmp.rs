//! The `rtmp` sink (streampub's own RTMP publisher) against a real nginx-rtmp: one session with
//! every packet and no ffmpeg in the publishing path, a refused stream name and a wrong
//! application that fail at once naming the problem, and a server crash that loses no frame
//! and repeats at most a GOP; a reload that changes another pipeline keeps the session; RTMPS
//! through a TLS terminator that checks the server's certificate.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::media::{
    decoder_errors, fragments, probe_all_packets, probe_packets, small_fragments, total_duration,
    video_frame_hashes, video_packet_hashes,
};
use streampub_tests::recordings::{
    input_frames, recorded_stretches, repeats_between_sessions, FrameHashes,
};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::tls::TlsTunnel;
use streampub_tests::{merged, run_pipeline_file, streampub_binary, Random, Running, TestDir};

use crate::resume::{BATCHES, SEED};
use crate::rtmp::assert_certificate_refused;
use crate::rtmp_protocol::Publisher;

const TIMEOUT: Duration = Duration::from_secs(120);
/// 25 fps.
const FRAME: f64 = 0.04;

/// Five 3-s fragments of 320x180, 25 fps, 2-s GOPs.
fn short_fragments(format: &str) -> Vec<std::path::PathBuf> {
    small_fragments(5, 3, &["--bitrate", "400k", "--format", format])
}

/// Pipeline `channel-1` publishing the directory `in` with the `rtmp` sink to `url`.
fn pipeline(url: &str, format: &str, sink_options: Value) -> Value {
    json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sink": merged(json!({"type": "rtmp", "url": url, "input_format": format}), sink_options),
        }],
    })
}

/// Publishes five `format` fragments, paced or not, and reads back one session with every
/// video and audio packet, decoding cleanly.
fn assert_one_session_with_every_packet(format: &str, paced: bool) {
    let media = short_fragments(format);
    // Every sample, also an MP4 edit list's hidden AAC priming, which a joined stream keeps.
    let input: Vec<_> = media.iter().map(|path| probe_all_packets(path)).collect();
    let input_video: usize = input.iter().map(|packets| packets.video.count()).sum();
    let input_audio: usize = input.iter().map(|packets| packets.audio.count()).sum();
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/native-{format}", server.server_url());
    let pacing = if paced { "realtime" } else { "off" };
    let config = dir.pipeline_file(&pipeline(&url, format, json!({"pacing": pacing})));
    let started = Instant::now();
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 5, "{}", run.stderr());
    assert!(
        run.events("process_started").is_empty(),
        "no process in the publishing path"
    );
    assert_eq!(run.events("rtmp_publishing").len(), 1);
    // Paced: 15 s of media take about 15 s.
    assert!(
        !paced || started.elapsed() >= Duration::from_secs(13),
        "{:?}",
        started.elapsed()
    );
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "one session: {recordings:?}");
    let recorded = probe_packets(&recordings[0]);
    assert_eq!(recorded.video.count(), input_video);
    assert_eq!(recorded.audio.count(), input_audio);
    assert!(recorded.video.monotonic(true));
    assert_eq!(decoder_errors(&recordings[0]), 0);
    // Each fragment lasts its longest track (the audio, 3.02 s): the timeline adds them up.
    let expected = total_duration(&media);
    assert!(
        (recorded.duration() - expected).abs() < 0.1,
        "{} of {expected}",
        recorded.duration()
    );
}

#[test]
fn mp4_fragments_become_one_paced_session_with_every_packet_and_no_ffmpeg() {
    assert_one_session_with_every_packet("mp4", true);
}

#[test]
fn flv_batches_become_one_paced_session_with_every_packet() {
    assert_one_session_with_every_packet("flv", true);
}

/// Unpaced: the conversion is what is new here, the pacing is the same as above.
#[test]
fn mpegts_batches_become_one_session_with_every_packet_and_no_ffmpeg() {
    assert_one_session_with_every_packet("mpegts", false);
}

#[test]
fn a_stream_name_in_use_fails_at_once_in_the_servers_words() {
    let server = RtmpServer::start();
    let mut holder = Publisher::connect(server.port(), "live", "taken", 2_500_000);
    holder.wait_for(|event| matches!(event, streampub_rtmp::PublishEvent::Publishing { .. }));
    let dir = TestDir::new();
    dir.copy_in("in", &short_fragments("mp4")[..1]);
    let url = format!("{}/taken", server.server_url());
    let config = dir.pipeline_file(&pipeline(&url, "mp4", json!({"pacing": "off"})));
    // Built (when a test run has not built it first) before the clock starts.
    streampub_binary();
    let started = Instant::now();
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_ne!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}: {}",
        started.elapsed(),
        run.stderr()
    );
    assert!(run.events("sink_reconnecting").is_empty(), "never retried");
    let failed = run.pipeline_event("pipeline_failed", "channel-1");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("NetStream.Publish.BadName"), "{failed}");
    assert!(
        !error.contains("taken"),
        "the stream key stays out: {error}"
    );
    holder.finish();
}

#[test]
fn a_wrong_application_fails_at_once_naming_it() {
    let server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &short_fragments("mp4")[..1]);
    let url = format!("rtmp://127.0.0.1:{}/nope/key", server.port());
    let config = dir.pipeline_file(&pipeline(&url, "mp4", json!({"pacing": "off"})));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_ne!(run.code(), Some(0), "{}", run.stderr());
    assert!(run.events("sink_reconnecting").is_empty(), "never retried");
    let failed = run.pipeline_event("pipeline_failed", "channel-1");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`nope`"),
        "{failed}"
    );
}

#[test]
fn a_server_crash_mid_run_loses_no_frame_and_repeats_at_most_a_gop() {
    server_crash_mid_run("mp4", video_packet_hashes);
}

/// Through `mpegts-timeline`'s cut and `mpegts-to-flv`: the new session starts at the
/// keyframe with its parameter sets (frames matched by their decoded pictures: the server
/// records AVCC, the input is Annex B).
#[test]
fn an_mpegts_batch_cut_by_a_server_crash_resumes_at_its_keyframe() {
    server_crash_mid_run("mpegts", video_frame_hashes);
}

/// Five `format` fragments published by the rtmp sink, the server killed 6.5 s in and
/// restarted: every frame arrives, and the crash repeats at most a GOP.
fn server_crash_mid_run(format: &str, hashes: FrameHashes) {
    let media = short_fragments(format);
    let (content, position) = input_frames(&media, hashes);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let url = format!("{}/crash-{format}", server.server_url());
    let config = dir.pipeline_file(&pipeline(
        &url,
        format,
        json!({"reconnect_delay": "500ms", "max_reconnect_delay": "1s", "max_reconnect_attempts": 20}),
    ));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "rtmp_publishing", |_| true);
    // 6.5 s into the 15 s: inside the third fragment, between its keyframes.
    std::thread::sleep(Duration::from_millis(6_500));
    server.kill();
    running.wait_for_event(TIMEOUT, "sink_reconnecting", |_| true);
    server.restart();
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 5, "{}", run.stderr());
    server.stop();
    let stretches = recorded_stretches(&server, &position, hashes);
    let repeats = repeats_between_sessions(&stretches, content.len(), FRAME);
    println!("{format}: recorded frames per session {stretches:?}; repeated {repeats:.2?} s");
    assert_eq!(repeats.len(), 1, "{stretches:?}");
    // At most a GOP (2 s) and a frame: confirmation is the server's acknowledgements, with no
    // margin.
    assert!(repeats[0] <= 2.04 + 0.3, "repeated {:.2} s", repeats[0]);
}

/// The batches users deliver (30 s, 2-s GOPs, 2 Mbit/s), the server killed at a seeded moment
/// inside each of two and back 1-3 s later: every frame arrives, and each outage repeats at
/// most a GOP and what the server took after its last acknowledgement (less than a window of
/// 64 KiB: a quarter second at 2 Mbit/s), where `ffmpeg-rtmp` repeated up to the whole batch.
#[test]
fn outages_inside_30_s_batches_lose_no_frame_and_repeat_at_most_a_gop() {
    let media = fragments(BATCHES);
    let media = &media[..2];
    let (content, position) = input_frames(media, video_packet_hashes);
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", media);
    let url = format!("{}/batches", server.server_url());
    let config = dir.pipeline_file(&pipeline(
        &url,
        "mp4",
        json!({"reconnect_delay": "500ms", "max_reconnect_delay": "1s", "max_reconnect_attempts": 20}),
    ));
    let mut random = Random(SEED);
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    running.wait_for_event(TIMEOUT, "rtmp_publishing", |_| true);
    let started = Instant::now();
    for batch in 0..2 {
        // Between 4 and 26 s into the batch: never at its first or last keyframe.
        let due = started + Duration::from_millis(30_000 * batch + 4_000 + random.below(22_000));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let reconnects = running.events_so_far("sink_reconnecting").len();
        server.kill();
        let deadline = Instant::now() + TIMEOUT;
        while running.events_so_far("sink_reconnecting").len() == reconnects {
            assert!(
                Instant::now() < deadline,
                "no reconnect after outage {batch}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1_000 + random.below(2_000)));
        server.restart();
    }
    let run = running.wait(TIMEOUT * 2);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published(), ["batch-0.mp4", "batch-1.mp4"]);
    let resumed = run.events("fragment_resent");
    server.stop();
    let stretches = recorded_stretches(&server, &position, video_packet_hashes);
    let repeats = repeats_between_sessions(&stretches, content.len(), FRAME);
    println!("seed {SEED}: frames per session {stretches:?}; repeated {repeats:.2?} s");
    assert_eq!(repeats.len(), 2, "a session per outage: {stretches:?}");
    for repeat in &repeats {
        assert!(*repeat <= 2.04 + 0.3, "an outage repeated {repeat:.2} s");
    }
    // Each batch was resumed from inside, not from its start.
    let inside = resumed
        .iter()
        .filter(|event| event["resumed_at_ms"].as_u64().is_some_and(|at| at > 0))
        .count();
    assert_eq!(inside, 2, "{resumed:?}");
}

#[test]
fn a_reload_that_changes_another_pipeline_keeps_the_session() {
    let media = short_fragments("mp4");
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.mkdir("in");
    dir.mkdir("other");
    let url = format!("{}/kept", server.server_url());
    let file = |other_settle: &str| {
        json!({"pipelines": [
            {
                "name": "channel-1",
                "source": {"type": "directory", "path": "in", "settle": "0s"},
                "sink": {"type": "rtmp", "url": url},
            },
            {
                "name": "other",
                "source": {"type": "directory", "path": "other", "settle": other_settle},
                "sink": {"type": "null"},
            },
        ]})
    };
    let config = dir.pipeline_file(&file("0s"));
    let running = Running::start(
        &streampub_binary(),
        &["run", "--watch", config.to_str().unwrap()],
    );
    let rename_in = |index: usize| {
        let staged = dir.join(&format!("batch-{index}.mp4"));
        std::fs::copy(&media[index], &staged).unwrap();
        std::fs::rename(&staged, dir.join(&format!("in/batch-{index}.mp4"))).unwrap();
    };
    rename_in(0);
    rename_in(1);
    running.wait_for_event(TIMEOUT, "rtmp_publishing", |_| true);
    dir.pipeline_file(&file("1s"));
    let reloaded = running.wait_for_event(TIMEOUT, "config_reloaded", |_| true);
    assert_eq!(reloaded["restarted"], "other");
    assert_eq!(reloaded["unchanged"], "channel-1");
    for index in 2..5 {
        rename_in(index);
    }
    running.wait_for_event(TIMEOUT, "fragment_published", |event| {
        event["fragment"] == "batch-4.mp4"
    });
    running.signal(streampub_tests::Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(
        run.events("rtmp_publishing").len(),
        1,
        "one session throughout"
    );
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let input_video: usize = media
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum();
    // Filler covered the waits between the batches, in the same session.
    let recorded = probe_packets(&recordings[0]);
    assert!(
        recorded.video.count() >= input_video,
        "{}",
        recorded.video.count()
    );
    assert!(recorded.video.monotonic(true));
    assert_eq!(decoder_errors(&recordings[0]), 0);
}

#[test]
fn rtmps_refuses_an_unknown_certificate_by_default_and_trusts_tls_ca_file() {
    let media = short_fragments("mp4");
    let mut server = RtmpServer::start();
    let tunnel = TlsTunnel::start(server.port());
    let url = format!("rtmps://127.0.0.1:{}/live/secure", tunnel.port());
    let dir = TestDir::new();
    dir.copy_in("in", &media[..2]);
    let options = json!({"pacing": "off", "reconnect_delay": "200ms", "max_reconnect_attempts": 5});

    // A self-signed certificate: refused at the first attempt, the error names both options.
    let refused = run_pipeline_file(
        &dir.pipeline_file(&pipeline(&url, "mp4", options.clone())),
        TIMEOUT,
    );
    assert_certificate_refused(&refused);

    // A plain RTMP server on an rtmps:// URL never answers the ClientHello: fatal at
    // connect_timeout, naming rtmp://.
    let plain = format!("rtmps://127.0.0.1:{}/live/secure", server.port());
    let no_tls = run_pipeline_file(
        &dir.pipeline_file(&pipeline(
            &plain,
            "mp4",
            merged(options.clone(), json!({"connect_timeout": "2s"})),
        )),
        TIMEOUT,
    );
    assert_eq!(no_tls.code(), Some(1), "{}", no_tls.stderr());
    assert!(
        no_tls.events("sink_reconnecting").is_empty(),
        "{}",
        no_tls.stderr()
    );
    let failed = no_tls.pipeline_event("pipeline_failed", "channel-1");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("TLS handshake") && error.contains("rtmp://"),
        "{error}"
    );

    // Trusted, but for another host name: refused, naming the host.
    let other_name = format!("rtmps://localhost:{}/live/secure", tunnel.port());
    let ca_file = json!({"tls_ca_file": tunnel.certificate()});
    let misnamed = run_pipeline_file(
        &dir.pipeline_file(&pipeline(
            &other_name,
            "mp4",
            merged(options.clone(), ca_file.clone()),
        )),
        TIMEOUT,
    );
    assert_eq!(misnamed.code(), Some(1), "{}", misnamed.stderr());
    assert!(misnamed.events("sink_reconnecting").is_empty());
    let failed = misnamed.pipeline_event("pipeline_failed", "channel-1");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`localhost`"),
        "{failed}"
    );
    assert!(server.recordings().is_empty(), "nothing reached the server");

    // Its certificate as the CA: published, every packet, no process.
    let trusted = run_pipeline_file(
        &dir.pipeline_file(&pipeline(&url, "mp4", merged(options, ca_file))),
        TIMEOUT,
    );
    assert_eq!(trusted.code(), Some(0), "{}", trusted.stderr());
    assert_eq!(trusted.published().len(), 2, "{}", trusted.stderr());
    assert!(trusted.events("process_started").is_empty());
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let expected: usize = media[..2]
        .iter()
        .map(|path| probe_packets(path).video.count())
        .sum();
    assert_eq!(probe_packets(&recordings[0]).video.count(), expected);
    assert_eq!(decoder_errors(&recordings[0]), 0);
}
