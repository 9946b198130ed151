//! The `s3` source against a real S3-compatible store on loopback (moto in server mode):
//! objects uploaded while it runs reach nginx-rtmp and an append archive as one session in key
//! order; a kill -9 mid-object and a restart lose and repeat nothing; 1,200 keys are listed past
//! the first page and published in order, then moved under `done_prefix`; refused credentials
//! and a denied bucket stop it at once with the store's words; a store that goes away and
//! comes back costs nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampub_tests::media::{
    assert_every_packet_once, decoder_errors, fragments, probe_all_packets, small_fragments,
    video_packet_hashes,
};
use streampub_tests::object_store::{any_keys, AccessKeys, MotoServer, StoreBucket};
use streampub_tests::recordings::{input_frames, repeats_between_sessions, stretches_of};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{published_by, streampub_binary, Finished, Random, Running, Signal, TestDir};

const TIMEOUT: Duration = Duration::from_secs(240);
const BUCKET: &str = "media";
/// Seeds the moment of the kill.
const SEED: u64 = 26;

fn credentials(keys: &AccessKeys) -> [(&'static str, String); 3] {
    [
        ("AWS_ACCESS_KEY_ID", keys.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", keys.secret.clone()),
        // The shared credentials file of whoever runs the tests is not read.
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_owned()),
    ]
}

fn start(config: &Path, keys: &AccessKeys) -> Running {
    let env = credentials(keys);
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    Running::start_with_env(
        &streampub_binary(),
        &["run", config.to_str().unwrap()],
        &env,
    )
}

fn run_to_end(config: &Path, keys: &AccessKeys) -> Finished {
    start(config, keys).wait(TIMEOUT)
}

/// The `s3` source on `endpoint`'s bucket, under `in/`.
fn source(endpoint: &str, extra: Value) -> Value {
    let mut source = json!({
        "type": "s3", "bucket": BUCKET, "prefix": "in/", "endpoint": endpoint,
        "poll_interval": "200ms", "retry_for": "60s",
    });
    source
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    source
}

/// `batch-0.mp4` … `batch-<count - 1>.mp4`.
fn batch_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("batch-{index}.mp4"))
        .collect()
}

/// Destinations `live` (the stream `channel-1` on `server`, with `pacing`) and `archive` (an
/// append archive at `archive`, one MP4 stream by its own `fmp4-timeline`).
fn live_and_archive(server: &RtmpServer, archive: &Path, pacing: &str) -> Value {
    json!([
        {"type": "rtmp", "name": "live", "url": format!("{}/channel-1", server.server_url()),
         "pacing": pacing},
        {"type": "file", "name": "archive", "path": archive, "mode": "append",
         "stages": [{"type": "fmp4-timeline"}]},
    ])
}

