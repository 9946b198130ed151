//! Watching over a running runtime: stop signals, and reloading the pipeline file on SIGHUP or
//! when it changes (`run --watch`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use streampub_core::{LoadedConfig, RunReport, Runtime};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};

use crate::config_file::registry;

/// How long past `shutdown_timeout` a graceful stop may take before the process exits anyway.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Exit code when a second signal cuts the graceful shutdown short (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;
/// Exit code when a graceful stop did not finish within `shutdown_timeout` plus
/// [`SHUTDOWN_GRACE`] (something blocked, such as a read from a hung file system).
const EXIT_SHUTDOWN_STUCK: i32 = 124;
/// How often `run --watch` looks at the pipeline file. Polling the file's length and time
/// (instead of inotify) also sees an editor's replace-by-rename and files on network file
/// systems, and costs one `stat` a second.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Where a reload reads the pipeline file from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reloading<'a> {
    /// SIGHUP re-reads `path`; with `watch`, so does a change of the file.
    From { path: &'a Path, watch: bool },
    /// Nothing to reload from (a benchmark's generated pipeline): SIGHUP stops like SIGTERM.
    Never,
}

/// The signals streampub acts on.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

/// What a signal asks for.
enum Asked {
    Stop,
    Reload,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Asked {
        tokio::select! {
            _ = self.interrupt.recv() => Asked::Stop,
            _ = self.terminate.recv() => Asked::Stop,
            _ = self.hangup.recv() => Asked::Reload,
        }
    }
}

/// Waits for the pipelines to end. SIGINT or SIGTERM stops them gracefully, a second one
/// exits at once; SIGHUP (and, with `--watch`, a change of the file) reloads the pipeline
/// file: see [`Runtime::reload`].
pub(crate) async fn supervise(
    mut runtime: Runtime,
    config: &LoadedConfig,
    reloading: Reloading<'_>,
) -> RunReport {
    let mut signals = match Signals::new() {
        Ok(signals) => Some(signals),
        Err(error) => {
            warn!("Cannot listen for signals: {error}");
            None
        }
    };
    let (path, watch) = match reloading {
        Reloading::From { path, watch } => (Some(path), watch),
        Reloading::Never => (None, false),
    };
    let mut file_version = path.and_then(version_of);
    let mut stopping = false;
    loop {
        let asked = async {
            match &mut signals {
                Some(signals) => signals.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = runtime.finished() => break,
            asked = asked => match (asked, path) {
                (Asked::Reload, Some(path)) if !stopping => reload(&mut runtime, path).await,
                _ if stopping => {
                    warn!(
                        event = "shutdown_forced",
                        "Second signal: stopping now; unfinished fragments are published on the next start"
                    );
                    std::process::exit(EXIT_INTERRUPTED);
                }
                _ => {
                    let timeout = config.shutdown_timeout;
                    info!(
                        event = "shutdown_requested",
                        timeout_ms = timeout.get().as_millis() as u64,
                        "Shutting down: finishing the fragment in flight (at most {timeout}); signal again to stop at once"
                    );
                    runtime.shutdown();
                    exit_if_stuck(timeout.get() + SHUTDOWN_GRACE);
                    stopping = true;
                }
            },
            () = tokio::time::sleep(WATCH_PERIOD), if watch && !stopping => {
                let Some(path) = path else { continue };
                let version = version_of(path);
                if version != file_version {
                    file_version = version;
                    reload(&mut runtime, path).await;
                }
            }
        }
    }
    runtime.wait().await
}

/// The file's length and modification time: what a change changes.
fn version_of(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// Reads the pipeline file again and applies it; a file that does not load or validate is
/// logged with every problem, and the running pipelines stay as they are.
async fn reload(runtime: &mut Runtime, path: &Path) {
    info!(event = "config_reloading", path = %path.display(), "Reloading {}", path.display());
    let loaded = match registry() {
        Ok(registry) => {
            LoadedConfig::from_file(path, &registry).map_err(|error| error.describe_all())
        }
        Err(_) => Err("the plugins could not be listed".to_owned()),
    };
    let result = match loaded {
        Ok(config) => runtime
            .reload(&config)
            .await
            .map_err(|error| error.describe_all()),
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        error!(
            event = "config_reload_failed",
            path = %path.display(),
            error = %error,
            "The reloaded {} has errors; the running pipelines stay as they are:\nerror: {error}",
            path.display()
        );
    }
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
