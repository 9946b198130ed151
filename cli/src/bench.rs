//! `streampub bench`: a real pipeline (directory source, chunking stage, the chosen sink) over
//! synthetic or given fragments, and its numbers.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use streampub_core::plugin::ByteSize;
use streampub_core::LoadedConfig;

use crate::config_file::registry;
use crate::run::{exit_code, start};
use crate::summary::{cpu_seconds, BenchmarkSummary};
use crate::supervise::{supervise, Reloading};
use crate::EXIT_CONFIG_ERROR;

/// The pipeline's name in logs.
const PIPELINE: &str = "bench";

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// How many synthetic fragments to write (ignored with --dir).
    #[arg(long, default_value_t = 10)]
    fragments: usize,
    /// Size of each synthetic fragment, e.g. 8.8MB or 1GiB (ignored with --dir).
    #[arg(long, default_value = "8.8MB")]
    fragment_size: ByteSize,
    /// The pipeline's chunk_size: a size, or `auto`.
    #[arg(long, default_value = "256KiB")]
    chunk_size: String,
    /// The pipeline's max_in_flight.
    #[arg(long, default_value = "1MiB")]
    max_in_flight: ByteSize,
    /// Publish the files of this directory instead of synthetic ones.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// `null`, or `process:CMD` to pipe into `sh -c CMD` (e.g. `process:cat > /dev/null`).
    #[arg(long, default_value = "null")]
    sink: String,
    /// Fan out to this many copies of the sink (`sinks:`), from one read of each fragment.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    destinations: u16,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn bench(args: &BenchArgs) -> u8 {
    let scratch = match tempfile::Builder::new()
        .prefix("streampub-bench-")
        .tempdir()
    {
        Ok(scratch) => scratch,
        Err(error) => {
            eprintln!("error: cannot create a temporary directory: {error}");
            return crate::EXIT_RUNTIME_FAILURE;
        }
    };
    let directory = match &args.dir {
        // Relative to the working directory, not to the generated pipeline file's.
        Some(dir) => match std::path::absolute(dir) {
            Ok(dir) => dir,
            Err(error) => {
                eprintln!("error: --dir {}: {error}", dir.display());
                return EXIT_CONFIG_ERROR;
            }
        },
        None => {
            let directory = scratch.path().join("fragments");
            if let Err(error) =
                write_fragments(&directory, args.fragments, args.fragment_size.bytes())
            {
                eprintln!(
                    "error: cannot write synthetic fragments in {}: {error}",
                    directory.display()
                );
                return crate::EXIT_RUNTIME_FAILURE;
            }
            directory
        }
    };
    let sink = match sink_yaml(&args.sink) {
        Ok(sink) => sink,
        Err(message) => {
            eprintln!("error: --sink {}: {message}", args.sink);
            return EXIT_CONFIG_ERROR;
        }
    };
    let sinks = match args.destinations {
        1 => format!("    sink:\n{sink}"),
        count => {
            let entry = sink.trim_start().replace("\n      ", "\n        ");
            let entries: String = (1..=count).map(|_| format!("      - {entry}")).collect();
            format!("    sinks:\n{entries}")
        }
    };
    let yaml = format!(
        "pipelines:\n  - name: {PIPELINE}\n    chunk_size: {}\n    max_in_flight: {}\n    source:\n      type: directory\n      path: {}\n      follow: false\n      settle: 0s\n{sinks}",
        quote(&args.chunk_size),
        quote(&args.max_in_flight.to_string()),
        quote(&directory.display().to_string()),
    );
    let config = match registry().and_then(|registry| {
        LoadedConfig::from_yaml(
            &yaml,
            Path::new("<bench>"),
            scratch.path(),
            &Default::default(),
            &registry,
        )
        .map_err(|error| {
            crate::logging::report_config_error(&error);
            EXIT_CONFIG_ERROR
        })
    }) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let total_bytes = directory_bytes(&directory);
    crate::run::block_on(run_bench(config, args.json, total_bytes))
}

/// The bytes of the files in `directory`, for the progress bar.
fn directory_bytes(directory: &Path) -> u64 {
    std::fs::read_dir(directory)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.len())
        .sum()
}

async fn run_bench(config: LoadedConfig, json: bool, total_bytes: u64) -> u8 {
    let started = Instant::now();
    let cpu_at_start = cpu_seconds();
    let runtime = match start(&config).await {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let progress = (!json && std::io::stderr().is_terminal()).then(|| {
        let stats = runtime.status().pipelines().remove(0);
        tokio::spawn(async move {
            let bar = indicatif::ProgressBar::new(total_bytes).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {binary_bytes}/{binary_total_bytes} {msg}",
                )
                .expect("a valid template"),
            );
            crate::logging::set_progress_bar(Some(bar.clone()));
            loop {
                bar.set_position(stats.bytes_published());
                // MiB/s over the whole run, as the summary counts it.
                let mib_per_second = stats.bytes_published() as f64
                    / (1024.0 * 1024.0)
                    / stats.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{mib_per_second:.1} MiB/s, {} fragments",
                    stats.fragments_published()
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let report = supervise(runtime, &config, Reloading::Never).await;
    let wall_time = started.elapsed();
    if let Some(progress) = progress {
        progress.abort();
        crate::logging::set_progress_bar(None);
    }
    let pipeline = &report.pipelines[0];
    let summary = BenchmarkSummary::new(pipeline, wall_time, cpu_at_start);
    let mut stdout = std::io::stdout().lock();
    let _ = if json {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string(&summary).expect("plain data")
        )
    } else {
        write!(stdout, "{}", summary.to_text("Benchmark:"))
    };
    exit_code(&report)
}

/// The sink mapping for `--sink`.
fn sink_yaml(sink: &str) -> Result<String, String> {
    match sink.split_once(':') {
        None if sink == "null" => Ok("      type: null\n".to_owned()),
        Some(("process", command)) if !command.trim().is_empty() => Ok(format!(
            "      type: process\n      command: [sh, -c, {}]\n",
            quote(command)
        )),
        _ => Err("expected `null` or `process:CMD`".to_owned()),
    }
}

/// A YAML scalar holding exactly `text` (JSON strings are YAML).
fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// Writes `count` fragments of `size` pseudo-random bytes (so nothing is sparse or
/// deduplicated), named in publishing order; they stay in the page cache for the run.
fn write_fragments(directory: &Path, count: usize, size: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for index in 0..count {
        let file = std::fs::File::create(directory.join(format!("batch-{index:06}.bin")))?;
        let mut writer = std::io::BufWriter::new(file);
        let mut left = size;
        while left > 0 {
            for byte in block.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            let take = left.min(block.len() as u64) as usize;
            writer.write_all(&block[..take])?;
            left -= take as u64;
        }
        writer.flush()?;
    }
    Ok(())
}
