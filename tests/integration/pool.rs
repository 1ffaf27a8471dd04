//! The instance pool: `RuntimeConfig::pool_size` instances exist at once. A call that finds
//! every slot taken waits for one (the default), or, with `RuntimeConfig::pool_wait`, waits
//! at most that long and then fails with `LIMIT`. Never a crash, never a raw wasmtime error.

use std::time::{Duration, Instant};

use airlock::{ErrorCode, LimitKind, Operation, Runtime, RuntimeConfig};
use fakecloud::{FakeCloud, FakeCloudConfig, Fault};
use serde_json::json;

use crate::common::*;

const TOKEN: &str = "pool-test-token-0123456789";
const CALLS: usize = 10;
const POOL: u32 = 2;

/// A runtime with a pool of two, fakecloud holding each of the next `CALLS` requests for
/// `delay`, and the fakecloud adapter granted that provider.
async fn setup(
    pool_wait: Option<Duration>,
    delay: Duration,
) -> (tempfile::TempDir, FakeCloud, airlock::Adapter) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        pool_size: POOL,
        pool_wait,
        ..RuntimeConfig::with_data_dir(dir.path())
    })
    .unwrap();
    let cloud = FakeCloud::start(FakeCloudConfig {
        token: TOKEN.into(),
        step_millis: 0,
        ..FakeCloudConfig::default()
    })
    .await
    .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let policy = format!(
        "[[http.allow]]\nurl = \"{base}/v1/\"\naddresses = [\"127.0.0.1/32\"]\n\n[secrets.fakecloud-token]\nsource = \"file:{}\"\ndestinations = [\"{base}/v1/\"]\n",
        token_file.display(),
        base = cloud.base_url()
    );
    let adapter = load(&runtime, FAKECLOUD_ADAPTER, &policy).await;
    cloud.inject_fault(Fault::Delay {
        millis: delay.as_millis() as u64,
        count: CALLS as u32,
    });
    (dir, cloud, adapter)
}

/// `CALLS` creates at once; their invocations in the order they were started.
async fn creates_at_once(
    cloud: &FakeCloud,
    adapter: &airlock::Adapter,
) -> Vec<airlock::Invocation> {
    let config = json!({ "endpoint": cloud.base_url() });
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let (adapter, config) = (adapter.clone(), config.clone());
            tokio::spawn(async move {
                let op = Operation::Create {
                    params: json!({ "name": format!("pool-{i}") }),
                    idempotency_key: None,
                };
                adapter.invoke(&config, op).await
            })
        })
        .collect();
    let mut invocations = Vec::new();
    for call in calls {
        invocations.push(call.await.expect("no call panics"));
    }
    invocations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_calls_until_a_slot_frees() {
    let delay = Duration::from_millis(300);
    let (_dir, cloud, adapter) = setup(None, delay).await;
    let started = Instant::now();
    let invocations = creates_at_once(&cloud, &adapter).await;
    for invocation in &invocations {
        assert!(
            invocation.result.is_ok(),
            "a queued call succeeds: {:?}",
            invocation.result
        );
    }
    assert_eq!(cloud.resource_count(), CALLS);
    // At most two instances at once, each held `delay` by the provider: the ten calls
    // cannot finish in fewer than five rounds.
    let rounds = (CALLS as u32).div_ceil(POOL);
    assert!(
        started.elapsed() >= delay * rounds,
        "{CALLS} calls through a pool of {POOL} took only {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_pool_wait_a_full_pool_fails_calls_with_limit() {
    let (_dir, cloud, adapter) =
        setup(Some(Duration::from_millis(50)), Duration::from_millis(1500)).await;
    let invocations = creates_at_once(&cloud, &adapter).await;
    let (ok, refused): (Vec<_>, Vec<_>) = invocations.iter().partition(|i| i.result.is_ok());
    assert_eq!(
        ok.len(),
        POOL as usize,
        "the two calls holding the slots succeed"
    );
    assert_eq!(refused.len(), CALLS - POOL as usize);
    for invocation in refused {
        let error = invocation.result.as_ref().unwrap_err();
        assert_eq!(error.error_code, ErrorCode::Limit);
        assert_eq!(
            error.message,
            "instance pool full: all 2 instances are in use (RuntimeConfig::pool_size); no slot freed within 50 ms (RuntimeConfig::pool_wait)"
        );
        assert_eq!(invocation.receipt.limit_hit, Some(LimitKind::Pool));
        assert!(!invocation.receipt.instantiated);
    }
    // The refused calls never reached the provider, and the runtime serves the next call.
    assert_eq!(cloud.request_count(), POOL as u64);
    let created = adapter
        .create(
            &json!({ "endpoint": cloud.base_url() }),
            &json!({ "name": "after" }),
            None,
        )
        .await
        .expect("a call after the pool drained succeeds");
    assert!(created.created);
}
