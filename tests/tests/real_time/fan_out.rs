//! Fan-out (`sinks:`): one channel to two nginx-rtmp servers and an append archive, paced. A
//! server killed for 40 s stalls none of the others; the destination on it resumes where it
//! stopped (`required: true`, the source's `on_done` waiting for it) or at the live edge
//! (`required: false`, skipping whole fragments); a reload that adds a destination and removes
//! one leaves the others' sessions alone; a kill -9 and a restart continue every destination;
//! three destinations read each file once.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::http::{parse_prometheus_text, HttpClient};
use streampub_tests::media::{
    assert_every_packet_once, decoder_errors, probe_all_packets, probe_packets, small_fragments,
    video_packet_hashes,
};
use streampub_tests::recordings::{input_frames, repeats_between_sessions, stretches_of};
use streampub_tests::rtmp::{free_port, RtmpServer};
use streampub_tests::{events, published_by, streampub_binary, Random, Running, Signal, TestDir};

const TIMEOUT: Duration = Duration::from_secs(240);
/// 25 fps.
const FRAME: f64 = 0.04;
/// Seeds the moment of the kill.
const SEED: u64 = 24;
/// The most a kill -9 and a restart repeat to an RTMP destination, in seconds (see the test).
const KILL_REPEAT: f64 = 2.04 + 1.0 + 1.31 + 0.25;

/// An `rtmp` destination named `name`, publishing the stream `name` on `server`.
fn rtmp(name: &str, server: &RtmpServer, required: bool) -> Value {
    json!({
        "type": "rtmp", "name": name, "required": required,
        "url": format!("{}/{name}", server.server_url()),
        "reconnect_delay": "500ms", "max_reconnect_delay": "2s", "max_reconnect_attempts": 200,
    })
}

/// The append archive, made one MP4 stream by its own `fmp4-timeline`.
fn archive(path: &Path) -> Value {
    json!({
        "type": "file", "name": "archive", "path": path, "mode": "append",
        "stages": [{"type": "fmp4-timeline"}],
    })
}

fn files_in(directory: &Path) -> usize {
    std::fs::read_dir(directory).map_or(0, |entries| entries.count())
}

/// The largest step between two video frames of `recording`, in seconds.
fn largest_video_step(recording: &Path) -> f64 {
    let packets = probe_packets(recording);
    packets
        .video
        .dts
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max)
}

