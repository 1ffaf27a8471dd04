//! `airlock`: run, inspect and demonstrate sandboxed provisioning adapters.

fn main() -> std::process::ExitCode {
    airlock_cli::main()
}
