//! Counters a pipeline keeps while it runs, and the report it leaves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, Semaphore};

mod destination;

use self::destination::Destination;
use super::latency::LatencyHistogram;
use crate::fragment::Fragment;

/// Per-fragment latencies kept for percentiles: the most recent this many.
const RECENT_LATENCIES: usize = 10_000;

/// Where a pipeline is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineState {
    /// Built and running (also while its sink reconnects).
    Running,
    /// Its input ended and everything was delivered.
    Finished,
    /// It stopped on an error; the message says why.
    Failed(String),
}

impl PipelineState {
    /// `running`, `finished` or `failed`, as health reports show it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed(_) => "failed",
        }
    }
}

/// The queues of a running pipeline, looked at when metrics are read.
#[derive(Debug)]
struct PipelineQueues {
    fragments: mpsc::WeakSender<Fragment>,
    budget: Arc<Semaphore>,
    budget_size: usize,
}

/// Live counters of one pipeline, updated by its sink driver; in a fan-out, the pipeline's own
/// (fragments acknowledged to the source) with one set per destination beside them.
#[derive(Debug)]
pub struct PipelineStats {
    name: String,
    /// The destination these counters are of, in a fan-out; `None` for a pipeline's own.
    sink: Option<Destination>,
    /// A fan-out's destinations (one a reload added or changed comes last).
    sinks: RwLock<Vec<Arc<PipelineStats>>>,
    /// The name of a pipeline's one destination (`sink:`), for metrics' `sink` label.
    sink_name: OnceLock<String>,
    /// The sink's session failed and it is reconnecting (or resending).
    in_outage: std::sync::atomic::AtomicBool,
    /// Why the pipeline waits instead of reading on (a required destination too far behind).
    waiting_for: Mutex<Option<String>>,
    started: Instant,
    fragments_published: AtomicU64,
    bytes_published: AtomicU64,
    fragments_failed: AtomicU64,
    fragments_skipped: AtomicU64,
    /// Fragments the source offered (taken by the chunking stage or still queued at the end).
    fragments_offered: AtomicU64,
    sink_reconnects: AtomicU64,
    /// Milliseconds of filler a paced sink received while upstream was late.
    filler_ms: AtomicU64,
    /// Unix time of the last publish in milliseconds; 0 before the first.
    last_publish_unix_ms: AtomicU64,
    /// For a paced sink: the Unix time (ms) at which the media written so far is due; 0 before
    /// any.
    paced_until_unix_ms: AtomicU64,
    /// The name of the fragment published last.
    last_published: Mutex<Option<String>>,
    publish_latency: LatencyHistogram,
    /// The latest [`RECENT_LATENCIES`] publish latencies, for exact percentiles.
    recent_latencies: Mutex<VecDeque<Duration>>,
    state: Mutex<PipelineState>,
    queues: OnceLock<PipelineQueues>,
}

