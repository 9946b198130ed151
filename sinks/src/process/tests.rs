use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use streampub_core::plugin::{
    Bytes, ComponentContext, FragmentInfo, MediaSpan, ReconnectPolicy, Redactor, SessionReason,
    Sink, SinkConfig,
};

use tracing::Level;

use super::process_sink::ProcessSink;
use super::session::GenericStderr;
use super::*;
use crate::process::{ProcessOptions, ProcessSinkConfig};
use crate::reconnect_options::ReconnectOptions;

/// A stand-in's stderr: a line saying "cannot carry" is a failure no new session cures.
#[derive(Debug)]
struct CannotCarry;

impl StderrDialect for CannotCarry {
    fn level(&self, _line: &str) -> Level {
        Level::WARN
    }

    fn permanent_failure(&self, line: &str) -> Option<&'static str> {
        line.contains("cannot carry").then_some("do something else")
    }
}

fn context(directory: &Path) -> ComponentContext {
    ComponentContext::new("test", directory)
}

fn config(command: &[&str], stdout: Option<&str>) -> ProcessSinkConfig {
    ProcessSinkConfig {
        command: command.iter().map(|part| part.to_string()).collect(),
        stdout: stdout.map(Into::into),
        process: ProcessOptions {
            flush_timeout: streampub_core::plugin::HumanDuration::from_secs(5),
            ..ProcessOptions::default()
        },
        reconnect: ReconnectOptions {
            max_reconnect_attempts: 2,
            reconnect_delay: streampub_core::plugin::HumanDuration::from_millis(10),
            max_reconnect_delay: streampub_core::plugin::HumanDuration::from_millis(10),
        },
    }
}

fn info(name: &str) -> FragmentInfo {
    FragmentInfo {
        sequence: 1,
        name: name.into(),
        length: None,
    }
}

#[tokio::test]
async fn cat_receives_every_byte_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let config = config(&["cat"], Some("out.bin"));
    let context = context(directory.path());
    config.validate(&context).unwrap();
    let mut sink = config.build(&context).await.unwrap();
    let mut expected = Vec::new();
    for index in 0..3u8 {
        sink.begin_fragment(&info("f")).await.unwrap();
        for piece in 0..50u8 {
            let chunk = vec![index ^ piece; 100_000];
            expected.extend_from_slice(&chunk);
            sink.write_chunk(Bytes::from(chunk)).await.unwrap();
        }
        sink.end_fragment().await.unwrap();
    }
    sink.close().await.unwrap();
    let written = std::fs::read(directory.path().join("out.bin")).unwrap();
    assert!(written == expected, "cat's output differs from the input");
}

#[tokio::test]
async fn spliced_file_ranges_arrive_whole_and_mixed_with_bytes() {
    let directory = tempfile::tempdir().unwrap();
    let source = directory.path().join("in.bin");
    // Larger than the pipe, so the splice has to wait for the reader.
    let content: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&source, &content).unwrap();
    let file = std::sync::Arc::new(std::fs::File::open(&source).unwrap());
    let config = config(&["sh", "-c", "sleep 0.2; exec cat"], Some("out.bin"));
    let context = context(directory.path());
    let mut sink = config.build(&context).await.unwrap();
    assert!(sink.capabilities().file_ranges);
    sink.begin_fragment(&info("f")).await.unwrap();
    sink.write_chunk(Bytes::from_static(b"head")).await.unwrap();
    for offset in (0..content.len()).step_by(1_500_000) {
        let range = streampub_core::plugin::FileRange {
            file: std::sync::Arc::clone(&file),
            offset: offset as u64,
            length: 1_500_000.min(content.len() - offset),
        };
        sink.write_file_range(range).await.unwrap();
    }
    sink.end_fragment().await.unwrap();
    sink.close().await.unwrap();
    let written = std::fs::read(directory.path().join("out.bin")).unwrap();
    assert_eq!(&written[..4], b"head");
    assert!(
        written[4..] == content[..],
        "spliced output differs from the file"
    );
}

