//! Fragments made by other muxers than ffmpeg's `mov` join into one stream: published to
//! nginx-rtmp and to an append archive, each must give one session and one continuous, fully
//! decodable stream as long as the fragments, small_fragments together.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use streampub_tests::media::{
    decoder_errors, fragments, gstreamer_b_frame_fragments, gstreamer_fragments, probe_all_packets,
    probe_packets, segment_set, small_fragments, track_duration, Packager,
};
use streampub_tests::rtmp::RtmpServer;
use streampub_tests::{run_pipeline_file, Finished, TestDir};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Five 4 s fragments at 25 frames per second, each starting at 0.
const FIVE_FRAGMENTS: &[&str] = &[
    "--count",
    "5",
    "--seconds",
    "4",
    "--size",
    "320x180",
    "--bitrate",
    "400k",
    "--fps",
    "25",
];
/// [`FIVE_FRAGMENTS`] made with more options of `scripts/make-fragments`.
fn five_fragments(options: &[&str]) -> Vec<PathBuf> {
    fragments(&[FIVE_FRAGMENTS, options].concat())
}

/// One frame at 25 frames per second, the tolerance on durations.
const ONE_FRAME: f64 = 1.0 / 25.0;

/// Pipeline `channel-1` from the directory `in` through `stages` into `sink`.
fn pipeline(stages: Value, sink: Value) -> Value {
    json!({
        "pipelines": [{
            "name": "channel-1",
            "source": {"type": "directory", "path": "in", "follow": false, "settle": "0s"},
            "stages": stages,
            "sink": sink,
        }],
    })
}

/// Asserts that `output` holds all of `media` as one stream: within one frame of their summed
/// duration (each file's longest track), every video packet and every audio packet (but for
/// priming, see below), video DTS strictly increasing, audio DTS never decreasing, and no
/// decoder error.
fn assert_one_stream(what: &str, output: &Path, media: &[PathBuf]) {
    let duration: f64 = media.iter().map(|path| track_duration(path)).sum();
    // Counted with edit lists ignored: a joined stream keeps the samples they hide.
    let inputs: Vec<_> = media.iter().map(|path| probe_all_packets(path)).collect();
    let video: usize = inputs.iter().map(|packets| packets.video.count()).sum();
    let audio: usize = inputs.iter().map(|packets| packets.audio.count()).sum();
    let packets = probe_all_packets(output);
    assert!(
        (packets.duration() - duration).abs() <= ONE_FRAME + 0.001,
        "{what}: {:.3} s, not within one frame of {duration:.3} s",
        packets.duration()
    );
    assert_eq!(packets.video.count(), video, "{what}: video packets");
    assert!(
        packets.video.monotonic(true),
        "{what}: video DTS must increase"
    );
    // An AAC encoder's priming packet at the start of each file is shown or hidden by its
    // edit list depending on the reader (ffprobe, ffmpeg's fragmented-MP4 input), so audio
    // may differ by that one packet per file; nothing else may be missing or extra.
    let difference = packets.audio.count().abs_diff(audio);
    assert!(
        (audio == 0) == (packets.audio.count() == 0) && difference <= media.len(),
        "{what}: {} audio packets, the inputs have {audio}",
        packets.audio.count()
    );
    assert!(
        packets.audio.monotonic(false),
        "{what}: audio DTS must not decrease"
    );
    assert_eq!(decoder_errors(output), 0, "{what}: decoder errors");
}