impl PipelineStats {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            sink: None,
            sinks: RwLock::default(),
            sink_name: OnceLock::new(),
            in_outage: Default::default(),
            waiting_for: Mutex::default(),
            started: Instant::now(),
            fragments_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
            fragments_failed: AtomicU64::new(0),
            fragments_skipped: AtomicU64::new(0),
            fragments_offered: AtomicU64::new(0),
            sink_reconnects: AtomicU64::new(0),
            filler_ms: AtomicU64::new(0),
            last_publish_unix_ms: AtomicU64::new(0),
            paced_until_unix_ms: AtomicU64::new(0),
            last_published: Mutex::new(None),
            publish_latency: LatencyHistogram::default(),
            recent_latencies: Mutex::new(VecDeque::new()),
            state: Mutex::new(PipelineState::Running),
            queues: OnceLock::new(),
        }
    }

    /// Records a delivered fragment, its name and size and how long its transfer took;
    /// returns how many were delivered so far.
    pub(crate) fn record_published(&self, name: &str, bytes: u64, latency: Duration) -> u64 {
        *self
            .last_published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(name.to_owned());
        self.bytes_published.fetch_add(bytes, Ordering::Relaxed);
        self.publish_latency.observe(latency);
        let mut recent = self
            .recent_latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_LATENCIES {
            recent.pop_front();
        }
        recent.push_back(latency);
        drop(recent);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_publish_unix_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
        self.fragments_published.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn record_failed(&self) {
        self.fragments_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A fragment was not sent: an earlier run had published it (offered again, acknowledged
    /// unsent), or a fan-out's destination with `required: false` skipped it while behind.
    pub(crate) fn record_skipped(&self) {
        self.fragments_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// The source offered `count` fragments in this run.
    pub(crate) fn record_offered(&self, count: u64) {
        self.fragments_offered.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn record_reconnect(&self) {
        self.sink_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// A paced sink was written media that is due `ahead` from now (negative: overdue).
    pub(crate) fn record_paced(&self, ahead: Duration, overdue: bool) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let due = if overdue {
            now.saturating_sub(ahead)
        } else {
            now + ahead
        };
        self.paced_until_unix_ms
            .store(due.as_millis() as u64, Ordering::Relaxed);
    }

    /// For a paced sink: how far the media written so far runs ahead of the wall clock
    /// (negative: behind it, as while upstream is late without filler); `None` if not paced.
    pub fn output_lead_seconds(&self) -> Option<f64> {
        let due = self.paced_until_unix_ms.load(Ordering::Relaxed);
        if due == 0 {
            return None;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Some((due as f64 - now.as_millis() as f64) / 1000.0)
    }

    pub(crate) fn record_filler(&self, filled: Duration) {
        self.filler_ms
            .fetch_add(filled.as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, state: PipelineState) {
        *self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = state;
    }

    /// Lets metrics look at the pipeline's fragment queue and chunk budget.
    pub(crate) fn attach_queues(
        &self,
        fragments: &mpsc::Sender<Fragment>,
        budget: Arc<Semaphore>,
        budget_size: usize,
    ) {
        let _ = self.queues.set(PipelineQueues {
            fragments: fragments.downgrade(),
            budget,
            budget_size,
        });
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> PipelineState {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// New sink sessions started after failures.
    pub fn sink_reconnects(&self) -> u64 {
        self.sink_reconnects.load(Ordering::Relaxed)
    }

    /// Seconds of filler sent while upstream was late.
    pub fn filler_seconds(&self) -> f64 {
        self.filler_ms.load(Ordering::Relaxed) as f64 / 1000.0
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

    /// Fragments not sent: offered again after a stop although published before it, or
    /// skipped by a destination with `required: false` while it was behind.
    pub fn fragments_skipped(&self) -> u64 {
        self.fragments_skipped.load(Ordering::Relaxed)
    }

    /// Fragments offered in this run that are neither published, failed nor skipped: their
    /// sources publish them on the next start (known once the pipeline has ended).
    pub fn fragments_left(&self) -> u64 {
        self.fragments_offered
            .load(Ordering::Relaxed)
            .saturating_sub(
                self.fragments_published() + self.fragments_failed() + self.fragments_skipped(),
            )
    }

    /// The name of the fragment published last, if there was one.
    pub fn last_published(&self) -> Option<String> {
        self.last_published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Unix time of the last publish in seconds, if there was one.
    pub fn last_publish_unix_seconds(&self) -> Option<f64> {
        match self.last_publish_unix_ms.load(Ordering::Relaxed) {
            0 => None,
            millis => Some(millis as f64 / 1000.0),
        }
    }

    /// Time from the first chunk handed to the sink to the sink accepting the last, per
    /// fragment.
    pub fn publish_latency(&self) -> &LatencyHistogram {
        &self.publish_latency
    }

    /// Percentiles of the publish latency over the most recent fragments (up to 10,000).
    pub fn latency_summary(&self) -> LatencySummary {
        let recent = self
            .recent_latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut sorted: Vec<Duration> = recent.iter().copied().collect();
        drop(recent);
        sorted.sort_unstable();
        // Nearest rank: the smallest latency at or above the given share of fragments.
        let rank = |share: f64| {
            let index = ((share * sorted.len() as f64).ceil() as usize).saturating_sub(1);
            sorted.get(index).copied().unwrap_or_default()
        };
        LatencySummary {
            p50: rank(0.50),
            p99: rank(0.99),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }

    /// Bytes read from fragments and not yet taken by the sink (the chunk budget in use).
    pub fn bytes_in_flight(&self) -> u64 {
        self.queues.get().map_or(0, |queues| {
            queues
                .budget_size
                .saturating_sub(queues.budget.available_permits()) as u64
        })
    }

    /// Bytes of the chunk budget not in use, once the pipeline runs.
    pub(crate) fn budget_free(&self) -> Option<u64> {
        let queues = self.queues.get()?;
        Some(queues.budget.available_permits() as u64)
    }

    /// Fragments the source has queued that the chunking stage has not yet opened.
    pub fn fragments_queued(&self) -> u64 {
        let sender = self
            .queues
            .get()
            .and_then(|queues| queues.fragments.upgrade());
        sender.map_or(0, |sender| {
            (sender.max_capacity() - sender.capacity()) as u64
        })
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Publish latency percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// How one pipeline's run ended.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub name: String,
    pub fragments_published: u64,
    pub fragments_failed: u64,
    /// Offered again after a stop although published before it (not sent twice), or skipped
    /// by a destination with `required: false` while it was behind.
    pub fragments_skipped: u64,
    /// Neither published nor failed: left for the next start (a stop, or a failure).
    pub fragments_left: u64,
    pub bytes_published: u64,
    pub sink_reconnects: u64,
    pub elapsed: Duration,
    pub latency: LatencySummary,
    /// Why the pipeline failed, if it did.
    pub error: Option<String>,
}

impl PipelineReport {
    pub(crate) fn new(stats: &PipelineStats, error: Option<String>) -> Self {
        Self {
            name: stats.name().to_owned(),
            fragments_published: stats.fragments_published(),
            fragments_failed: stats.fragments_failed(),
            fragments_skipped: stats.fragments_skipped(),
            fragments_left: stats.fragments_left(),
            bytes_published: stats.bytes_published(),
            sink_reconnects: stats.sink_reconnects(),
            elapsed: stats.elapsed(),
            latency: stats.latency_summary(),
            error,
        }
    }

    /// Mean throughput in MiB/s over the whole run.
    pub fn throughput_mib_s(&self) -> f64 {
        self.bytes_published as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_use_the_nearest_rank() {
        let stats = PipelineStats::new("test");
        assert_eq!(stats.latency_summary(), LatencySummary::default());
        for millis in (1..=100).rev() {
            stats.record_published("f", 1, Duration::from_millis(millis));
        }
        let summary = stats.latency_summary();
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));
    }
}