#[test]
fn a_destination_down_for_40_s_stalls_none_of_the_others() {
    // 80 s of media in 5-s fragments, 2-s GOPs: the outage from 8 to 48 s, and B back for
    // the last 30.
    let media = small_fragments(16, 5, &["--bitrate", "400k"]);
    let (content, position) = input_frames(&media, video_packet_hashes);
    let mut server_a = RtmpServer::start();
    let mut server_b = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let archive_path = dir.join("archive.mp4");
    let address = format!("127.0.0.1:{}", free_port());
    let config = dir.pipeline_file(&json!({
        "metrics": {"listen": address},
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s",
                       "on_done": "move", "done_dir": "done"},
            "sinks": [
                rtmp("a", &server_a, true),
                rtmp("b-live", &server_b, false),
                rtmp("b-all", &server_b, true),
                archive(&archive_path),
            ],
        }],
    }));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    for sink in ["a", "b-live", "b-all"] {
        running.wait_for_event(TIMEOUT, "rtmp_publishing", |event| event["sink"] == sink);
    }
    std::thread::sleep(Duration::from_secs(8));
    server_b.kill();
    let killed = Instant::now();
    for sink in ["b-live", "b-all"] {
        running.wait_for_event(TIMEOUT, "sink_behind", |event| event["sink"] == sink);
    }

    // 30 s into the outage: A goes on, B's required destination is behind and holds the
    // files it has not confirmed in the source's directory.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(killed.elapsed()));
    let health = HttpClient::new(&address).get("/healthz").json();
    let sinks = &health["pipelines"]["channel-1"]["sinks"];
    assert_eq!(sinks["a"]["state"], "live", "{health}");
    assert_eq!(sinks["archive"]["state"], "live", "{health}");
    assert_ne!(sinks["b-all"]["state"], "live", "{health}");
    assert!(
        sinks["b-all"]["lag_fragments"].as_u64().unwrap() >= 5,
        "{health}"
    );
    // Not ready while a destination is in an outage; alive all the same.
    let client = HttpClient::new(&address);
    let ready = client.get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    let reasons = ready.json()["reasons"].to_string();
    assert!(
        reasons.contains("channel-1/b-all: reconnecting"),
        "{reasons}"
    );
    assert_eq!(client.get("/livez").status, 200);
    let logs = running.logs_so_far();
    assert!(published_by(&logs, "a").len() >= 6, "A went on");
    let moved = files_in(&dir.join("done"));
    assert!(
        moved <= published_by(&logs, "b-all").len() && moved <= 2,
        "only what b-all confirmed before the outage is moved: {moved}"
    );

    std::thread::sleep(Duration::from_secs(40).saturating_sub(killed.elapsed()));
    server_b.restart();
    let caught_up =
        running.wait_for_event(TIMEOUT, "sink_caught_up", |event| event["sink"] == "b-live");
    assert!(
        caught_up["fragments_skipped"].as_u64().unwrap() >= 1,
        "{caught_up}"
    );
    let metrics = parse_prometheus_text(&HttpClient::new(&address).get("/metrics").body);
    let skipped = metrics
        .get("streampub_fragments_skipped_total{pipeline=\"channel-1\",sink=\"b-live\"}")
        .copied()
        .unwrap_or_default();
    assert!(skipped >= 1.0, "skipped fragments counted: {metrics:?}");

    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let names: Vec<String> = media
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for sink in ["a", "b-all", "archive"] {
        assert_eq!(published_by(&run.logs, sink), names, "{sink}");
    }
    assert!(published_by(&run.logs, "b-live").len() < names.len());
    assert_eq!(
        files_in(&dir.join("done")),
        names.len(),
        "every file moved at the end"
    );
    assert_eq!(files_in(&dir.join("in")), 0);
    server_a.stop();
    server_b.stop();

    // A: one session with every frame, no gap beyond a frame, no filler.
    let recorded_a = server_a.recordings_of("a");
    assert_eq!(recorded_a.len(), 1, "one session on A: {recorded_a:?}");
    let stretches = stretches_of(&recorded_a, &position, video_packet_hashes);
    assert_eq!(stretches, [(0, content.len() - 1)]);
    assert!(largest_video_step(&recorded_a[0]) <= 2.0 * FRAME + 0.001);
    let filled: Vec<Value> = run
        .events("filler_started")
        .into_iter()
        .filter(|event| event["sink"] == "a")
        .collect();
    assert!(filled.is_empty(), "A never waited: {filled:?}");
    assert_every_packet_once(&archive_path, &media, "archive");

    // B, required: every frame, over the sessions before and after the outage.
    let recorded_b = server_b.recordings_of("b-all");
    let stretches = stretches_of(&recorded_b, &position, video_packet_hashes);
    let repeats = repeats_between_sessions(&stretches, content.len(), FRAME);
    println!("b-all: sessions {stretches:?}, repeated {repeats:.2?} s");
    assert!(
        repeats.iter().all(|repeat| *repeat <= 2.04 + 0.3),
        "{repeats:?}"
    );

    // B, not required: clean sessions, from keyframes, that skip what it missed and reach the
    // end (with filler while it waited to rejoin at a fragment's start).
    let recorded_live = server_b.recordings_of("b-live");
    let mut frames = Vec::new();
    for recording in &recorded_live {
        assert_eq!(decoder_errors(recording), 0, "{}", recording.display());
        let packets = probe_packets(recording);
        assert_eq!(packets.video.keyframes.first(), Some(&true));
        frames.extend(
            video_packet_hashes(recording)
                .iter()
                .filter_map(|hash| position.get(hash)),
        );
    }
    frames.sort_unstable();
    frames.dedup();
    assert!(
        frames.len() < content.len(),
        "b-live skipped what it missed"
    );
    assert_eq!(
        frames.last(),
        Some(&(content.len() - 1)),
        "b-live reached the end"
    );
}

/// The second pipeline file: `b` removed, `c` added.
fn reloaded(servers: (&RtmpServer, &RtmpServer), archive_path: &Path, state: &Path) -> Value {
    json!({
        "state_dir": state,
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sinks": [rtmp("a", servers.0, true), archive(archive_path), rtmp("c", servers.1, true)],
        }],
    })
}

