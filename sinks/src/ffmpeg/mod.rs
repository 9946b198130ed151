//! The `ffmpeg-rtmp` sink: a long-lived ffmpeg reads the fragments from its stdin and publishes
//! them to an RTMP server. It is the `process` sink with an ffmpeg command line built from the
//! config, ffmpeg-aware stderr levels, and the stream key kept out of every log line and error.

mod config;

use tracing::Level;

use crate::process::StderrDialect;

pub use self::config::{
    link, Continuity, FfmpegInput, FfmpegRtmpSinkConfig, InputFormat, PacingMode,
};

/// The default output: copy the streams into FLV, timestamps starting at zero.
pub const DEFAULT_OUTPUT_ARGS: &[&str] =
    &["-c", "copy", "-avoid_negative_ts", "make_zero", "-f", "flv"];

/// How often ffmpeg reports its output progress.
const PROGRESS_PERIOD: &str = "0.1";

/// The ffmpeg command line:
/// `-hide_banner -loglevel warning [-re] [-fflags +genpts+igndts] -f FORMAT [INPUT_ARGS] -i
/// pipe:0 OUTPUT_ARGS URL`, plus `-nostats -progress pipe:2 -stats_period 0.1` first, so that
/// streampub sees when the output has started (progress lines are parsed, not logged).
///
/// `-fflags +genpts+igndts` (ignore the input's decode times, make them up) only with
/// `regenerate_timestamps`: for files passed as they are, whose timestamps restart in each. A
/// timeline stage's output is exact, and ffmpeg's made-up decode times are wrong for B-frames.
/// `tls_args` (the TLS protocol's options, see [`tls_args`]) stand just before the URL.
pub(crate) fn ffmpeg_args(
    input_format: InputFormat,
    use_rate_limit: bool,
    regenerate_timestamps: bool,
    input_args: &[String],
    output_args: Option<&[String]>,
    tls_args: Vec<String>,
    url: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-nostats",
        "-progress",
        "pipe:2",
        "-stats_period",
        PROGRESS_PERIOD,
        "-hide_banner",
        "-loglevel",
        "warning",
    ]
    .map(String::from)
    .to_vec();
    if use_rate_limit {
        args.push("-re".into());
    }
    if regenerate_timestamps {
        args.extend(["-fflags", "+genpts+igndts"].map(String::from));
    }
    args.extend(["-f", input_format.ffmpeg_name()].map(String::from));
    args.extend(input_args.iter().cloned());
    args.extend(["-i", "pipe:0"].map(String::from));
    match output_args {
        Some(output_args) => args.extend(output_args.iter().cloned()),
        None => args.extend(DEFAULT_OUTPUT_ARGS.iter().map(|arg| arg.to_string())),
    }
    args.extend(tls_args);
    args.push(url.to_owned());
    args
}

/// The TLS options for an `rtmps://` URL: verify the server's certificate (ffmpeg's
/// `tls_verify` is off by default, so a stream key would go to whoever answers) against
/// `ca_file`, or without one the system's trust store; nothing with `verify` off or for
/// `rtmp://`.
pub(crate) fn tls_args(url: &str, verify: bool, ca_file: Option<&std::path::Path>) -> Vec<String> {
    if !url.starts_with("rtmps://") || !verify {
        return Vec::new();
    }
    let mut args = vec!["-tls_verify".to_owned(), "1".to_owned()];
    if let Some(ca_file) = ca_file {
        args.extend(["-ca_file".to_owned(), ca_file.display().to_string()]);
    }
    args
}

/// ffmpeg's default `-probesize`: how much input it may read before its output starts.
const DEFAULT_PROBE_SIZE: u64 = 5_000_000;
/// ffmpeg's input buffering beyond the probe.
const INPUT_BUFFER: u64 = 1 << 20;

/// How far ffmpeg may read ahead of what it has published: its probe size (`-probesize` in
/// `input_args`, else the default) plus its input buffers.
pub(crate) fn ffmpeg_read_ahead(input_args: &[String]) -> u64 {
    let probe_size = input_args
        .windows(2)
        .rfind(|pair| pair[0] == "-probesize")
        .and_then(|pair| ffmpeg_number(&pair[1]))
        .unwrap_or(DEFAULT_PROBE_SIZE);
    probe_size.saturating_add(INPUT_BUFFER)
}

