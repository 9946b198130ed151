//! The `streampub` command line, as a library so that a binary with extra plugins linked in can
//! offer the same commands:
//!
//! ```no_run
//! # mod my_plugins { pub fn link() {} }
//! fn main() -> std::process::ExitCode {
//!     my_plugins::link();
//!     streampub_cli::main()
//! }
//! ```

mod bench;
mod completions;
mod config_file;
mod docs;
mod logging;
mod plugins;
mod run;
mod status;
mod summary;
mod supervise;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use self::logging::LogFormat;

/// Exit code of a successful run.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code when a pipeline failed at run time.
pub const EXIT_RUNTIME_FAILURE: u8 = 1;
/// Exit code for a config error (also clap's code for bad arguments).
pub const EXIT_CONFIG_ERROR: u8 = 2;
/// Exit code when every pipeline ran to its end but some fragments failed (bad input refused
/// alone; see the `fragment_failed` lines).
pub const EXIT_FRAGMENTS_FAILED: u8 = 3;

/// Publishes a sequence of media fragments as one continuous live stream.
#[derive(Debug, Parser)]
#[command(name = "streampub", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    log_format: LogFormat,
    /// More logging: -v for DEBUG (chunk progress), -vv for TRACE. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the pipelines of a file until their sources finish (forever with `follow: true`);
    /// SIGINT/SIGTERM stop gracefully, SIGHUP reloads the file. Exit 0 success, 1 runtime failure, 2 config error, 3
    /// some fragments failed.
    Run {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
        /// Reload the file when it changes, as on SIGHUP: changed pipelines restart, the
        /// others keep running.
        #[arg(long)]
        watch: bool,
    },
    /// Checks a pipeline file without publishing anything. Exit 0 valid, 2 invalid.
    Validate {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
    },
    /// Benchmarks a real pipeline (directory source → chunking stage → null or process sink)
    /// over synthetic fragments written first (outside the timing), or over --dir.
    Bench(bench::BenchArgs),
    /// Lists the registered sources, stages and sinks with their options.
    Plugins {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Writes the reference (every option of the pipeline file and of every plugin, and every
    /// command) as Markdown pages generated from the code's own docs.
    Docs {
        /// The directory to write the pages to.
        #[arg(long, default_value = docs::DEFAULT_DIRECTORY)]
        out: PathBuf,
        /// Write nothing: exit 1, naming each page, if the pages in --out differ from what
        /// the code documents.
        #[arg(long)]
        check: bool,
    },
    /// Shows what a running instance is doing, one row per pipeline, from its /healthz (the
    /// pipeline file's `metrics.listen`). Exit 0 if every pipeline runs, 1 otherwise.
    Status {
        /// Where the instance serves /healthz.
        #[arg(long, default_value = status::DEFAULT_URL)]
        url: String,
        /// Print the instance's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Prints a shell completion script, e.g. `streampub completions bash >
    /// /etc/bash_completion.d/streampub`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Writes a command's output to stdout; a reader that stopped early (`| head`) is no error.
/// (Rust ignores SIGPIPE, so `println!` would panic on a closed pipe.)
pub(crate) fn write_stdout(output: &[u8]) -> u8 {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(output).and_then(|()| stdout.flush()) {
        Ok(()) => EXIT_SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => EXIT_SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write to stdout: {error}");
            EXIT_RUNTIME_FAILURE
        }
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    streampub_stages::link();
    streampub_sources::link();
    streampub_sinks::link();
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let code = match cli.command {
        Command::Run { pipeline, watch } => run::run(&pipeline, watch),
        Command::Validate { pipeline } => run::validate(&pipeline),
        Command::Bench(args) => bench::bench(&args),
        Command::Plugins { json } => plugins::list(json),
        Command::Docs { out, check } => docs::write(&out, check),
        Command::Status { url, json } => status::print(&url, json),
        Command::Completions { shell } => completions::print(shell),
    };
    ExitCode::from(code)
}
