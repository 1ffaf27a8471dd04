//! `airlock serve`: Airlock as a multi-tenant HTTP service (see docs/service.md).

use std::net::SocketAddr;
use std::process::ExitCode;

use airlock::RuntimeConfig;
use clap::Args;
use tokio::net::TcpListener;

/// `airlock serve`
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on; port 0 picks a free one (the line `listening on URL` on
    /// stdout says which).
    #[arg(long, default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// After SIGINT or SIGTERM, how long the calls in flight may take to finish before the
    /// service stops without them (e.g. `30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: std::time::Duration,
}

/// Run `airlock serve` until SIGINT or SIGTERM; then finish the requests in flight.
pub(crate) async fn run(config: &RuntimeConfig, args: ServeArgs) -> ExitCode {
    let runtime = match super::runtime(config) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => return super::fail(&format!("cannot listen on {}: {e}", args.listen)),
    };
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(e) => return super::fail(&format!("cannot read the listening address: {e}")),
    };
    println!("listening on http://{address}");
    eprintln!(
        "airlock serve: database {}, node {}",
        runtime.database(),
        runtime.node_id()
    );
    match airlock_server::http::serve(runtime, listener, stop_signal(), args.shutdown_grace).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(&format!("serving on {address}: {e}")),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("airlock serve: cannot watch SIGTERM ({e}); stop it with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("airlock serve: stopping; finishing the requests in flight");
}