/// A number as ffmpeg reads option values (`av_strtod`): digits with an optional fraction, then
/// an optional SI prefix (`k`/`K`, `M`, `G`, `T`: powers of 1000, or of 1024 with `i` after
/// it), then an optional `B`, which multiplies by 8 (ffmpeg counts it as bytes to bits).
fn ffmpeg_number(text: &str) -> Option<u64> {
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, mut suffix) = text.split_at(digits);
    let mut value: f64 = number.parse().ok()?;
    if let Some(prefix) = suffix.chars().next() {
        let power = match prefix {
            'k' | 'K' => Some(1),
            'M' => Some(2),
            'G' => Some(3),
            'T' => Some(4),
            _ => None,
        };
        if let Some(power) = power {
            suffix = &suffix[1..];
            let base: f64 = match suffix.strip_prefix('i') {
                Some(rest) => {
                    suffix = rest;
                    1024.0
                }
                None => 1000.0,
            };
            value *= base.powi(power);
        }
    }
    if let Some(rest) = suffix.strip_prefix('B') {
        suffix = rest;
        value *= 8.0;
    }
    // Like ffmpeg, an integer option keeps the whole part.
    (suffix.is_empty() && value.is_finite()).then_some(value as u64)
}

/// The way out when ffmpeg's output cannot carry a codec.
const FLV_CODEC_REMEDY: &str = "Transcode upstream to H.264 video and AAC audio, or use an \
     ffmpeg build with enhanced-RTMP support (ffmpeg 6.1 or newer for HEVC and AV1, 7.1 or \
     newer for Opus) and a server that accepts it";

/// The way out when the server's certificate does not verify.
const CERTIFICATE_REMEDY: &str = "The server's TLS certificate did not verify (ffmpeg's words \
     above: not signed by a trusted authority, another host's name, expired). For a server with \
     a private CA or a self-signed certificate, give that CA's certificate (PEM) as \
     `tls_ca_file`; `tls_verify: false` turns the check off, and the stream key then goes to \
     whoever answers";

/// A line that shows a failure no new ffmpeg can cure (FLV cannot carry a codec or its sample
/// rate, whatever the server; the server's certificate does not verify); returns the way out.
/// A refused or dropped connection, or a server error, may be cured by a later attempt and is
/// not one.
fn ffmpeg_permanent_failure(line: &str) -> Option<&'static str> {
    let lower = line.to_ascii_lowercase();
    let flv_cannot_carry = lower.contains("not compatible with flv")
        || lower.contains("flv does not support")
        || lower.contains("is not compatible with flv");
    // ffmpeg's TLS layer (GnuTLS or OpenSSL) on a certificate it refused: "Peer certificate
    // failed verification", "The certificate's owner does not match hostname …".
    let certificate_refused = lower.starts_with("[tls @")
        && lower.contains("certificate")
        && (lower.contains("verif")
            || lower.contains("does not match")
            || lower.contains("expired"));
    if flv_cannot_carry {
        Some(FLV_CODEC_REMEDY)
    } else if certificate_refused {
        Some(CERTIFICATE_REMEDY)
    } else {
        None
    }
}

/// The stream key of an RTMP URL: what follows the application in its path (`KEY` in
/// `rtmp://host/live/KEY`, query included).
pub(crate) fn stream_key(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let (_, path) = rest.split_once('/')?;
    let (_, key) = path.split_once('/')?;
    (!key.is_empty()).then_some(key)
}

/// How ffmpeg's stderr is understood (see [`ffmpeg_line_level`] and
/// [`ffmpeg_permanent_failure`]).
#[derive(Debug)]
pub(crate) struct FfmpegStderr;

impl StderrDialect for FfmpegStderr {
    fn level(&self, line: &str) -> Level {
        ffmpeg_line_level(line)
    }

    fn permanent_failure(&self, line: &str) -> Option<&'static str> {
        ffmpeg_permanent_failure(line)
    }
}

/// ffmpeg runs with `-loglevel warning`: what it prints is a warning, or an error when it says
/// so; its known-harmless end-of-stream lines are debug.
fn ffmpeg_line_level(line: &str) -> Level {
    let lower = line.to_ascii_lowercase();
    // Normal at the end of a live output, which cannot seek back to its header: harmless.
    if lower.contains("failed to update header") {
        return Level::DEBUG;
    }
    let error_words = [
        "error",
        "failed",
        "refused",
        "broken pipe",
        "invalid",
        "could not",
        "cannot",
    ];
    if error_words.iter().any(|word| lower.contains(word)) {
        Level::ERROR
    } else {
        Level::WARN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_command_copies_into_flv() {
        let args = ffmpeg_args(
            InputFormat::Flv,
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
            InputFormat::Mp4,
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
            InputFormat::Mpegts,
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

    #[test]
    fn the_stream_key_is_the_path_after_the_application() {
        assert_eq!(
            stream_key("rtmp://127.0.0.1:1935/live/secret"),
            Some("secret")
        );
        assert_eq!(stream_key("rtmps://h/app/a/b?token=x"), Some("a/b?token=x"));
        assert_eq!(stream_key("rtmp://h/live/"), None);
        assert_eq!(stream_key("rtmp://h/live"), None);
    }
}