/// Publishes `media` (of `input_format`) to a fresh nginx-rtmp and to an append archive named
/// `archive`, each through `stages`, and asserts that each run published every fragment and
/// that the recording and the archive are each one stream.
fn publish_as_one_stream(media: &[PathBuf], stages: Value, input_format: &str, archive: &str) {
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", media);
    let rtmp = dir.pipeline_file(&pipeline(
        stages.clone(),
        json!({
            "type": "ffmpeg-rtmp",
            "url": format!("{}/muxers", server.server_url()),
            "input_format": input_format,
            "pacing": "off",
        }),
    ));
    let run = run_pipeline_file(&rtmp, TIMEOUT);
    assert_all_published(&run, media.len());
    // The same through the native publisher (which takes MP4 and FLV batches).
    if input_format != "mpegts" {
        let native = dir.pipeline_file(&pipeline(
            stages.clone(),
            json!({
                "type": "rtmp",
                "url": format!("{}/native", server.server_url()),
                "input_format": input_format,
                "pacing": "off",
            }),
        ));
        let run = run_pipeline_file(&native, TIMEOUT);
        assert_all_published(&run, media.len());
    }
    server.stop();
    let recordings = server.recordings();
    let expected = if input_format == "mpegts" { 1 } else { 2 };
    assert_eq!(
        recordings.len(),
        expected,
        "one RTMP session each: {recordings:?}"
    );
    for recording in &recordings {
        assert_one_stream("recording", recording, media);
    }

    // The directory source moved nothing: the same files again, into an archive.
    let archive = dir.join(archive);
    let to_file = dir.pipeline_file(&pipeline(
        stages,
        json!({"type": "file", "path": archive, "mode": "append"}),
    ));
    let run = run_pipeline_file(&to_file, TIMEOUT);
    assert_all_published(&run, media.len());
    assert_one_stream("archive", &archive, media);
}

fn assert_all_published(run: &Finished, count: usize) {
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), count, "{}", run.stderr());
    assert!(
        run.events("session_started").is_empty(),
        "one stream, one session: {}",
        run.stderr()
    );
}

#[test]
fn gstreamer_mp4mux_fragments_make_one_stream() {
    let media = gstreamer_fragments(FIVE_FRAGMENTS);
    publish_as_one_stream(
        &media,
        json!([{"type": "fmp4-timeline"}]),
        "mp4",
        "archive.mp4",
    );
}

#[test]
fn remuxed_non_fragmented_files_make_one_stream() {
    let media = five_fragments(&["--movflags", "+faststart"]);
    let stages = json!([{"type": "fmp4-timeline", "remux": "ffmpeg"}]);
    publish_as_one_stream(&media, stages, "mp4", "archive.mp4");
}

#[test]
fn fragments_with_absolute_data_offsets_make_one_stream() {
    // Without default_base_moof, ffmpeg's tfhd holds each moof's data position in its own file.
    // Video only: with frag_every_frame, ffmpeg ends the audio with two samples at one
    // timestamp that only the file's edit list hides, and the timeline does not apply edit
    // lists (see docs/timeline.md).
    let media = five_fragments(&["--movflags", "frag_every_frame+empty_moov", "--audio", "no"]);
    publish_as_one_stream(
        &media,
        json!([{"type": "fmp4-timeline"}]),
        "mp4",
        "archive.mp4",
    );
}

#[test]
fn a_resolution_change_starts_a_second_session_and_a_second_archive_file() {
    let small = small_fragments(2, 2, &[]);
    let large = fragments(&[
        "--count",
        "2",
        "--seconds",
        "2",
        "--size",
        "480x270",
        "--fps",
        "25",
    ]);
    let dir = TestDir::new();
    // Upstream switches resolution after two batches.
    for (index, file) in small.iter().chain(&large).enumerate() {
        dir.write(
            &format!("in/batch-{index}.mp4"),
            std::fs::read(file).unwrap(),
        );
    }
    let mut server = RtmpServer::start();
    let stages = json!([{"type": "fmp4-timeline"}]);
    // Paced, as live: the second session starts seconds after the first, so nginx's
    // recordings (named by the second a session starts) stay apart.
    let rtmp = dir.pipeline_file(&pipeline(
        stages.clone(),
        json!({
            "type": "ffmpeg-rtmp",
            "url": format!("{}/switch", server.server_url()),
            "use_rate_limit": true,
        }),
    ));
    let run = run_pipeline_file(&rtmp, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.published().len(), 4, "{}", run.stderr());
    let changes = run.events("session_started");
    assert_eq!(changes.len(), 1, "{}", run.stderr());
    let change = changes[0]["change"].as_str().unwrap_or_default();
    assert!(
        change.contains("batch-2.mp4") && change.contains("320x180") && change.contains("480x270"),
        "{change}"
    );
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 2, "two sessions: {recordings:?}");
    assert_one_stream("first recording", &recordings[0], &small);
    assert_one_stream("second recording", &recordings[1], &large);

    let archive = dir.join("archive.mp4");
    let to_file = dir.pipeline_file(&pipeline(
        stages,
        json!({"type": "file", "path": archive, "mode": "append"}),
    ));
    let run = run_pipeline_file(&to_file, TIMEOUT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let continued = run.events("archive_continued");
    assert_eq!(continued.len(), 1, "{}", run.stderr());
    let next = dir.join("archive.1.mp4");
    assert_eq!(continued[0]["path"], next.display().to_string());
    assert_one_stream("first archive file", &archive, &small);
    assert_one_stream("second archive file", &next, &large);
}

