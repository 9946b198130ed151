//! Counters a pipeline keeps while it runs, and the report it leaves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Live counters of one pipeline, updated by its sink driver.
#[derive(Debug)]
pub struct PipelineStats {
    started: Instant,
    fragments_published: AtomicU64,
    bytes_published: AtomicU64,
    fragments_failed: AtomicU64,
    sink_reconnects: AtomicU64,
}

impl Default for PipelineStats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            fragments_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
            fragments_failed: AtomicU64::new(0),
            sink_reconnects: AtomicU64::new(0),
        }
    }
}

impl PipelineStats {
    /// Records a delivered fragment and returns how many were delivered so far.
    pub(crate) fn record_published(&self, bytes: u64) -> u64 {
        self.bytes_published.fetch_add(bytes, Ordering::Relaxed);
        self.fragments_published.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn record_failed(&self) {
        self.fragments_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_reconnect(&self) {
        self.sink_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// New sink sessions started after failures.
    pub fn sink_reconnects(&self) -> u64 {
        self.sink_reconnects.load(Ordering::Relaxed)
    }

    pub fn fragments_published(&self) -> u64 {
        self.fragments_published.load(Ordering::Relaxed)
    }

    pub fn bytes_published(&self) -> u64 {
        self.bytes_published.load(Ordering::Relaxed)
    }

    pub fn fragments_failed(&self) -> u64 {
        self.fragments_failed.load(Ordering::Relaxed)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// How one pipeline's run ended.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub name: String,
    pub fragments_published: u64,
    pub fragments_failed: u64,
    pub bytes_published: u64,
    pub sink_reconnects: u64,
    pub elapsed: Duration,
    /// Why the pipeline failed, if it did.
    pub error: Option<String>,
}

impl PipelineReport {
    pub(crate) fn new(name: &str, stats: &PipelineStats, error: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            fragments_published: stats.fragments_published(),
            fragments_failed: stats.fragments_failed(),
            bytes_published: stats.bytes_published(),
            sink_reconnects: stats.sink_reconnects(),
            elapsed: stats.elapsed(),
            error,
        }
    }

    /// Mean throughput in MiB/s over the whole run.
    pub fn throughput_mib_s(&self) -> f64 {
        self.bytes_published as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}
