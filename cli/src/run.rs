//! `streampub run` and `streampub validate`.

use std::future::Future;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use streampub_core::plugin::Services;
use streampub_core::{ConfigError, LoadedConfig, PipelinePlan, RunReport, Runtime};

use crate::config_file::load;
use crate::logging::report_config_error;
use crate::summary::BenchmarkSummary;
use crate::supervise::{supervise, Reloading, SHUTDOWN_GRACE};
use crate::{EXIT_CONFIG_ERROR, EXIT_FRAGMENTS_FAILED, EXIT_RUNTIME_FAILURE, EXIT_SUCCESS};

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
            report_config_error(&error);
            EXIT_CONFIG_ERROR
        }
    }
}

pub(crate) fn run(path: &Path, watch: bool) -> u8 {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    block_on(run_pipelines(config, Reloading::From { path, watch }))
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
async fn run_pipelines(config: LoadedConfig, reloading: Reloading<'_>) -> u8 {
    let started = Instant::now();
    let runtime = match start(&config).await {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = supervise(runtime, &config, reloading).await;
    let wall_time = started.elapsed();
    for pipeline in &report.pipelines {
        let plan = config
            .pipelines
            .iter()
            .find(|plan| plan.name == pipeline.name);
        let discards = |plan: &&PipelinePlan| {
            plan.destinations
                .iter()
                .all(|destination| destination.sink.config.discards_output())
        };
        if let Some(plan) = plan.filter(discards) {
            let summary = BenchmarkSummary::new(pipeline, wall_time, 0.0);
            let sinks: Vec<&str> = plan
                .destinations
                .iter()
                .map(|destination| destination.sink.type_name.as_str())
                .collect();
            let title = format!("Pipeline {} ({} sink):", pipeline.name, sinks.join(", "));
            print!("{}", summary.to_text(&title));
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
        report_config_error(&error);
        EXIT_CONFIG_ERROR
    })
}

/// Binds the top-level `metrics.listen`, if set, before any pipeline starts.
fn serve_metrics(config: &LoadedConfig, services: &Services) -> Result<(), ConfigError> {
    let Some(metrics) = &config.metrics else {
        return Ok(());
    };
    streampub_http::serve_metrics(services, metrics.listen).map_err(|error| {
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
