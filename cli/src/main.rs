fn main() -> std::process::ExitCode {
    streampub_cli::main()
}
