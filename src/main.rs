//! The `alertrelay` binary: parses arguments, hands over to the library.

fn main() -> std::process::ExitCode {
    alertrelay::cli::main()
}
