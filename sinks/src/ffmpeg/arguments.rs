//! The ffmpeg command line: its options, the TLS ones, how far it reads ahead, and the stream
//! key kept out of logs.

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
    input_format: &str,
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
    args.extend(["-f", input_format].map(String::from));
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
pub(super) const DEFAULT_PROBE_SIZE: u64 = 5_000_000;
/// ffmpeg's input buffering beyond the probe.
pub(super) const INPUT_BUFFER: u64 = 1 << 20;

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
pub(super) fn ffmpeg_number(text: &str) -> Option<u64> {
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