#[test]
fn a_reload_and_a_kill_keep_every_destination_in_place() {
    // 27 s of media in 3-s fragments.
    let media = small_fragments(9, 3, &["--bitrate", "400k"]);
    let (content, position) = input_frames(&media, video_packet_hashes);
    let mut server_a = RtmpServer::start();
    let mut server_b = RtmpServer::start();
    let mut server_c = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let archive_path = dir.join("archive.mp4");
    let state = dir.join("state");
    let config = dir.pipeline_file(&json!({
        "state_dir": state,
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sinks": [rtmp("a", &server_a, true), rtmp("b", &server_b, true), archive(&archive_path)],
        }],
    }));
    let running = Running::start(
        &streampub_binary(),
        &["run", "--watch", config.to_str().unwrap()],
    );
    running.wait_for_event(TIMEOUT, "rtmp_publishing", |event| event["sink"] == "a");
    std::thread::sleep(Duration::from_secs(4));
    dir.pipeline_file(&reloaded((&server_a, &server_c), &archive_path, &state));
    let reload = running.wait_for_event(TIMEOUT, "config_reloaded", |_| true);
    assert_eq!(
        reload["reconfigured"], "-channel-1/b,+channel-1/c",
        "{reload}"
    );
    running.wait_for_event(TIMEOUT, "rtmp_publishing", |event| event["sink"] == "c");
    // A kill at a seeded moment, 2 to 6 s after c started.
    let mut random = Random(SEED);
    std::thread::sleep(Duration::from_millis(2_000 + random.below(4_000)));
    let logs = running.logs_so_far();
    running.signal(Signal::KILL);
    let killed = running.wait(TIMEOUT);
    assert_eq!(killed.code(), None, "killed by the signal");
    let sessions_of = |logs: &[String], sink: &str| {
        events(logs, "rtmp_publishing")
            .into_iter()
            .filter(|event| event["sink"] == sink)
            .count()
    };
    assert_eq!(
        sessions_of(&logs, "a"),
        1,
        "the reload left A's session alone"
    );
    let reconnects: Vec<Value> = events(&logs, "sink_reconnecting");
    assert!(reconnects.is_empty(), "{reconnects:?}");

    let run = streampub_tests::run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let names: Vec<String> = media
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for sink in ["a", "archive"] {
        let mut published = published_by(&killed.logs, sink);
        published.extend(published_by(&run.logs, sink));
        assert_eq!(
            published, names,
            "{sink}: every fragment once over both runs"
        );
    }
    server_a.stop();
    server_b.stop();
    server_c.stop();
    assert_every_packet_once(&archive_path, &media, "archive");
    // A: a session per run; the second repeats what the first sent after the last save of its
    // progress: at most a GOP (2 s), the interval between saves (1 s), a chunk of media (64 KiB:
    // 1.3 s at 400 kbit/s) and the acknowledgement window (0.25 s).
    let stretches = stretches_of(&server_a.recordings_of("a"), &position, video_packet_hashes);
    let repeats = repeats_between_sessions(&stretches, content.len(), FRAME);
    println!("a: sessions {stretches:?}, repeated {repeats:.2?} s");
    assert_eq!(repeats.len(), 1, "{stretches:?}");
    assert!(repeats[0] <= KILL_REPEAT, "{repeats:?}");
    // B stopped at the reload; C started there and reached the end.
    assert_eq!(server_b.recordings_of("b").len(), 1);
    let recorded_c = server_c.recordings_of("c");
    let stretches = stretches_of(&recorded_c, &position, video_packet_hashes);
    assert!(
        stretches[0].0 > 0,
        "c joined at the live edge: {stretches:?}"
    );
    assert_eq!(stretches.last().unwrap().1, content.len() - 1);
    // From there on nothing lost, and the restart repeats no more than A's.
    for pair in stretches.windows(2) {
        let ((_, earlier_end), (later_start, _)) = (pair[0], pair[1]);
        assert!(
            later_start <= earlier_end + 1,
            "c lost frames: {stretches:?}"
        );
        let repeated = (earlier_end + 1 - later_start) as f64 * FRAME;
        assert!(
            repeated <= KILL_REPEAT,
            "c repeated {repeated:.2} s: {stretches:?}"
        );
    }
}

/// Bytes `pid` has read (`rchar`: every read, from the page cache or the disk).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|line| line.strip_prefix("rchar: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

#[test]
fn three_destinations_read_each_file_once() {
    let media = small_fragments(6, 4, &["--bitrate", "2M"]);
    let total: u64 = media
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let config = dir.pipeline_file(&json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "settle": "0s"},
            "sinks": [
                {"type": "null", "name": "one"},
                {"type": "null", "name": "two"},
                archive(&dir.join("archive.mp4")),
            ],
        }],
    }));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let deadline = Instant::now() + TIMEOUT;
    while running.events_so_far("fragment_published").len() < 3 * media.len() {
        assert!(Instant::now() < deadline, "not all published");
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = bytes_read(running.pid());
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    println!(
        "3 destinations: {read} bytes read for {total} bytes of fragments ({:.2}x)",
        read as f64 / total as f64
    );
    // The files once, and a little for the pipeline file and the state.
    assert!(read < total + total / 10 + 256 * 1024, "{read} of {total}");
}

