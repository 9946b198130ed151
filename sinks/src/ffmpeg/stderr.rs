//! What ffmpeg's stderr says: each line's level, and the failures no new ffmpeg can cure.

use tracing::Level;

use crate::process::StderrDialect;

/// The way out when ffmpeg's output cannot carry a codec.
pub(super) const FLV_CODEC_REMEDY: &str =
    "Transcode upstream to H.264 video and AAC audio, or use an \
     ffmpeg build with enhanced-RTMP support (ffmpeg 6.1 or newer for HEVC and AV1, 7.1 or \
     newer for Opus) and a server that accepts it";

/// The way out when the server's certificate does not verify.
pub(super) const CERTIFICATE_REMEDY: &str =
    "The server's TLS certificate did not verify (ffmpeg's words \
     above: not signed by a trusted authority, another host's name, expired). For a server with \
     a private CA or a self-signed certificate, give that CA's certificate (PEM) as \
     `tls_ca_file`; `tls_verify: false` turns the check off, and the stream key then goes to \
     whoever answers";

/// A line that shows a failure no new ffmpeg can cure (FLV cannot carry a codec or its sample
/// rate, whatever the server; the server's certificate does not verify); returns the way out.
/// A refused or dropped connection, or a server error, may be cured by a later attempt and is
/// not one.
pub(super) fn ffmpeg_permanent_failure(line: &str) -> Option<&'static str> {
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
pub(super) fn ffmpeg_line_level(line: &str) -> Level {
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
