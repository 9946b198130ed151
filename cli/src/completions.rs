//! `streampub completions SHELL`: the shell completion script, from the command line's own
//! definition (clap's generator).

use std::io::Write;

use clap::CommandFactory;

use crate::{Cli, EXIT_RUNTIME_FAILURE, EXIT_SUCCESS};

/// Prints the completion script for `shell` on stdout.
pub(crate) fn print(shell: clap_complete::Shell) -> u8 {
    // Generated into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "streampub", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => EXIT_SUCCESS,
        // The reader stopped early (`| head`): nothing is wrong with the script.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => EXIT_SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the completion script: {error}");
            EXIT_RUNTIME_FAILURE
        }
    }
}
