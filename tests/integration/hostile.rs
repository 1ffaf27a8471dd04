//! Hostile adapters: each is contained with its exact error, the receipt names the limit
//! that fired, and the next honest call on the same runtime succeeds.

use std::time::Duration;

use airlock::{ErrorCode, ErrorOrigin, LimitKind, Operation, Runtime};
use serde_json::json;

use crate::common::*;
// Tested with the capabilities they attack, and in the suites of the hostile collection.
#[allow(unused_imports)]
use crate::capabilities::secret_probe;
#[allow(unused_imports)]
use crate::capabilities::{exfiltrate, http_probe};
#[allow(unused_imports)]
use crate::hostile_runtime::*;
#[allow(unused_imports)]
use crate::hostile_sandbox::*;

/// Every hostile adapter has a test of its own name.
macro_rules! has_test {
    ($name:ident) => {
        const _: fn() = $name;
    };
}
foreach_hostile!(has_test);

pub(crate) fn status() -> Operation {
    Operation::Status {
        instance_id: "i-1".into(),
    }
}

/// The call was stopped by the `kind` limit, with `message`, and the receipt says so.
pub(crate) fn assert_stopped_by(
    error: &airlock::AdapterError,
    receipt: &airlock::Receipt,
    kind: LimitKind,
    message: &str,
) {
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (ErrorCode::Limit, message)
    );
    assert_eq!(error.origin, ErrorOrigin::Limit(kind));
    assert_eq!(receipt.limit_hit, Some(kind));
}

/// How much later than its deadline a call may end and still count as stopped by it. The
/// epoch ticks every 2 ms and the host's timeout fires on tokio's timer, so a quiet machine
/// ends a call within a few milliseconds of its deadline; the rest is room for a shared
/// 2-core CI machine that is compiling beside the tests (measured there: under 250 ms).
pub(crate) const DEADLINE_SLACK_MS: u64 = 1_000;

/// The call was stopped by its `deadline_ms` deadline: `LIMIT` with the deadline's message,
/// no earlier than the deadline and no later than [`DEADLINE_SLACK_MS`] after it.
pub(crate) fn assert_deadline_stopped(
    error: &airlock::AdapterError,
    receipt: &airlock::Receipt,
    deadline_ms: u64,
) {
    assert_stopped_by(
        error,
        receipt,
        LimitKind::Deadline,
        &format!("deadline of {deadline_ms} ms exceeded (limits.deadline_ms)"),
    );
    let wall_ms = receipt.wall_time_us / 1000;
    assert!(
        (deadline_ms..=deadline_ms + DEADLINE_SLACK_MS).contains(&wall_ms),
        "a {deadline_ms} ms deadline stopped the call after {wall_ms} ms (slack {DEADLINE_SLACK_MS} ms)"
    );
}

/// The guest trapped with `message` (`INTERNAL`), and no limit fired.
pub(crate) fn assert_trapped(
    error: &airlock::AdapterError,
    receipt: &airlock::Receipt,
    message: &str,
) {
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (ErrorCode::Internal, message)
    );
    assert_eq!(error.origin, ErrorOrigin::Trap);
    assert_eq!(receipt.limit_hit, None);
}

/// Invoke `operation` on the hostile adapter at `path` under `policy` and return the error.
pub(crate) async fn attack(
    runtime: &Runtime,
    path: &str,
    policy: &str,
    operation: Operation,
) -> (airlock::AdapterError, airlock::Receipt) {
    let adapter = load(runtime, path, policy).await;
    let invocation = adapter.invoke(&json!({}), operation).await;
    match invocation.result {
        Ok(output) => panic!("the hostile adapter {path} succeeded: {output:?}"),
        Err(error) => (error, invocation.receipt),
    }
}

