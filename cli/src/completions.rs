//! `streampub completions SHELL`: the shell completion script, from the command line's own
//! definition (clap's generator).

use clap::CommandFactory;

use crate::{write_stdout, Cli};

/// Prints the completion script for `shell` on stdout.
pub(crate) fn print(shell: clap_complete::Shell) -> u8 {
    // Generated into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "streampub", &mut script);
    write_stdout(&script)
}