/// Waits until `running` has logged `count` confirmations (of all its destinations).
fn wait_for_published(running: &Running, count: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while running.published_so_far().len() < count {
        assert!(
            Instant::now() < deadline,
            "not all published: {:?}",
            running.logs_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn upload(bucket: &StoreBucket, key: &str, file: &Path) {
    bucket.put(key, &std::fs::read(file).unwrap());
}

#[test]
fn objects_uploaded_while_it_runs_reach_nginx_and_the_archive_as_one_session_in_key_order() {
    let media = small_fragments(20, 1, &["--bitrate", "300k"]);
    let store = MotoServer::start();
    let bucket = store.bucket(BUCKET, &any_keys());
    bucket.create();
    // Key order is numeric-aware: batch-10 comes after batch-9, not after batch-1 (the store
    // lists in byte order).
    let key = |index: usize| format!("in/batch-{index}.mp4");
    // Twelve before the start: one listing holds batch-2 and batch-10.
    for (index, file) in media.iter().enumerate().take(12) {
        upload(&bucket, &key(index), file);
    }
    let server = RtmpServer::start();
    let dir = TestDir::new();
    let archive = dir.join("archive.mp4");
    let config = dir.pipeline_file(&json!({
        "state_dir": "state",
        "pipelines": [{
            "name": "channel-1",
            "source": source(&store.endpoint(), json!({})),
            "sinks": live_and_archive(&server, &archive, "off"),
        }],
    }));
    let running = start(&config, &any_keys());
    running.wait_for_event(TIMEOUT, "fragment_published", |_| true);
    for (index, file) in media.iter().enumerate().skip(12) {
        upload(&bucket, &key(index), file);
        std::thread::sleep(Duration::from_millis(150));
    }
    wait_for_published(&running, 2 * media.len());
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let expected = batch_names(media.len());
    assert_eq!(
        published_by(&run.logs, "live"),
        expected,
        "key order, each once"
    );
    assert_eq!(
        published_by(&run.logs, "archive"),
        expected,
        "key order, each once"
    );
    assert_eq!(run.events("rtmp_publishing").len(), 1, "one session");
    let recordings = server.recordings_of("channel-1");
    assert_eq!(recordings.len(), 1, "one session: {recordings:?}");
    let recorded = probe_all_packets(&recordings[0]);
    let input: Vec<_> = media.iter().map(|path| probe_all_packets(path)).collect();
    assert_eq!(
        recorded.video.count(),
        input
            .iter()
            .map(|packets| packets.video.count())
            .sum::<usize>()
    );
    assert_eq!(
        recorded.audio.count(),
        input
            .iter()
            .map(|packets| packets.audio.count())
            .sum::<usize>()
    );
    assert_eq!(decoder_errors(&recordings[0]), 0);
    assert_every_packet_once(&archive, &media, "archive");
}

/// Four 8-s batches of about 3 MB: each is read in two ranged GETs.
const LARGE_BATCHES: &[&str] = &[
    "--count",
    "4",
    "--seconds",
    "8",
    "--size",
    "640x360",
    "--bitrate",
    "3000k",
    "--fps",
    "25",
    "--gop",
    "2",
    "--audio-bitrate",
    "128k",
];

#[test]
fn a_kill_9_mid_object_and_a_restart_lose_and_repeat_nothing() {
    let media = fragments(LARGE_BATCHES);
    let (content, position) = input_frames(&media, video_packet_hashes);
    let store = MotoServer::start();
    let bucket = store.bucket(BUCKET, &any_keys());
    bucket.create();
    for (index, file) in media.iter().enumerate() {
        upload(&bucket, &format!("in/batch-{index}.mp4"), file);
    }
    let server = RtmpServer::start();
    let dir = TestDir::new();
    let archive = dir.join("archive.mp4");
    // The live destination is paced, so reading a batch lasts as long as it plays out and
    // the kill lands inside one.
    let config = dir.pipeline_file(&json!({
        "state_dir": "state",
        "pipelines": [{
            "name": "channel-1",
            "source": source(&store.endpoint(), json!({"follow": false})),
            "sinks": live_and_archive(&server, &archive, "realtime"),
        }],
    }));
    let mut random = Random(SEED);
    let running = start(&config, &any_keys());
    running.wait_for_event(TIMEOUT, "rtmp_publishing", |_| true);
    std::thread::sleep(Duration::from_millis(3_000 + random.below(18_000)));
    running.signal(Signal::KILL);
    let killed = running.wait(TIMEOUT);
    let restarted = run_to_end(&config, &any_keys());
    assert_eq!(restarted.code(), Some(0), "{}", restarted.stderr());
    for sink in ["live", "archive"] {
        let mut published = published_by(&killed.logs, sink);
        published.extend(published_by(&restarted.logs, sink));
        assert_eq!(
            published,
            batch_names(media.len()),
            "{sink}: every batch confirmed once, in order"
        );
    }
    assert_every_packet_once(&archive, &media, "after kill -9 and restart");
    // The live destination: two sessions that together hold every frame, the second
    // repeating at most what the first had sent unconfirmed (a GOP and a window).
    let stretches = stretches_of(
        &server.recordings_of("channel-1"),
        &position,
        video_packet_hashes,
    );
    let repeats = repeats_between_sessions(&stretches, content.len(), 0.04);
    assert!(
        repeats.iter().all(|repeat| *repeat <= 2.04 + 1.0 + 0.3),
        "{repeats:?}"
    );
    // Read in ranges (206 answers) of 2 MiB, two per object, never as one GET of a whole
    // object; the two destinations share them, and the restart reads again at most the
    // batches the kill interrupted.
    let ranged = store.requests_containing("\" 206 ");
    assert!(
        (2 * media.len()..=2 * media.len() + 6).contains(&ranged),
        "{ranged} ranged GETs: {}",
        store.log()
    );
}

/// An object replaced while it is read fails instead of splicing two uploads; the new upload
/// is then published as an object of its own.
#[test]
fn an_object_replaced_mid_read_fails_and_its_new_upload_is_published() {
    let media = fragments(LARGE_BATCHES);
    let store = MotoServer::start();
    let bucket = store.bucket(BUCKET, &any_keys());
    bucket.create();
    for (index, file) in media.iter().enumerate().take(3) {
        upload(&bucket, &format!("in/batch-{index}.mp4"), file);
    }
    let server = RtmpServer::start();
    let dir = TestDir::new();
    let config = dir.pipeline_file(&json!({
        "pipelines": [{
            "name": "channel-1",
            "source": source(&store.endpoint(), json!({})),
            // Paced: the first batch's second range is asked for seconds after its first.
            "sink": {"type": "rtmp", "url": format!("{}/channel-1", server.server_url())},
        }],
    }));
    let running = start(&config, &any_keys());
    // Replaced as soon as its first range is asked for: the second is asked for seconds later,
    // once the first 2 MiB have nearly played out.
    let deadline = Instant::now() + TIMEOUT;
    while store.requests_containing("GET /media/in/batch-0.mp4") == 0 {
        assert!(
            Instant::now() < deadline,
            "batch-0 never read: {}",
            store.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    upload(&bucket, "in/batch-0.mp4", &media[3]);
    wait_for_published(&running, 3);
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    let failed = run.events("fragment_failed");
    assert_eq!(failed.len(), 1, "{}", run.stderr());
    assert_eq!(failed[0]["fragment"], "batch-0.mp4");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("PreconditionFailed"),
        "{}",
        failed[0]
    );
    let mut published = run.published();
    published.sort();
    assert_eq!(published, vec!["batch-0.mp4", "batch-1.mp4", "batch-2.mp4"]);
}

#[test]
fn twelve_hundred_keys_are_published_in_order_and_moved_under_done_prefix() {
    let store = MotoServer::start();
    let bucket = store.bucket(BUCKET, &any_keys());
    bucket.create();
    let count = 1_200;
    // Uploaded in an order of their own: the listing's byte order is not key order either.
    let mut order: Vec<usize> = (0..count).collect();
    let mut random = Random(SEED);
    for index in (1..count).rev() {
        order.swap(index, random.below(index as u64 + 1) as usize);
    }
    for &index in &order {
        bucket.put(&format!("in/part-{index}"), format!("{index}\n").as_bytes());
    }
    let dir = TestDir::new();
    let config = dir.pipeline_file(&json!({
        "state_dir": "state",
        "pipelines": [{
            "name": "parts",
            "source": source(&store.endpoint(),
                             json!({"follow": false, "on_done": "move", "done_prefix": "done/"})),
            "sink": {"type": "file", "path": "parts.txt", "mode": "append"},
        }],
    }));
    let run = run_to_end(&config, &any_keys());
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let expected: String = (0..count).map(|index| format!("{index}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(dir.join("parts.txt")).unwrap(),
        expected
    );
    assert_eq!(run.published().len(), count);
    assert!(run.events("fragment_failed").is_empty(), "{}", run.stderr());
    assert_eq!(bucket.keys("in/"), Vec::<String>::new(), "all moved");
    let mut done = bucket.keys("done/");
    done.sort();
    let mut expected_done: Vec<String> = (0..count)
        .map(|index| format!("done/part-{index}"))
        .collect();
    expected_done.sort();
    assert_eq!(done, expected_done);
    // Nothing is published again by a second run.
    let again = run_to_end(&config, &any_keys());
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    assert!(again.published().is_empty());
}

#[test]
fn refused_credentials_and_a_denied_bucket_stop_it_at_once_with_the_stores_words() {
    // Six requests set up users (four for one allowed on S3, two for one allowed nothing);
    // after that the store checks every signature as AWS does.
    let store = MotoServer::start_checking_credentials(6);
    let allowed = store.create_user("publisher", true);
    let denied = store.create_user("stranger", false);
    let media = small_fragments(1, 1, &[]);
    // At the bucket's top: moto's signature check mistakes a prefix with a `/` in it (boto3's
    // own requests fail there too).
    store.create_bucket_with_object(&allowed, BUCKET, "batch-0.mp4", &media[0]);
    let dir = TestDir::new();
    let config = dir.pipeline_file(&json!({
        "pipelines": [{
            "name": "channel-1",
            "source": source(&store.endpoint(), json!({"follow": false, "prefix": ""})),
            "sink": {"type": "null"},
        }],
    }));
    let published = run_to_end(&config, &allowed);
    assert_eq!(published.code(), Some(0), "{}", published.stderr());
    assert_eq!(published.published(), vec!["batch-0.mp4"]);
    // Where the credentials came from is said; what they are, never.
    let found = published.events("credentials_found");
    assert_eq!(
        found[0]["credentials"],
        "the environment (AWS_ACCESS_KEY_ID)"
    );
    assert!(!published.stderr().contains(&allowed.secret));

    let wrong = AccessKeys {
        id: "AKIAWRONGWRONGWRONG1".to_owned(),
        secret: "wrong".to_owned(),
    };
    for (keys, code, fix) in [
        (&wrong, "InvalidAccessKeyId", "refuses the credentials"),
        (&denied, "AccessDenied", "s3:ListBucket"),
    ] {
        let before = store.requests_containing("GET /media");
        let started = Instant::now();
        let refused = run_to_end(&config, keys);
        assert_eq!(refused.code(), Some(2), "{code}: {}", refused.stderr());
        let stderr = refused.stderr();
        assert!(stderr.contains(code), "{stderr}");
        assert!(stderr.contains(fix), "{stderr}");
        assert!(
            !stderr.contains(&keys.secret),
            "the secret is never logged: {stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        // One request: no retry storm.
        assert_eq!(
            store.requests_containing("GET /media") - before,
            1,
            "{}",
            store.log()
        );
    }
}

/// A TCP relay to `target` that can be cut (every connection closed, new ones refused) and
/// restored on the same port: a store that goes away and comes back with its objects.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let relay_up = Arc::clone(&up);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if !relay_up.load(Ordering::SeqCst) {
                    continue; // Dropped at once: the store does not answer.
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let up = Arc::clone(&relay_up);
                    from.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    std::thread::spawn(move || {
                        let mut buffer = [0; 16 * 1024];
                        while up.load(Ordering::SeqCst) {
                            match from.read(&mut buffer) {
                                Ok(0) => break,
                                Ok(read) => {
                                    if to.write_all(&buffer[..read]).is_err() {
                                        break;
                                    }
                                }
                                Err(error)
                                    if matches!(
                                        error.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { port, up }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

#[test]
fn a_store_that_goes_away_and_comes_back_costs_nothing() {
    let mut args = LARGE_BATCHES.to_vec();
    args[1] = "6";
    let media = fragments(&args);
    let store = MotoServer::start();
    let bucket = store.bucket(BUCKET, &any_keys());
    bucket.create();
    for (index, file) in media.iter().enumerate().take(4) {
        upload(&bucket, &format!("in/batch-{index}.mp4"), file);
    }
    let store_port = store.endpoint().rsplit(':').next().unwrap().to_owned();
    let relay = Relay::start(format!("127.0.0.1:{store_port}"));
    let server = RtmpServer::start();
    let dir = TestDir::new();
    let archive = dir.join("archive.mp4");
    let config = dir.pipeline_file(&json!({
        "state_dir": "state",
        "pipelines": [{
            "name": "channel-1",
            "source": source(&relay.endpoint(), json!({})),
            "sinks": live_and_archive(&server, &archive, "realtime"),
        }],
    }));
    let running = start(&config, &any_keys());
    running.wait_for_event(TIMEOUT, "rtmp_publishing", |_| true);
    // Cut for 6 s while a batch is being read and the prefix listed; the rest is uploaded
    // meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    relay.set_up(false);
    for (index, file) in media.iter().enumerate().skip(4) {
        upload(&bucket, &format!("in/batch-{index}.mp4"), file);
    }
    std::thread::sleep(Duration::from_secs(6));
    relay.set_up(true);
    wait_for_published(&running, 2 * media.len());
    running.signal(Signal::TERM);
    let run = running.wait(TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        !run.events("store_unavailable").is_empty(),
        "the outage was seen"
    );
    assert!(!run.events("store_available").is_empty(), "and its end");
    assert!(run.events("fragment_failed").is_empty(), "{}", run.stderr());
    let expected = batch_names(media.len());
    assert_eq!(published_by(&run.logs, "archive"), expected);
    assert_every_packet_once(&archive, &media, "after the outage");
    assert_eq!(server.recordings_of("channel-1").len(), 1, "one session");
}
