//! The ffmpeg command line and the reading of its stderr.

use tracing::Level;

use super::arguments::*;
use super::stderr::*;
use crate::live_output::InputFormat;

#[test]
fn the_default_command_copies_into_flv() {
    let args = ffmpeg_args(
        InputFormat::Flv.ffmpeg_name(),
        false,
        false,
        &[],
        None,
        vec![],
        "rtmp://h/live/k",
    );
    assert_eq!(
        args.join(" "),
        "-nostats -progress pipe:2 -stats_period 0.1 -hide_banner -loglevel warning -f flv -i pipe:0 -c copy -avoid_negative_ts make_zero -f flv rtmp://h/live/k"
    );
    let passed_as_they_are = ffmpeg_args(
        InputFormat::Mp4.ffmpeg_name(),
        true,
        true,
        &[],
        None,
        vec![],
        "rtmp://h/live/k",
    );
    assert_eq!(
        passed_as_they_are.join(" "),
        "-nostats -progress pipe:2 -stats_period 0.1 -hide_banner -loglevel warning -re -fflags +genpts+igndts -f mp4 -i pipe:0 -c copy -avoid_negative_ts make_zero -f flv rtmp://h/live/k"
    );
    let custom = ffmpeg_args(
        InputFormat::Mpegts.ffmpeg_name(),
        false,
        true,
        &["-thread_queue_size".into(), "512".into()],
        Some(&["-c:v".into(), "copy".into(), "-f".into(), "flv".into()]),
        tls_args(
            "rtmps://h/live/k",
            true,
            Some(std::path::Path::new("/etc/ca.pem")),
        ),
        "rtmps://h/live/k",
    );
    assert_eq!(
        custom.join(" "),
        "-nostats -progress pipe:2 -stats_period 0.1 -hide_banner -loglevel warning -fflags +genpts+igndts -f mpegts -thread_queue_size 512 -i pipe:0 -c:v copy -f flv -tls_verify 1 -ca_file /etc/ca.pem rtmps://h/live/k"
    );
}

#[test]
fn rtmps_verifies_the_server_unless_told_not_to() {
    assert_eq!(
        tls_args("rtmps://h/live/k", true, None),
        ["-tls_verify", "1"]
    );
    assert!(tls_args("rtmps://h/live/k", false, None).is_empty());
    assert!(tls_args("rtmp://h/live/k", true, None).is_empty());
    for line in [
        "[tls @ 0x55] Peer certificate failed verification",
        "[tls @ 0x55] The certificate's owner does not match hostname localhost",
    ] {
        assert_eq!(
            ffmpeg_permanent_failure(line),
            Some(CERTIFICATE_REMEDY),
            "{line}"
        );
    }
}

#[test]
fn harmless_end_of_stream_lines_are_debug() {
    assert_eq!(
        ffmpeg_line_level("[flv @ 0x55] Failed to update header with correct duration."),
        Level::DEBUG
    );
    assert_eq!(ffmpeg_line_level("Connection refused"), Level::ERROR);
    assert_eq!(ffmpeg_line_level("Non-monotonous DTS"), Level::WARN);
}

#[test]
fn the_read_ahead_follows_ffmpegs_probesize_as_ffmpeg_reads_it() {
    let args = |value: &str| vec!["-probesize".to_owned(), value.to_owned()];
    assert_eq!(ffmpeg_read_ahead(&[]), 5_000_000 + INPUT_BUFFER);
    assert_eq!(ffmpeg_read_ahead(&args("10M")), 10_000_000 + INPUT_BUFFER);
    assert_eq!(ffmpeg_read_ahead(&args("32")), 32 + INPUT_BUFFER);
    assert_eq!(ffmpeg_read_ahead(&args("2Mi")), (2 << 20) + INPUT_BUFFER);
    assert_eq!(ffmpeg_read_ahead(&args("1.5k")), 1500 + INPUT_BUFFER);
    assert_eq!(ffmpeg_read_ahead(&args("1KiB")), 8 * 1024 + INPUT_BUFFER);
    // What ffmpeg would refuse leaves the default.
    assert_eq!(ffmpeg_read_ahead(&args("lots")), 5_000_000 + INPUT_BUFFER);
    assert_eq!(ffmpeg_read_ahead(&args("10Mx")), 5_000_000 + INPUT_BUFFER);
}

#[test]
fn only_codecs_flv_cannot_carry_are_permanent() {
    for line in [
        "[flv @ 0x55] Video codec hevc not compatible with flv",
        "[flv @ 0x55] Audio codec opus not compatible with flv",
        "[flv @ 0x55] FLV does not support sample rate 48000, choose from (44100, 22050, 11025)",
    ] {
        assert!(ffmpeg_permanent_failure(line).is_some(), "{line}");
    }
    for line in [
        "rtmp://127.0.0.1:1935/live/<redacted>: Connection refused",
        "rtmp://127.0.0.1:1935/nosuchapp/<redacted>: Input/output error",
        "[rtmp @ 0x55] Server error: Already publishing",
    ] {
        assert!(ffmpeg_permanent_failure(line).is_none(), "{line}");
    }
}
