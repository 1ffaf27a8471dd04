//! The `airlock` command line. Exit statuses: 0 success; 10-15 the adapter's error code
//! (VALIDATION 10, RETRYABLE 11, PERMANENT 12, AUTH 13, LIMIT 14, INTERNAL 15); 2 a usage
//! error; 3 the adapter or policy could not be loaded, or the data directory could not be
//! used; 1 `airlock check` found a rule broken.

mod check;
mod demo;
mod inspect;
mod invoke;
mod new;
mod output;
mod serve;
mod soak;
mod tenant;

use std::path::PathBuf;
use std::process::ExitCode;

use airlock::{DatabaseUrl, Policy, Runtime, RuntimeConfig};
use clap::{Parser, Subcommand};

/// Exit status when a component or policy cannot be loaded, or the runtime cannot start.
pub(crate) const EXIT_LOAD: u8 = 3;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Run untrusted provisioning adapters in a WebAssembly sandbox"
)]
struct Cli {
    /// Where the state database and the compiled-component cache live [default:
    /// $XDG_DATA_HOME/airlock, else ~/.local/share/airlock; never the working directory].
    #[arg(long, global = true, env = "AIRLOCK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where state, idempotency claims and records live: `sqlite:PATH`, or
    /// `postgres://USER@HOST/DATABASE` to share them between several Airlock nodes
    /// [default: sqlite:DATA_DIR/airlock.db]. Compiled components stay in the data directory.
    #[arg(long, global = true, env = "AIRLOCK_DATABASE_URL", value_parser = DatabaseUrl::parse, hide_env_values = true)]
    database: Option<DatabaseUrl>,
    /// This node's name in claims [default: the host name and boot id]. Give every machine
    /// (or container with its own process ids) its own.
    #[arg(long, global = true, env = "AIRLOCK_NODE_ID")]
    node_id: Option<String>,
    /// How long a create's claim on its key lives without a heartbeat (renewed every third
    /// of it): a node that stops loses its keys this long after its last heartbeat.
    #[arg(long, global = true, env = "AIRLOCK_CLAIM_LEASE", default_value = "6s", value_parser = humantime::parse_duration)]
    claim_lease: std::time::Duration,
    /// Mixed into every client token, so installations sharing a provider account never
    /// receive each other's resources for the same key. Set it once: changing it changes
    /// every token.
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_CLIENT_TOKEN_SALT",
        hide_env_values = true
    )]
    client_token_salt: Option<String>,
    /// Host log filter (tracing syntax), e.g. `info` or `airlock::guest=debug`.
    #[arg(long, global = true, default_value = "warn", env = "AIRLOCK_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Call one operation of an adapter in a fresh sandbox and print the result as JSON.
    Invoke(invoke::InvokeArgs),
    /// Check an adapter against the contract's rules, with provider faults injected.
    Check(check::CheckArgs),
    /// Show what a component exports and imports.
    Inspect(inspect::InspectArgs),
    /// Run the bundled example adapter through its whole life, step by step.
    Demo(demo::DemoArgs),
    /// Serve fakecloud, a provider API on 127.0.0.1, to run adapters against locally.
    Fakecloud(fakecloud::ServeArgs),
    /// Run mixed honest and hostile calls for a while; report calls, errors and RSS.
    Soak(soak::SoakArgs),
    /// Create a ready adapter crate: the SDK, the five operations, a policy file.
    New(new::NewArgs),
    /// Administer the service's tenants: create, list, rotate-key, set-ceiling.
    Tenant(tenant::TenantArgs),
    /// Serve Airlock over HTTP to several tenants (docs/service.md).
    Serve(serve::ServeArgs),
}

/// The whole `airlock` binary: parse the command line, run the command and return its
/// exit status (0 success, 10-15 the adapter's error code, 2 usage, 3 load, 1 a broken
/// `airlock check` rule; docs/cli.md has the table).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain text, which
        // tools (and the tests that search stderr for a leaked secret) read as written.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    // An empty path makes `Runtime::new` say that there is no home to put data in.
    let data_dir = cli
        .data_dir
        .or_else(RuntimeConfig::default_data_dir)
        .unwrap_or_default();
    let config = RuntimeConfig {
        database: cli.database,
        node_id: cli.node_id,
        claim_lease: cli.claim_lease,
        client_token_salt: cli.client_token_salt,
        ..RuntimeConfig::with_data_dir(&data_dir)
    };
    tokio.block_on(async move {
        match cli.command {
            Command::Invoke(args) => invoke::run(&config, args).await,
            Command::Inspect(args) => inspect::run(&config, args).await,
            Command::Check(args) => check::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Soak(args) => soak::run(&config, args).await,
            Command::New(args) => new::run(args),
            Command::Tenant(args) => tenant::run(&config, args).await,
            Command::Serve(args) => serve::run(&config, args).await,
            Command::Fakecloud(args) => match fakecloud::serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("fakecloud: {e}")),
            },
        }
    })
}

/// Print `message` as an error and return the load-failure status.
pub(crate) fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_LOAD)
}

/// The runtime the global options describe.
pub(crate) fn runtime(config: &RuntimeConfig) -> Result<Runtime, ExitCode> {
    Runtime::new(config.clone()).map_err(|e| fail(&e.to_string()))
}

pub(crate) fn policy(path: Option<&std::path::Path>) -> Result<Policy, ExitCode> {
    match path {
        None => Ok(Policy::default()),
        Some(path) => Policy::from_file(path).map_err(|e| fail(&e.to_string())),
    }
}