#[tokio::test]
async fn a_process_that_stops_reading_is_a_retryable_failure_with_its_last_words() {
    // Built by hand to give it a secret to redact.
    let script = "head -c 10 >/dev/null; echo 'giving up on rtmp://h/live/key-123' >&2; exit 3";
    let command = ProcessCommand {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        label: "sh".into(),
        pipeline: "test".into(),
        sink: None,
        redactor: Redactor::with_secret_paths(["rtmp"]),
        pipe_buffer: None,
        stall_timeout: None,
        stdout: None,
        dialect: Arc::new(GenericStderr),
        progress: None,
        pacing: None,
    };
    let mut sink = ProcessSink::new(
        command,
        ReconnectPolicy::NEVER,
        Duration::from_secs(5),
        true,
    );
    sink.begin_fragment(&info("f")).await.unwrap();
    let mut error = None;
    for _ in 0..100 {
        if let Err(failure) = sink.write_chunk(Bytes::from(vec![0u8; 65_536])).await {
            error = Some(failure);
            break;
        }
    }
    let error = error.expect("writes must fail once the process is gone");
    assert!(error.retryable);
    assert!(error.message.contains("exit status 3"), "{}", error.message);
    assert!(
        error
            .message
            .contains("giving up on rtmp://h/live/<redacted>"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("key-123"), "{}", error.message);

    // A new session starts a fresh process.
    sink.start_session(SessionReason::Reconnect).await.unwrap();
    sink.write_chunk(Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_process_that_fails_on_close_is_reported() {
    let directory = tempfile::tempdir().unwrap();
    let config = config(&["sh", "-c", "cat >/dev/null; exit 4"], None);
    let mut sink = config.build(&context(directory.path())).await.unwrap();
    sink.begin_fragment(&info("f")).await.unwrap();
    sink.write_chunk(Bytes::from_static(b"abc")).await.unwrap();
    sink.end_fragment().await.unwrap();
    let error = sink.close().await.unwrap_err();
    assert!(error.message.contains("exit status 4"), "{}", error.message);
}

#[test]
fn missing_programs_are_config_errors() {
    let directory = tempfile::tempdir().unwrap();
    let error = config(&["streampub-no-such-program"], None)
        .validate(&context(directory.path()))
        .unwrap_err();
    assert_eq!(error.field.as_deref(), Some("command"));
    assert!(error.message.contains("not found"), "{}", error.message);
}

#[tokio::test]
async fn a_stream_change_lets_the_old_process_finish_what_it_took() {
    let directory = tempfile::tempdir().unwrap();
    let mut clean = config(&["cat"], Some("out.bin"))
        .build(&context(directory.path()))
        .await
        .unwrap();
    clean.begin_fragment(&info("f")).await.unwrap();
    clean
        .write_chunk(Bytes::from_static(b"old stream"))
        .await
        .unwrap();
    clean.end_fragment().await.unwrap();
    clean
        .start_session(SessionReason::StreamChanged {
            change: "codec".into(),
        })
        .await
        .unwrap();
    assert_eq!(clean.unconfirmed(), 0, "a clean exit confirms what it took");
    assert_eq!(
        std::fs::read(directory.path().join("out.bin")).unwrap(),
        b"old stream"
    );

    let mut failing = config(&["sh", "-c", "cat >/dev/null; exit 3"], None)
        .build(&context(directory.path()))
        .await
        .unwrap();
    failing.begin_fragment(&info("f")).await.unwrap();
    failing
        .write_chunk(Bytes::from_static(b"lost?"))
        .await
        .unwrap();
    failing.end_fragment().await.unwrap();
    let error = failing
        .start_session(SessionReason::StreamChanged {
            change: "codec".into(),
        })
        .await
        .unwrap_err();
    assert!(error.retryable, "so the runtime resends: {}", error.message);
    assert!(error.message.contains("exit status 3"), "{}", error.message);
    clean.close().await.unwrap();
}

/// Starts a stand-in for ffmpeg: a shell `script` that reports output progress on stderr the
/// way `-progress` does, confirmed with a margin of 1 s; a line saying "cannot carry" is a
/// permanent failure.
async fn start_reporting_process(script: &str) -> ProcessSink {
    let command = ProcessCommand {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        label: "reporter".into(),
        pipeline: "test".into(),
        sink: None,
        redactor: Redactor::default(),
        pipe_buffer: None,
        stall_timeout: None,
        stdout: None,
        dialect: Arc::new(CannotCarry),
        progress: Some(ProgressConfirmation {
            confirm_margin: Duration::from_secs(1),
            read_ahead: 0,
        }),
        pacing: None,
    };
    ProcessSink::new(
        command,
        ReconnectPolicy::NEVER,
        Duration::from_secs(5),
        true,
    )
}

#[tokio::test]
async fn fragments_are_confirmed_once_the_output_time_passes_their_end_by_the_margin() {
    let script = "(printf 'out_time_us=N/A\\nprogress=continue\\n' >&2; sleep 1; \
                  printf 'out_time_us=1000\\nprogress=continue\\nout_time_us=3000000\\nprogress=continue\\n' >&2) & \
                  cat >/dev/null; wait";
    let mut sink = start_reporting_process(script).await;
    // Spans count from the session's first media: the first fragment ends 2 s into the
    // output, the second 4 s.
    for (start, end) in [(0, 2), (2, 4)] {
        sink.begin_fragment(&info("f")).await.unwrap();
        sink.write_chunk(Bytes::from_static(b"media"))
            .await
            .unwrap();
        sink.media_span(MediaSpan {
            start: Duration::from_secs(start),
            end: Duration::from_secs(end),
        });
        sink.end_fragment().await.unwrap();
    }
    assert_eq!(sink.unconfirmed(), 2, "nothing output yet");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sink.unconfirmed() == 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 3 s passes the first end (2 s) by the 1 s margin, not the second (4 s).
    assert_eq!(sink.unconfirmed(), 1);
    assert_eq!(
        sink.confirmed_output_time(),
        Some(Duration::from_secs(2)),
        "confirmed inside the second, up to the output time less the margin"
    );
    assert!(
        sink.output_live_since().is_some(),
        "the output time advanced"
    );
    sink.close().await.unwrap();
}

#[tokio::test]
async fn a_failure_the_process_calls_permanent_is_fatal_with_the_way_out() {
    // It reads the fragment first, so the write succeeds and the failure shows at close.
    let script = "head -c 5 >/dev/null; echo 'codec x: the output cannot carry it' >&2; exit 1";
    let mut sink = start_reporting_process(script).await;
    sink.begin_fragment(&info("f")).await.unwrap();
    sink.write_chunk(Bytes::from_static(b"media"))
        .await
        .unwrap();
    sink.end_fragment().await.unwrap();
    let error = sink.close().await.unwrap_err();
    assert!(!error.retryable, "{}", error.message);
    assert!(
        error.message.contains("cannot carry it") && error.message.contains("do something else"),
        "{}",
        error.message
    );
}
