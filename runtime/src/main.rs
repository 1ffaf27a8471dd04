//! `airlock`: run, inspect and demonstrate sandboxed provisioning adapters.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
