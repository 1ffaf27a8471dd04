//! `fakecloud`: run the fake cloud database API on 127.0.0.1 until killed.
//!
//! Prints exactly one line on stdout, `listening on http://127.0.0.1:PORT`, once the port is
//! bound; logs go to stderr (`--log debug` logs every request).

use std::io::IsTerminal;

use clap::Parser;
use fakecloud::ServeArgs;

/// A fake cloud database API on 127.0.0.1, for testing Airlock adapters.
#[derive(Debug, Parser)]
#[command(name = "fakecloud", version)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
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
    fakecloud::serve(args.serve).await
}