#[tokio::test]
async fn spin_loop() {
    let t = runtime();
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_SPIN_LOOP,
        "[limits]\nfuel = 200000000\n",
        status(),
    )
    .await;
    assert_stopped_by(
        &error,
        &receipt,
        LimitKind::Fuel,
        "fuel limit of 200000000 exceeded (limits.fuel)",
    );
    assert_eq!(receipt.fuel_consumed, 200_000_000);
    assert_honest_call_succeeds(&t.runtime).await;

    // With fuel to spare, the wall-clock deadline stops it instead.
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_SPIN_LOOP,
        "[limits]\nfuel = 1000000000000000\ndeadline_ms = 300\n",
        status(),
    )
    .await;
    assert_deadline_stopped(&error, &receipt, 300);
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
async fn memory_bomb() {
    let t = runtime();
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_MEMORY_BOMB,
        "[limits]\nmemory_mib = 16\n",
        status(),
    )
    .await;
    // The bomb's allocator grows memory in steps the component's build fixes, so the
    // size it asked for is exact.
    assert_stopped_by(
        &error,
        &receipt,
        LimitKind::Memory,
        "memory limit of 16 MiB exceeded: the adapter asked for 17 MiB",
    );
    assert!(
        receipt.memory_peak_bytes <= 16 << 20,
        "peak {} over the cap",
        receipt.memory_peak_bytes
    );
    assert!(
        receipt.memory_peak_bytes > 8 << 20,
        "the bomb did allocate: peak {}",
        receipt.memory_peak_bytes
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
async fn deep_recursion() {
    let t = runtime();
    let (error, receipt) = attack(&t.runtime, HOSTILE_DEEP_RECURSION, "", status()).await;
    assert_trapped(
        &error,
        &receipt,
        "adapter trapped: wasm trap: call stack exhausted",
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
async fn panic() {
    let t = runtime();
    for operation in [
        Operation::ValidateConfig,
        status(),
        Operation::Create {
            params: json!({}),
            idempotency_key: None,
        },
    ] {
        let (error, _) = attack(&t.runtime, HOSTILE_PANIC, "", operation).await;
        assert_eq!(error.error_code, ErrorCode::Internal);
        assert!(
            error.message.starts_with("adapter trapped: wasm trap: wasm `unreachable` instruction executed (panicked at hostile/panic/src/lib.rs:"),
            "{}",
            error.message
        );
        assert!(
            error
                .message
                .ends_with(": hostile adapter panicked on purpose)"),
            "{}",
            error.message
        );
    }
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
async fn broken_contract() {
    let t = runtime();
    let create = |params| Operation::Create {
        params,
        idempotency_key: Some("k".into()),
    };
    let cases = [
        (
            create(json!({})),
            "adapter broke the contract: `connection` is not valid JSON (key must be a string at line 1 column 2)",
        ),
        (
            create(json!({ "emptyId": true })),
            "adapter broke the contract: `instanceId` is empty",
        ),
        (
            create(json!({ "hugeId": true })),
            "adapter broke the contract: `instanceId` is 1048576 bytes; the limit is 256",
        ),
        (
            status(),
            "adapter broke the contract: progress current (7) is greater than total (3)",
        ),
        (
            Operation::Credentials {
                instance_id: "i-1".into(),
            },
            "adapter broke the contract: ephemeral credential already expired (expiresAt 1970-01-01T00:00:01.000Z)",
        ),
        (
            Operation::Destroy {
                instance_id: "i-1".into(),
            },
            "adapter broke the contract: returned an error (INTERNAL) with an empty message",
        ),
    ];
    for (operation, message) in cases {
        let (error, receipt) = attack(&t.runtime, HOSTILE_BROKEN_CONTRACT, "", operation).await;
        assert_eq!(
            (error.error_code, error.message.as_str()),
            (ErrorCode::Internal, message)
        );
        assert_eq!(error.origin, ErrorOrigin::Contract);
        assert!(receipt.instantiated);
    }
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
async fn wrong_world() {
    let t = runtime();
    let error = t
        .runtime
        .load_file(HOSTILE_WRONG_WORLD, airlock::Policy::default())
        .await
        .err()
        .expect("a component of the wrong world does not load");
    assert_eq!(
        error.to_string(),
        format!(
            "{HOSTILE_WRONG_WORLD} does not implement the airlock:adapter world: it does not export \
             `airlock:adapter/contract@0.1.0`; it exports [\"airlock:adapter/contract@0.0.1\"] instead; \
             rebuild it against this runtime's WIT (airlock:adapter@0.1.0)"
        )
    );
    assert!(matches!(error, airlock::Error::WorldMismatch { .. }));
    assert_honest_call_succeeds(&t.runtime).await;
}

/// The blast radius: hostile adapters run in a loop, concurrently, while 100 honest calls
/// of the example and fakecloud adapters run beside them on the same runtime. Every honest
/// call succeeds, and each one's latency stays within the documented bound of its solo
/// latency (SECURITY.md): at most 50 times the solo median plus 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_do_not_disturb_honest_ones_running_beside_them() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Instant;

    let t = runtime();
    let cloud = fakecloud::FakeCloud::start(fakecloud::FakeCloudConfig {
        token: "blast-radius-token-0123456789".into(),
        step_millis: 0,
        ..fakecloud::FakeCloudConfig::default()
    })
    .await
    .unwrap();
    let token = t.dir.path().join("token");
    std::fs::write(&token, "blast-radius-token-0123456789").unwrap();
    let base = cloud.base_url();
    let fc_policy = format!(
        "[[http.allow]]\nurl = \"{base}/v1/\"\naddresses = [\"127.0.0.1/32\"]\n\n[secrets.fakecloud-token]\nsource = \"file:{}\"\ndestinations = [\"{base}/v1/\"]\n",
        token.display()
    );
    let example = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let fc = load(&t.runtime, FAKECLOUD_ADAPTER, &fc_policy).await;
    let fc_config = json!({ "endpoint": base });

    // One honest call: an example create, or a fakecloud create.
    let honest = {
        let (example, fc, fc_config) = (example.clone(), fc.clone(), fc_config.clone());
        move |i: usize| {
            let (example, fc, fc_config) = (example.clone(), fc.clone(), fc_config.clone());
            async move {
                let started = Instant::now();
                let result = if i.is_multiple_of(2) {
                    example
                        .create(
                            &example_config(0),
                            &json!({ "name": format!("e{i}") }),
                            None,
                        )
                        .await
                } else {
                    fc.create(
                        &fc_config,
                        &json!({ "name": format!("f{i}") }),
                        Some(&format!("k{i}")),
                    )
                    .await
                };
                (result, started.elapsed())
            }
        }
    };
    let mut solo = Vec::new();
    for i in 0..20 {
        let (result, took) = honest(1000 + i).await;
        result.expect("solo honest call");
        solo.push(took);
    }
    solo.sort();
    let solo_median = solo[solo.len() / 2];
    let bound = solo_median * 50 + Duration::from_millis(1000);

    let policy = "[limits]\nfuel = 100000000\nmemory_mib = 16\ndeadline_ms = 2000\n";
    let attackers = [
        HOSTILE_SPIN_LOOP,
        HOSTILE_MEMORY_BOMB,
        HOSTILE_PANIC,
        HOSTILE_DEEP_RECURSION,
        HOSTILE_BROKEN_CONTRACT,
        HOSTILE_LOG_FLOOD,
        HOSTILE_STDIO_FLOOD,
        HOSTILE_MANY_SMALL_ALLOCS,
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_calls = Arc::new(AtomicU32::new(0));
    let mut loops = Vec::new();
    for path in attackers {
        let adapter = load(&t.runtime, path, policy).await;
        let (stop, count) = (stop.clone(), hostile_calls.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = adapter
                    .invoke(
                        &json!({}),
                        Operation::Status {
                            instance_id: "x".into(),
                        },
                    )
                    .await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let calls: Vec<_> = (0..100).map(|i| tokio::spawn(honest(i))).collect();
    let mut worst = Duration::ZERO;
    for call in calls {
        let (result, took) = call.await.unwrap();
        result.expect("every honest call beside hostile ones succeeds");
        worst = worst.max(took);
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    eprintln!(
        "blast radius: solo median {solo_median:?}, worst honest call beside {} hostile calls {worst:?}, bound {bound:?}",
        hostile_calls.load(Ordering::Relaxed)
    );
    assert!(
        worst <= bound,
        "worst honest latency {worst:?} over the bound {bound:?} (solo median {solo_median:?})"
    );
    assert!(
        hostile_calls.load(Ordering::Relaxed) >= attackers.len() as u32,
        "the hostile loops really ran"
    );
    assert_eq!(
        cloud.resource_count(),
        60,
        "10 solo and 50 concurrent fakecloud creates"
    );
}
