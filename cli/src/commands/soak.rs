//! `airlock soak`: a bounded run of mixed honest and hostile calls on one runtime, reporting
//! calls done, errors by code, and resident memory at the start (after a warm-up) and at
//! the end. It fails if an honest call fails or RSS grew past the bound.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use airlock::{Adapter, Operation, Policy};
use clap::Args;
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Args)]
pub(crate) struct SoakArgs {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// An honest adapter (the example adapter's operations are used); every call must succeed.
    #[arg(long, required = true)]
    honest: PathBuf,
    /// Hostile adapters to call beside it (each call's error is counted, not a failure).
    #[arg(long)]
    hostile: Vec<PathBuf>,
    /// Concurrent callers.
    #[arg(long, default_value_t = 4)]
    callers: usize,
    /// The most RSS may grow between the end of the warm-up (a fifth of the run) and the end.
    #[arg(long, default_value_t = 64)]
    max_rss_growth_mib: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Resident set size of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[derive(Default)]
struct Tally {
    honest_calls: u64,
    honest_failures: Vec<String>,
    hostile_calls: u64,
    errors: BTreeMap<&'static str, u64>,
}

async fn load(runtime: &airlock::Runtime, path: &Path, policy: &str) -> Result<Adapter, ExitCode> {
    let policy =
        Policy::from_toml(policy, "soak policy").map_err(|e| super::fail(&e.to_string()))?;
    runtime
        .load_file(path, policy)
        .await
        .map_err(|e| super::fail(&e.to_string()))
}

pub(crate) async fn run(config: &airlock::RuntimeConfig, args: SoakArgs) -> ExitCode {
    match soak(config, args).await {
        Ok(code) | Err(code) => code,
    }
}

async fn soak(config: &airlock::RuntimeConfig, args: SoakArgs) -> Result<ExitCode, ExitCode> {
    let runtime = super::runtime(config)?;
    let honest = load(&runtime, &args.honest, "").await?;
    let hostile_policy = "[limits]\nfuel = 50000000\nmemory_mib = 16\ndeadline_ms = 1000\n";
    let mut hostile = Vec::new();
    for path in &args.hostile {
        hostile.push(load(&runtime, path, hostile_policy).await?);
    }
    let hostile = Arc::new(hostile);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let run_for = Duration::from_secs(args.secs.max(1));

    let mut callers = Vec::new();
    for caller in 0..args.callers.max(1) {
        let (honest, hostile, tally, stop) =
            (honest.clone(), hostile.clone(), tally.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let config = json!({ "region": "eu-west-1", "stepMillis": 0 });
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let key = format!("soak-{caller}-{}", round % 64);
                let created = honest
                    .create(
                        &config,
                        &json!({ "name": format!("soak-{caller}") }),
                        Some(&key),
                    )
                    .await
                    .map(|r| r.instance_id);
                let outcome = match created {
                    Ok(id) => honest.status(&config, &id).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let hostile_result = if hostile.is_empty() {
                    None
                } else {
                    let adapter = &hostile[(caller + round) % hostile.len()];
                    Some(
                        adapter
                            .invoke(
                                &json!({}),
                                Operation::Status {
                                    instance_id: "x".into(),
                                },
                            )
                            .await,
                    )
                };
                let mut tally = tally.lock().await;
                tally.honest_calls += 2;
                if let Err(e) = outcome {
                    tally.honest_failures.push(e.to_string());
                }
                if let Some(invocation) = hostile_result {
                    tally.hostile_calls += 1;
                    let code = invocation
                        .result
                        .err()
                        .map(|e| e.error_code.as_str())
                        .unwrap_or("OK");
                    *tally.errors.entry(code).or_default() += 1;
                }
            }
        }));
    }
    tokio::time::sleep(run_for / 5).await;
    let rss_start = rss_bytes();
    tokio::time::sleep(run_for - run_for / 5).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let _ = caller.await;
    }
    let rss_end = rss_bytes();
    let elapsed = started.elapsed();
    let tally = tally.lock().await;
    let growth = rss_end.saturating_sub(rss_start);
    let within = growth <= args.max_rss_growth_mib * 1024 * 1024;
    let report = json!({
        "seconds": elapsed.as_secs_f64(),
        "honestCalls": tally.honest_calls,
        "honestFailures": tally.honest_failures.len(),
        "hostileCalls": tally.hostile_calls,
        "hostileOutcomes": tally.errors,
        "rssStartBytes": rss_start,
        "rssEndBytes": rss_end,
        "rssGrowthBytes": growth,
        "rssGrowthBoundBytes": args.max_rss_growth_mib * 1024 * 1024,
        "withinBound": within,
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "soak: {:.1} s, {} callers",
            elapsed.as_secs_f64(),
            args.callers
        );
        println!(
            "honest calls   {} ({} failed)",
            tally.honest_calls,
            tally.honest_failures.len()
        );
        println!("hostile calls  {}", tally.hostile_calls);
        for (code, n) in &tally.errors {
            println!("  {code:<10} {n}");
        }
        println!(
            "RSS            {:.1} MiB after warm-up, {:.1} MiB at the end (+{:.1} MiB; bound {} MiB)",
            mib(rss_start),
            mib(rss_end),
            mib(growth),
            args.max_rss_growth_mib
        );
    }
    for failure in tally.honest_failures.iter().take(5) {
        eprintln!("honest call failed: {failure}");
    }
    Ok(if tally.honest_failures.is_empty() && within {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
