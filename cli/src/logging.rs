//! Log output through `tracing`, as readable lines or JSON objects, on stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use streampub_core::ConfigError;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Whether logs are JSON (`--log-format json`): config errors are then JSON too.
static JSON: AtomicBool = AtomicBool::new(false);

/// Reports a config error (every problem it names): one `error: …` line each, or with JSON
/// logs one `config_error` event each, with `file`, `line`, `column`, `pipeline`,
/// `component`, `field` and `error`.
pub(crate) fn report_config_error(error: &ConfigError) {
    for problem in error.problems() {
        if !JSON.load(Ordering::Relaxed) {
            eprintln!("error: {problem}");
            continue;
        }
        let details = problem.details();
        tracing::error!(
            event = "config_error",
            file = %details.file.display(),
            line = details.location.map(|location| location.line),
            column = details.location.map(|location| location.column),
            pipeline = details.pipeline.as_deref(),
            component = details.component.as_deref(),
            field = details.field.as_deref(),
            error = %details.message,
            "{problem}"
        );
    }
}

/// The progress bar on stderr, if one is shown (`bench`): log lines are written around it,
/// never into its line.
static PROGRESS_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Shows log lines above `bar` from now on; `None` clears the bar shown and logs plainly again.
pub(crate) fn set_progress_bar(bar: Option<indicatif::ProgressBar>) {
    let mut shown = PROGRESS_BAR
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    if let Some(old) = std::mem::replace(&mut *shown, bar) {
        old.finish_and_clear();
    }
}

/// Makes a [`LogLine`] per event.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::with_capacity(256))
    }
}

/// One event's text, written to stderr in one piece when done: with the progress bar cleared
/// first and drawn again after, if one is shown.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let write = || {
            // Logging has nowhere to report its own failure.
            let _ = std::io::stderr().write_all(&self.0);
        };
        match PROGRESS_BAR
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .as_ref()
        {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Pretty,
    /// One JSON object per event.
    Json,
}

pub(crate) fn init(format: LogFormat, verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