/// A 20 s stream cut by `packager`, published from a directory that holds the packager's own
/// names (and its playlist, which `pattern` leaves out); the init segment goes first.
fn publish_segment_set(source_args: &[&str], packager: Packager, pattern: Value) {
    let source = fragments(source_args);
    let segments = segment_set(&source[0], packager);
    let files: Vec<PathBuf> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    let dir = TestDir::new();
    dir.copy_in("in", &files);
    let mut server = RtmpServer::start();
    let source_options = json!({
        "type": "directory", "path": "in", "follow": false, "settle": "0s",
        "pattern": pattern, "init_pattern": "init*",
    });
    let with_sink = |sink: Value| {
        json!({"pipelines": [{
            "name": "channel-1",
            "source": source_options,
            "stages": [{"type": "fmp4-timeline"}],
            "sink": sink,
        }]})
    };
    let segment_count = files.len() - 1; // the playlist is not published
    let rtmp = dir.pipeline_file(&with_sink(
        json!({"type": "ffmpeg-rtmp", "url": format!("{}/segments", server.server_url()), "pacing": "off"}),
    ));
    let run = run_pipeline_file(&rtmp, TIMEOUT);
    assert_all_published(&run, segment_count);
    assert!(
        run.published()[0].starts_with("init"),
        "{:?}",
        run.published()
    );
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "one RTMP session: {recordings:?}");
    assert_one_stream("recording", &recordings[0], &source);

    let archive = dir.join("archive.mp4");
    let to_file = dir.pipeline_file(&with_sink(
        json!({"type": "file", "path": archive, "mode": "append"}),
    ));
    let run = run_pipeline_file(&to_file, TIMEOUT);
    assert_all_published(&run, segment_count);
    assert_one_stream("archive", &archive, &source);
}

#[test]
fn an_hls_fmp4_segment_set_makes_one_stream() {
    publish_segment_set(
        &[
            "--count",
            "1",
            "--seconds",
            "20",
            "--size",
            "320x180",
            "--fps",
            "25",
        ],
        Packager::HlsFmp4,
        json!(["*.m4s", "init.mp4"]),
    );
}

#[test]
fn a_dash_segment_set_makes_one_stream_though_its_init_sorts_last() {
    publish_segment_set(
        &[
            "--count",
            "1",
            "--seconds",
            "20",
            "--size",
            "320x180",
            "--fps",
            "25",
            "--audio",
            "no",
        ],
        Packager::Dash,
        json!("*.m4s"),
    );
}

