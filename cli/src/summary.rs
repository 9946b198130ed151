//! The benchmark summary: what `streampub bench` reports, and what `streampub run` prints at
//! the end of every pipeline with a `null` sink.

use std::time::Duration;

use serde::Serialize;
use streampub_core::PipelineReport;

/// One run's numbers. Serialized as the `--json` output; the field names are an interface.
#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkSummary {
    pub bytes: u64,
    pub fragments: u64,
    /// Wall time of the run.
    pub seconds: f64,
    pub throughput_mib_s: f64,
    pub latency_ms: LatencyMilliseconds,
    /// Peak resident set size of this process (VmHWM).
    pub peak_rss_kib: u64,
    /// User + system CPU time of this process during the run (not of sink child processes).
    pub cpu_seconds: f64,
}

/// Per-fragment publish latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyMilliseconds {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl BenchmarkSummary {
    /// The summary of `report`, over `wall_time`, with this process's peak memory and the CPU
    /// time it used since `cpu_at_start` (a [`cpu_seconds`] reading).
    pub fn new(report: &PipelineReport, wall_time: Duration, cpu_at_start: f64) -> Self {
        let seconds = wall_time.as_secs_f64();
        let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
        Self {
            bytes: report.bytes_published,
            fragments: report.fragments_published,
            seconds,
            throughput_mib_s: report.bytes_published as f64 / (1024.0 * 1024.0) / seconds.max(1e-9),
            latency_ms: LatencyMilliseconds {
                p50: millis(report.latency.p50),
                p99: millis(report.latency.p99),
                max: millis(report.latency.max),
            },
            peak_rss_kib: peak_rss_kib().unwrap_or(0),
            cpu_seconds: cpu_seconds() - cpu_at_start,
        }
    }

    /// The summary as lines for people.
    pub fn to_text(&self, title: &str) -> String {
        format!(
            "{title}\n  bytes       {} ({:.2} MiB)\n  fragments   {}\n  wall time   {:.3} s\n  throughput  {:.1} MiB/s\n  latency     p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n  peak RSS    {} KiB ({:.1} MiB)\n  CPU time    {:.3} s\n",
            self.bytes,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.fragments,
            self.seconds,
            self.throughput_mib_s,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.peak_rss_kib,
            self.peak_rss_kib as f64 / 1024.0,
            self.cpu_seconds,
        )
    }
}

/// This process's peak resident set size (VmHWM) in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of this process so far (all its threads).
pub fn cpu_seconds() -> f64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    time.tv_sec as f64 + time.tv_nsec as f64 / 1e9
}
