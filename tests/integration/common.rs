//! Shared helpers: the built components, a runtime in a temporary directory, and the
//! honest call every hostile test makes afterwards.

#![allow(dead_code)]

use airlock::{Adapter, Output, Policy, Runtime, RuntimeConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// A runtime whose data directory lives as long as it does.
pub struct TestRuntime {
    pub runtime: Runtime,
    pub dir: TempDir,
}

pub fn runtime() -> TestRuntime {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime_in(dir.path());
    TestRuntime { runtime, dir }
}

pub fn runtime_in(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        pool_size: 32,
        ..RuntimeConfig::with_data_dir(dir)
    })
    .expect("runtime")
}

pub async fn load(runtime: &Runtime, path: &str, policy: &str) -> Adapter {
    let policy = Policy::from_toml(policy, "test policy").expect("policy parses");
    runtime
        .load_file(path, policy)
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// The example adapter's config: provisioning completes at once unless `step_millis` says
/// otherwise.
pub fn example_config(step_millis: u64) -> Value {
    json!({ "region": "eu-west-1", "plan": "small", "stepMillis": step_millis })
}

/// An honest create and status on the example adapter, on `runtime`: both must succeed.
pub async fn assert_honest_call_succeeds(runtime: &Runtime) {
    let example = load(runtime, EXAMPLE_ADAPTER, "").await;
    let config = example_config(0);
    let created = example
        .create(&config, &json!({ "name": "honest" }), None)
        .await
        .expect("an honest create after a hostile call succeeds");
    let status = example
        .status(&config, &created.instance_id)
        .await
        .expect("honest status");
    assert_eq!(status.status, airlock::Status::Success);
}

/// The output of a successful invocation, or a panic with the error.
pub fn ok(result: Result<Output, airlock::AdapterError>) -> Output {
    result.unwrap_or_else(|e| panic!("expected success, got {e}"))
}

/// Whether a test may go on without `what` (a tool or a server it needs): under `CI=true`
/// a missing one fails the test, since CI installs everything the suite needs and a skip
/// there would pass what was not run; elsewhere it prints one line saying what is skipped
/// and why, and returns false.
pub fn present_or_skip(what: &str, present: bool, skipped: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing, and CI=true: CI must install it ({skipped} would be skipped)");
    }
    eprintln!("SKIPPED {skipped}: {what} is missing (under CI=true this fails)");
    false
}
