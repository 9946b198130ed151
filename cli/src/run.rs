//! `streampub run` and `streampub validate`.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use streampub_core::{ConfigError, LoadedConfig, Registry, RunReport, Runtime, Services};
use tracing::{error, info, warn};

use crate::summary::BenchmarkSummary;
use crate::{EXIT_CONFIG_ERROR, EXIT_FRAGMENTS_FAILED, EXIT_RUNTIME_FAILURE, EXIT_SUCCESS};

/// Exit code when a second signal cuts the graceful shutdown short (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;
/// Exit code when a graceful stop did not finish within `shutdown_timeout` plus
/// [`SHUTDOWN_GRACE`] (something blocked, such as a read from a hung file system).
pub(crate) const EXIT_SHUTDOWN_STUCK: i32 = 124;
/// How long past `shutdown_timeout` a graceful stop may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The registered plugins, or prints why there are none.
pub(crate) fn registry() -> Result<Registry, u8> {
    Registry::from_inventory().map_err(|error| {
        eprintln!("error: {error}");
        EXIT_CONFIG_ERROR
    })
}

/// Loads the file, or prints why not.
fn load(path: &Path) -> Result<LoadedConfig, u8> {
    let registry = registry()?;
    LoadedConfig::from_file(path, &registry).map_err(|error| {
        eprintln!("error: {error}");
        EXIT_CONFIG_ERROR
    })
}

pub(crate) fn validate(path: &Path) -> u8 {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match config.validate() {
        Ok(()) => {
            let count = config.pipelines.len();
            println!(
                "{}: valid ({count} pipeline{})",
                path.display(),
                if count == 1 { "" } else { "s" }
            );
            EXIT_SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_CONFIG_ERROR
        }
    }
}

pub(crate) fn run(path: &Path) -> u8 {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    block_on(run_pipelines(config))
}

/// Runs `future` on a new multi-threaded runtime.
pub(crate) fn block_on(future: impl Future<Output = u8>) -> u8 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime");
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error:#}");
            return EXIT_RUNTIME_FAILURE;
        }
    };
    let code = runtime.block_on(future);
    // Blocking threads still stuck (a read from a hung file system) must not keep the process.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    code
}

/// Runs every pipeline of `config`; prints the benchmark summary of each with a `null` sink.
async fn run_pipelines(config: LoadedConfig) -> u8 {
    let started = Instant::now();
    let runtime = match start(&config).await {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = supervise(runtime, &config).await;
    let wall_time = started.elapsed();
    for (plan, pipeline) in config.pipelines.iter().zip(&report.pipelines) {
        if plan.sink.type_name == "null" {
            let summary = BenchmarkSummary::new(pipeline, wall_time, 0.0);
            print!(
                "{}",
                summary.to_text(&format!("Pipeline {} (null sink):", pipeline.name))
            );
        }
    }
    exit_code(&report)
}

/// Starts the pipelines and the `metrics` listener, or prints why they cannot start.
pub(crate) async fn start(config: &LoadedConfig) -> Result<Runtime, u8> {
    let services = Services::default();
    let started = match serve_metrics(config, &services) {
        Ok(()) => Runtime::start_with(config, services).await,
        Err(error) => Err(error),
    };
    started.map_err(|error| {
        eprintln!("error: {error}");
        EXIT_CONFIG_ERROR
    })
}

/// Binds the top-level `metrics.listen`, if set, before any pipeline starts.
fn serve_metrics(config: &LoadedConfig, services: &Services) -> Result<(), ConfigError> {
    let Some(metrics) = &config.metrics else {
        return Ok(());
    };
    streampub_sources::http::serve_metrics(services, metrics.listen).map_err(|error| {
        ConfigError::new(
            &config.path,
            format!("metrics: cannot listen on {}: {error}", metrics.listen),
        )
    })
}

pub(crate) fn exit_code(report: &RunReport) -> u8 {
    let failed_fragments = report
        .pipelines
        .iter()
        .any(|pipeline| pipeline.fragments_failed > 0);
    match (report.succeeded(), failed_fragments) {
        (false, _) => EXIT_RUNTIME_FAILURE,
        (true, true) => EXIT_FRAGMENTS_FAILED,
        (true, false) => EXIT_SUCCESS,
    }
}

/// Waits for the pipelines to end; the first SIGINT, SIGTERM or SIGHUP stops them gracefully, a
/// second one exits at once. (SIGHUP, which would otherwise kill the process, means "reload" to
/// daemons; until streampub reloads, it stops gracefully instead of dropping every stream.)
pub(crate) async fn supervise(runtime: Runtime, config: &LoadedConfig) -> RunReport {
    let shutdown = runtime.shutdown_token();
    let timeout = config.shutdown_timeout;
    tokio::spawn(async move {
        if let Err(error) = wait_for_signal().await {
            warn!("Cannot listen for signals: {error:#}");
            return;
        }
        info!("Shutting down: finishing the fragment in flight (at most {timeout}); signal again to stop at once");
        shutdown.cancel();
        exit_if_stuck(timeout.get() + SHUTDOWN_GRACE);
        if wait_for_signal().await.is_ok() {
            warn!(
                "Second signal: stopping now; unfinished fragments are published on the next start"
            );
            std::process::exit(EXIT_INTERRUPTED);
        }
    });
    runtime.wait().await
}

/// Ends the process after `limit` unless it ended by itself: a last resort for a stop that
/// cannot finish (a thread blocked in the kernel cannot be cancelled). On its own thread, so it
/// fires even if the async runtime is stuck.
fn exit_if_stuck(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        error!(
            event = "shutdown_stuck",
            limit_ms = limit.as_millis() as u64,
            "The graceful stop did not finish within shutdown_timeout + {} s; exiting now (unfinished fragments are published on the next start)",
            SHUTDOWN_GRACE.as_secs()
        );
        std::process::exit(EXIT_SHUTDOWN_STUCK);
    });
}

/// Waits for SIGINT, SIGTERM or SIGHUP.
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        _ = hangup.recv() => {}
    }
    Ok(())
}