/// Every kind of sink as a destination of one fan-out, unpaced: each gets every fragment.
#[test]
fn every_kind_of_sink_is_a_destination() {
    let media = small_fragments(3, 2, &["--bitrate", "400k"]);
    let input_video: usize = media
        .iter()
        .map(|path| probe_all_packets(path).video.count())
        .sum();
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let piped = dir.join("piped.bin");
    let config = dir.pipeline_file(&json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sinks": [
                {"type": "rtmp", "url": format!("{}/native", server.server_url()), "pacing": "off"},
                {"type": "ffmpeg-rtmp", "url": format!("{}/ffmpeg", server.server_url()), "pacing": "off"},
                {"type": "file", "path": "copies", "mode": "per_fragment"},
                {"type": "process", "command": ["sh", "-c", format!("cat > {}", piped.display())]},
                {"type": "null", "required": false},
            ],
        }],
    }));
    let run = streampub_tests::run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    for sink in ["rtmp", "ffmpeg-rtmp", "file", "process", "null"] {
        assert_eq!(published_by(&run.logs, sink).len(), media.len(), "{sink}");
    }
    server.stop();
    for stream in ["native", "ffmpeg"] {
        let recordings = server.recordings_of(stream);
        assert_eq!(recordings.len(), 1, "{stream}: one session");
        assert_eq!(
            probe_packets(&recordings[0]).video.count(),
            input_video,
            "{stream}"
        );
        assert_eq!(decoder_errors(&recordings[0]), 0, "{stream}");
    }
    let mut joined = Vec::new();
    for path in &media {
        let copy = dir.join("copies").join(path.file_name().unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(path).unwrap());
        joined.extend(std::fs::read(path).unwrap());
    }
    assert!(
        std::fs::read(&piped).unwrap() == joined,
        "the process got every byte in order"
    );
}

/// A required destination that cannot reach its server holds the others back once it is
/// `max_lag` fragments behind (the status says why), and everything goes out when it is back.
#[test]
fn a_required_destination_max_lag_behind_holds_the_others() {
    let media = small_fragments(8, 1, &["--bitrate", "400k"]);
    let mut server = RtmpServer::reserve();
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let address = format!("127.0.0.1:{}", free_port());
    let config = dir.pipeline_file(&json!({
        "metrics": {"listen": address},
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "sinks": [
                {"type": "null", "name": "fast"},
                {"type": "rtmp", "name": "late", "url": format!("{}/late", server.server_url()),
                 "pacing": "off", "max_lag": 2, "reconnect_delay": "200ms",
                 "max_reconnect_delay": "500ms", "max_reconnect_attempts": 200},
            ],
        }],
    }));
    let running = Running::start(&streampub_binary(), &["run", config.to_str().unwrap()]);
    let waiting = running.wait_for_event(TIMEOUT, "pipeline_waiting", |_| true);
    assert_eq!(waiting["sink"], "late", "{waiting}");
    // Held: a second later the fast destination has got no further.
    let held = published_by(&running.logs_so_far(), "fast").len();
    std::thread::sleep(Duration::from_secs(1));
    let logs = running.logs_so_far();
    assert_eq!(published_by(&logs, "fast").len(), held, "the others wait");
    assert!(held < media.len(), "{held} published before waiting");
    let health = HttpClient::new(&address).get("/healthz").json();
    let why = health["pipelines"]["channel-1"]["waiting_for"].to_string();
    assert!(
        why.contains("late") && why.contains("max_lag 2"),
        "{health}"
    );

    server.restart();
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(!run.events("pipeline_resumed").is_empty());
    for sink in ["fast", "late"] {
        assert_eq!(published_by(&run.logs, sink).len(), media.len(), "{sink}");
    }
    server.stop();
    let recordings = server.recordings_of("late");
    let video: usize = recordings
        .iter()
        .map(|recording| probe_packets(recording).video.count())
        .sum();
    let input: usize = media
        .iter()
        .map(|path| probe_all_packets(path).video.count())
        .sum();
    assert!(video >= input, "late got every frame: {video} of {input}");
}
