//! `streampub` with this crate's plugins linked in: the same commands, two more types.

fn main() -> std::process::ExitCode {
    streampub_example_plugin::link();
    streampub_cli::main()
}