#[test]
fn media_segments_without_an_init_segment_fail_and_the_exit_code_says_so() {
    let source = small_fragments(1, 20, &["--audio", "no"]);
    let segments = segment_set(&source[0], Packager::Dash);
    let dir = TestDir::new();
    let chunks: Vec<PathBuf> = (1..=2)
        .map(|number| segments.join(format!("chunk-stream0-0000{number}.m4s")))
        .collect();
    dir.copy_in("in", &chunks);
    let config = dir.pipeline_file(&pipeline(
        json!([{"type": "fmp4-timeline"}]),
        json!({"type": "file", "path": "archive.mp4"}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    assert!(run.published().is_empty());
    let failures = run.events("fragment_failed");
    assert_eq!(failures.len(), 2, "{}", run.stderr());
    for failure in failures {
        let error = failure["error"].as_str().unwrap_or_default();
        assert!(error.contains("before any moov"), "{error}");
    }
    let summary = run.pipeline_event("pipeline_finished", "channel-1");
    assert_eq!(summary["fragments_failed"], 2);
    assert_eq!(summary["fragments_published"], 0);
}

#[test]
fn flv_batches_make_one_stream() {
    let media = five_fragments(&["--format", "flv"]);
    publish_as_one_stream(
        &media,
        json!([{"type": "flv-timeline"}]),
        "flv",
        "archive.flv",
    );
}

#[test]
fn mpegts_batches_that_each_restart_their_clock_make_one_stream() {
    let media = five_fragments(&["--format", "mpegts", "--clock", "restart"]);
    let stages = json!([{"type": "mpegts-timeline"}]);
    publish_as_one_stream(&media, stages, "mpegts", "archive.ts");
}

#[test]
fn b_frames_keep_their_presentation_order_through_flv_tags() {
    // Decode order differs from presentation order: the tags carry composition times.
    let media = five_fragments(&["--bframes", "2"]);
    let dir = TestDir::new();
    dir.copy_in("in", &media);
    let archive = dir.join("archive.flv");
    let config = dir.pipeline_file(&pipeline(
        json!([{"type": "fmp4-timeline"}, {"type": "fmp4-to-flv"}]),
        json!({"type": "file", "path": archive, "mode": "append"}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_all_published(&run, media.len());
    assert_one_stream("FLV archive", &archive, &media);
    // Presentation times, in decode order, as ffmpeg reads them back from the tags and from the
    // input: the same steps.
    let presentation = |path: &Path| -> Vec<f64> {
        let output = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "packet=pts_time",
            ])
            .args(["-of", "csv=p=0"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    };
    let steps = |times: &[f64]| -> Vec<i64> {
        times
            .windows(2)
            .map(|pair| ((pair[1] - pair[0]) * 1000.0).round() as i64)
            .collect()
    };
    let output = presentation(&archive);
    let first_input = presentation(&media[0]);
    assert!(
        steps(&first_input).iter().any(|step| *step < 0),
        "the input has B-frames"
    );
    assert_eq!(
        steps(&output)[..first_input.len() - 1],
        steps(&first_input)[..]
    );
}

#[test]
fn gstreamer_b_frames_reach_the_server_with_their_decode_times() {
    b_frames_reach_the_server_with_their_decode_times(
        &gstreamer_b_frame_fragments(FIVE_FRAGMENTS),
        "ffmpeg-rtmp",
    );
}

#[test]
fn ffmpeg_b_frames_reach_the_server_with_their_decode_times() {
    b_frames_reach_the_server_with_their_decode_times(
        &five_fragments(&["--bframes", "2"]),
        "ffmpeg-rtmp",
    );
}

#[test]
fn the_native_rtmp_sink_sends_gstreamer_b_frames_with_their_decode_times() {
    b_frames_reach_the_server_with_their_decode_times(
        &gstreamer_b_frame_fragments(FIVE_FRAGMENTS),
        "rtmp",
    );
}

/// B-frame fragments through `sink` (paced, FLV tags) to nginx-rtmp: the recording's video
/// decode times increase strictly and step as the input's do within each fragment (ffmpeg
/// asked to regenerate DTS got B-frames wrong at every session start).
fn b_frames_reach_the_server_with_their_decode_times(media: &[PathBuf], sink: &str) {
    let mut server = RtmpServer::start();
    let dir = TestDir::new();
    dir.copy_in("in", media);
    let config = dir.pipeline_file(&pipeline(
        json!([]),
        json!({"type": sink, "url": format!("{}/bframes", server.server_url())}),
    ));
    let run = run_pipeline_file(&config, TIMEOUT);
    assert_all_published(&run, media.len());
    server.stop();
    let recordings = server.recordings();
    assert_eq!(recordings.len(), 1, "one RTMP session: {recordings:?}");
    let recorded = probe_packets(&recordings[0]).video.dts;
    let inputs: Vec<Vec<f64>> = media
        .iter()
        .map(|path| probe_packets(path).video.dts)
        .collect();
    assert_eq!(recorded.len(), inputs.iter().map(Vec::len).sum::<usize>());
    assert!(
        recorded.windows(2).all(|pair| pair[1] > pair[0]),
        "video DTS must increase strictly: {:?}",
        &recorded[..recorded.len().min(8)]
    );
    // Within each fragment the steps are the input's (FLV keeps milliseconds).
    let mut at = 0;
    for (index, input) in inputs.iter().enumerate() {
        for (step, pair) in input.windows(2).enumerate() {
            let expected = pair[1] - pair[0];
            let got = recorded[at + step + 1] - recorded[at + step];
            assert!(
                (got - expected).abs() <= 0.0015,
                "fragment {index}, frame {}: DTS step {got:.3} s, the input's {expected:.3} s",
                step + 1
            );
        }
        at += input.len();
    }
    assert_eq!(decoder_errors(&recordings[0]), 0);
}
