//! A quick table of what one sandboxed call costs through Airlock's public API (every call
//! a fresh instance), and what loading costs. Run: `cargo bench -p airlock --bench fresh_call`.
//! The full comparison against the bare wasmtime floor and a process per call is a
//! separate benchmark; this one keeps an eye on the per-call path.

#![allow(missing_docs, unreachable_pub)]

use std::time::{Duration, Instant};

use airlock::{Operation, Policy, Runtime, RuntimeConfig};
use serde_json::json;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

const WARMUP: usize = 200;
const ITERATIONS: usize = 3000;

fn summarize(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "| {name:<46} | {:>9.1} | {:>9.1} | {:>9.1} |",
        at(0.5),
        at(0.99),
        at(0.0)
    );
}

async fn time_calls(
    adapter: &airlock::Adapter,
    config: &serde_json::Value,
    op: impl Fn() -> Operation,
) -> Vec<Duration> {
    for _ in 0..WARMUP {
        adapter
            .invoke(config, op())
            .await
            .result
            .expect("warm-up call succeeds");
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        let result = adapter.invoke(config, op()).await.result;
        samples.push(start.elapsed());
        result.expect("call succeeds");
    }
    samples
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::with_data_dir(dir.path())).unwrap();
    let bytes = std::fs::read(EXAMPLE_ADAPTER).unwrap();

    let start = Instant::now();
    let adapter = runtime
        .load_bytes("example", bytes.clone(), Policy::default(), "example")
        .await
        .unwrap();
    let compile = start.elapsed();
    let mut hits = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        runtime
            .load_bytes("example", bytes.clone(), Policy::default(), "example")
            .await
            .unwrap();
        hits.push(start.elapsed());
    }

    let config = json!({ "region": "eu-west-1", "stepMillis": 0 });
    let id = adapter
        .create(&config, &json!({ "name": "bench" }), Some("bench"))
        .await
        .unwrap()
        .instance_id;

    println!(
        "example adapter ({} KiB), {ITERATIONS} calls after {WARMUP} warm-up, one task\n",
        bytes.len() / 1024
    );
    println!(
        "| {:<46} | {:>9} | {:>9} | {:>9} |",
        "what", "median µs", "p99 µs", "min µs"
    );
    println!("|{:-<48}|{:->11}|{:->11}|{:->11}|", "", "", "", "");
    summarize(
        "validate-config (fresh instance, no state)",
        time_calls(&adapter, &config, || Operation::ValidateConfig).await,
    );
    summarize(
        "status (fresh instance, 1 state read)",
        time_calls(&adapter, &config, || Operation::Status {
            instance_id: id.clone(),
        })
        .await,
    );
    summarize(
        "create, repeated key (fresh, 2 state reads)",
        time_calls(&adapter, &config, || Operation::Create {
            params: json!({ "name": "bench" }),
            idempotency_key: Some("bench".into()),
        })
        .await,
    );
    summarize("load: compile (first load)", vec![compile]);
    summarize("load: precompiled cache hit", hits);
}
