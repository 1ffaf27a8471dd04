//! Serving fakecloud from a command line (`fakecloud`, and `airlock fakecloud`).

use std::io::Write;

use crate::{FakeCloud, FakeCloudConfig};

/// Command-line options of a fakecloud server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Bearer token every /v1 request must carry.
    #[arg(long, env = "FAKECLOUD_TOKEN", default_value = "fakecloud-test-token")]
    pub token: String,
    /// Milliseconds per provisioning step (0: databases are available at once).
    #[arg(long, default_value_t = 200)]
    pub step_millis: u64,
    /// Provisioning steps per database.
    #[arg(long, default_value_t = 4)]
    pub steps: u64,
    /// At most this many /v1 requests per second; the rest get 429. Unlimited if absent.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Lifetime of issued credentials, in seconds.
    #[arg(long, default_value_t = 900)]
    pub credential_ttl_secs: u64,
}

/// Serve until Ctrl-C (or a kill), after printing exactly one line on stdout:
/// `listening on http://127.0.0.1:PORT`.
pub async fn serve(args: ServeArgs) -> std::io::Result<()> {
    let config = FakeCloudConfig {
        token: args.token,
        step_millis: args.step_millis,
        steps: args.steps,
        rate_limit_per_second: args.rate_limit,
        credential_ttl_secs: args.credential_ttl_secs,
        admin_stats: true,
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
