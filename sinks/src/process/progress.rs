//! What a process reports of its output (ffmpeg's `-progress pipe:2` blocks), and how the sink
//! confirms fragments by it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How the sink confirms fragments for a process that reports its output progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProgressConfirmation {
    /// A fragment whose place on the output timeline is known is confirmed once the reported
    /// output time has passed its end by this much (what may still sit in socket buffers).
    pub(crate) confirm_margin: Duration,
    /// A fragment whose place is not known is confirmed once the process has read this many
    /// bytes beyond its end (its probe and input buffers), the output having started.
    pub(crate) read_ahead: u64,
}

/// The keys of ffmpeg's `-progress` blocks; such lines are progress, not log lines.
const PROGRESS_KEYS: &[&str] = &[
    "frame",
    "fps",
    "bitrate",
    "total_size",
    "out_time_us",
    "out_time_ms",
    "out_time",
    "dup_frames",
    "drop_frames",
    "speed",
    "progress",
];

/// Stands for "no output time reported yet" (ffmpeg prints `N/A` until it has muxed a packet).
const NO_TIME: u64 = u64::MAX;

/// What the process reported of its output, updated by the stderr reader and read by the
/// sink: bytes written, the output time, and a signal per report.
#[derive(Debug)]
pub(crate) struct OutputProgress {
    total_size: AtomicU64,
    /// `out_time_us` of the last report, or [`NO_TIME`].
    out_time_us: AtomicU64,
    /// `out_time_us` of the first report that had one, or [`NO_TIME`].
    first_out_time_us: AtomicU64,
    /// When the output time first advanced past the first one reported: media was going out.
    live_since: OnceLock<Instant>,
    pub(crate) report: Notify,
}

impl Default for OutputProgress {
    fn default() -> Self {
        Self {
            total_size: AtomicU64::new(0),
            out_time_us: AtomicU64::new(NO_TIME),
            first_out_time_us: AtomicU64::new(NO_TIME),
            live_since: OnceLock::new(),
            report: Notify::new(),
        }
    }
}

impl OutputProgress {
    /// Takes a stderr line; returns whether it was a progress line.
    pub(crate) fn observe(&self, line: &str) -> bool {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        if !(PROGRESS_KEYS.contains(&key) || key.starts_with("stream_")) {
            return false;
        }
        let number = value.trim().parse::<u64>().ok();
        match (key, number) {
            ("total_size", Some(size)) => self.total_size.store(size, Ordering::Relaxed),
            // `out_time_ms` carries microseconds too (a historical name); one key is enough.
            ("out_time_us", Some(time)) => self.observe_time(time),
            ("progress", _) => self.report.notify_waiters(),
            _ => {}
        }
        true
    }

    fn observe_time(&self, time: u64) {
        self.out_time_us.store(time, Ordering::Relaxed);
        let first = match self.first_out_time_us.compare_exchange(
            NO_TIME,
            time,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => time,
            Err(first) => first,
        };
        if time > first {
            self.live_since.get_or_init(Instant::now);
        }
    }

    /// Bytes of output the process last reported.
    pub(crate) fn output_bytes(&self) -> u64 {
        self.total_size.load(Ordering::Relaxed)
    }

    /// How far the output has got in media time, from the session's first input timestamp;
    /// `None` before anything was output.
    pub(crate) fn output_time(&self) -> Option<Duration> {
        match self.out_time_us.load(Ordering::Relaxed) {
            NO_TIME => None,
            time => Some(Duration::from_micros(time)),
        }
    }

    /// Since when media is going out: the output time has advanced since the first report.
    pub(crate) fn live_since(&self) -> Option<Instant> {
        self.live_since.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_read_and_n_a_means_nothing_yet() {
        let progress = OutputProgress::default();
        assert!(!progress.observe("Connection refused"));
        assert!(progress.observe("out_time_us=N/A"));
        assert!(progress.observe("total_size=N/A"));
        assert_eq!(progress.output_time(), None);
        assert!(progress.observe("out_time_us=40000"));
        assert!(progress.observe("out_time_ms=40000"));
        assert!(progress.observe("total_size=1234"));
        assert_eq!(progress.output_time(), Some(Duration::from_millis(40)));
        assert_eq!(progress.output_bytes(), 1234);
        assert!(
            progress.live_since().is_none(),
            "one report is no progress yet"
        );
        progress.observe("out_time_us=140000");
        assert!(progress.live_since().is_some());
        assert_eq!(progress.output_time(), Some(Duration::from_millis(140)));
    }
}
