//! `fakecloud`: run the fake cloud database API on 127.0.0.1 until killed.
//!
//! Prints exactly one line on stdout, `listening on http://127.0.0.1:PORT`, once the port is
//! bound; logs go to stderr (`--log debug` logs every request).

use std::io::{IsTerminal, Write};

use clap::Parser;
use fakecloud::{FakeCloud, FakeCloudConfig};

/// A fake cloud database API on 127.0.0.1, for testing Airlock adapters.
#[derive(Debug, Parser)]
#[command(name = "fakecloud", version)]
struct Args {
    /// Port on 127.0.0.1 to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Bearer token every /v1 request must carry.
    #[arg(long, env = "FAKECLOUD_TOKEN", default_value = "fakecloud-test-token")]
    token: String,
    /// Milliseconds per provisioning step (0: databases are available at once).
    #[arg(long, default_value_t = 200)]
    step_millis: u64,
    /// Provisioning steps per database.
    #[arg(long, default_value_t = 4)]
    steps: u64,
    /// At most this many /v1 requests per second; the rest get 429. Unlimited if absent.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Lifetime of issued credentials, in seconds.
    #[arg(long, default_value_t = 900)]
    credential_ttl_secs: u64,
    /// Log filter for stderr (tracing-subscriber syntax, such as `debug`).
    #[arg(long, env = "FAKECLOUD_LOG", default_value = "warn")]
    log: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = FakeCloudConfig {
        token: args.token,
        step_millis: args.step_millis,
        steps: args.steps,
        rate_limit_per_second: args.rate_limit,
        credential_ttl_secs: args.credential_ttl_secs,
    };
    let cloud = FakeCloud::start_on(config, args.port).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", cloud.base_url())?;
        stdout.flush()?;
    }
    tokio::signal::ctrl_c().await?;
    cloud.shutdown();
    Ok(())
}
