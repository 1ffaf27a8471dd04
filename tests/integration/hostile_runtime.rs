//! Hostile adapters that attack the runtime's limits: CPU, memory, stack, traps, floods.
//! Each test is named after its adapter (see `foreach_hostile!` in `hostile.rs`).

use airlock::{ErrorCode, ErrorOrigin, Invocation, LimitKind, Operation, Output, Runtime};
use serde_json::json;

use crate::common::*;
use crate::hostile::{assert_deadline_stopped, assert_stopped_by, assert_trapped, attack, status};

/// Invoke `operation` on the adapter at `path` under `policy` and return the whole
/// invocation, for the attacks the call must survive.
async fn survive(runtime: &Runtime, path: &str, policy: &str, operation: Operation) -> Invocation {
    let adapter = load(runtime, path, policy).await;
    adapter.invoke(&json!({}), operation).await
}

fn create(key: &str) -> Operation {
    Operation::Create {
        params: json!({}),
        idempotency_key: Some(key.into()),
    }
}

#[tokio::test]
pub(crate) async fn loop_in_callback() {
    let t = runtime();
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_LOOP_IN_CALLBACK,
        "[limits]\nfuel = 5000000\ndeadline_ms = 120000\n",
        status(),
    )
    .await;
    assert_stopped_by(
        &error,
        &receipt,
        LimitKind::Fuel,
        "fuel limit of 5000000 exceeded (limits.fuel)",
    );
    assert_eq!(receipt.fuel_consumed, 5_000_000);
    assert_eq!(receipt.log_records, 256);
    assert!(receipt.logs_dropped > 0, "{receipt:?}");
    assert!(receipt.progress_dropped > 0, "{receipt:?}");
    // Every iteration makes one log call, then one progress call, and every call is
    // counted: the log calls equal the progress calls, or one more when the fuel ran out
    // between the two.
    let (logs, reports) = (receipt.logs_dropped + 256, receipt.progress_dropped + 1024);
    assert!(logs == reports || logs == reports + 1, "{receipt:?}");
    assert_honest_call_succeeds(&t.runtime).await;

    // With fuel to spare, the deadline stops it, although it spends its time in host calls.
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_LOOP_IN_CALLBACK,
        "[limits]\nfuel = 1000000000000000\ndeadline_ms = 300\n",
        status(),
    )
    .await;
    assert_deadline_stopped(&error, &receipt, 300);
    assert_eq!(receipt.log_records, 256);
    assert!(receipt.logs_dropped > 0, "{receipt:?}");
    assert!(receipt.progress_dropped > 0, "{receipt:?}");
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn slow_under_fuel() {
    let t = runtime();
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_SLOW_UNDER_FUEL,
        "[limits]\nfuel = 1000000000\ndeadline_ms = 300\n",
        status(),
    )
    .await;
    assert_deadline_stopped(&error, &receipt, 300);
    assert!(
        receipt.fuel_consumed < receipt.fuel_limit / 100,
        "fuel {} of {}",
        receipt.fuel_consumed,
        receipt.fuel_limit
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn many_small_allocs() {
    let t = runtime();
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_MANY_SMALL_ALLOCS,
        "[limits]\nmemory_mib = 16\n",
        status(),
    )
    .await;
    assert_stopped_by(
        &error,
        &receipt,
        LimitKind::Memory,
        "memory limit of 16 MiB exceeded: the adapter asked for 17 MiB",
    );
    assert!(receipt.memory_peak_bytes <= 16 << 20, "{receipt:?}");
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn giant_json() {
    let t = runtime();
    let contract = |error: &airlock::AdapterError, receipt: &airlock::Receipt, message: &str| {
        assert_eq!(
            (error.error_code, error.message.as_str(), error.origin),
            (ErrorCode::Internal, message, ErrorOrigin::Contract)
        );
        assert_eq!(receipt.limit_hit, None);
    };
    // 4 MiB of metadata in a valid create: refused by its size, and nothing recorded for
    // the key (the next create with it runs the guest again).
    for _ in 0..2 {
        let (error, receipt) =
            attack(&t.runtime, HOSTILE_GIANT_JSON, "", create("giant-key")).await;
        contract(
            &error,
            &receipt,
            "adapter broke the contract: `metadata` is 4194314 bytes of JSON; the limit is 65536 (limits.max_json_bytes)",
        );
        assert!(receipt.instantiated);
        assert_eq!(receipt.idempotency, Some("claimed"));
    }
    // Status `raw` 100 levels deep: refused at the 33rd level, before parsing.
    let (error, receipt) = attack(&t.runtime, HOSTILE_GIANT_JSON, "", status()).await;
    contract(
        &error,
        &receipt,
        "adapter broke the contract: `raw` nests arrays and objects 33 deep; the limit is 32 (limits.max_json_depth)",
    );
    // An error's `raw` of 100 KiB.
    let destroy = Operation::Destroy {
        instance_id: "giant-1".into(),
    };
    let (error, receipt) = attack(&t.runtime, HOSTILE_GIANT_JSON, "", destroy).await;
    contract(
        &error,
        &receipt,
        "adapter broke the contract: `raw` is 102410 bytes of JSON; the limit is 65536 (limits.max_json_bytes)",
    );
    // Credential values 40 objects deep, against a policy that allows 8 levels.
    let credentials = Operation::Credentials {
        instance_id: "giant-1".into(),
    };
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_GIANT_JSON,
        "[limits]\nmax_json_depth = 8\n",
        credentials,
    )
    .await;
    contract(
        &error,
        &receipt,
        "adapter broke the contract: `values` nests arrays and objects 9 deep; the limit is 8 (limits.max_json_depth)",
    );
    // A policy that allows the metadata lets the same create through.
    let adapter = load(
        &t.runtime,
        HOSTILE_GIANT_JSON,
        "name = \"giant-json-roomy\"\n[limits]\nmax_json_bytes = 8_388_608\n",
    )
    .await;
    let created = adapter
        .create(&json!({}), &json!({}), Some("roomy"))
        .await
        .expect("within the policy's bound");
    assert_eq!(
        created.metadata.as_ref().unwrap()["pad"]
            .as_str()
            .map(str::len),
        Some(4 << 20)
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn giant_output() {
    let t = runtime();
    // With room for it, the 48 MiB id reaches the host, which refuses it by the contract.
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_GIANT_OUTPUT,
        "[limits]\nmemory_mib = 64\n",
        create("k"),
    )
    .await;
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Internal,
            "adapter broke the contract: `instanceId` is 50331648 bytes; the limit is 256"
        )
    );
    assert_eq!(error.origin, ErrorOrigin::Contract);
    assert_eq!(receipt.limit_hit, None);
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_GIANT_OUTPUT,
        "[limits]\nmemory_mib = 64\n",
        status(),
    )
    .await;
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Internal,
            "adapter broke the contract: `message` is 50331648 bytes; the limit is 1048576"
        )
    );
    assert_eq!(receipt.limit_hit, None);
    // Without room, the memory limit stops it while it builds the string.
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_GIANT_OUTPUT,
        "[limits]\nmemory_mib = 32\n",
        create("k"),
    )
    .await;
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Limit,
            "memory limit of 32 MiB exceeded: the adapter asked for 50 MiB"
        )
    );
    assert_eq!(receipt.limit_hit, Some(LimitKind::Memory));
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn giant_log_line() {
    let t = runtime();
    let invocation = survive(&t.runtime, HOSTILE_GIANT_LOG_LINE, "", create("k")).await;
    let Output::Provisioned(result) = ok(invocation.result) else {
        panic!("create returns a provision result")
    };
    assert_eq!(result.instance_id, "giant-log");
    assert_eq!(result.idempotency_key.as_deref(), Some("k"));
    assert!(result.created);
    assert_eq!(invocation.logs.len(), 1);
    let record = &invocation.logs[0];
    assert_eq!(record.level, "info");
    assert_eq!(record.message.len(), 4096);
    assert!(record.message.bytes().all(|b| b == b'L'));
    assert!(record.truncated);
    assert_eq!(invocation.receipt.log_records, 1);
    assert_eq!(invocation.receipt.logs_dropped, 0);
    assert_eq!(invocation.receipt.limit_hit, None);
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn log_flood() {
    let t = runtime();
    let invocation = survive(&t.runtime, HOSTILE_LOG_FLOOD, "", status()).await;
    let Output::Status(detail) = ok(invocation.result) else {
        panic!("status returns a status")
    };
    assert_eq!(detail.status, airlock::Status::Success);
    assert_eq!(invocation.logs.len(), 256);
    assert!(
        invocation
            .logs
            .iter()
            .all(|r| r.message == "flood" && !r.truncated)
    );
    assert_eq!(invocation.receipt.log_records, 256);
    assert_eq!(invocation.receipt.logs_dropped, 99_744);
    assert_eq!(invocation.receipt.limit_hit, None);
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn stdio_flood() {
    let t = runtime();
    let invocation = survive(&t.runtime, HOSTILE_STDIO_FLOOD, "", status()).await;
    let Output::Status(detail) = ok(invocation.result) else {
        panic!("status returns a status")
    };
    assert_eq!(detail.status, airlock::Status::Success);
    // The first and the last 32 KiB of each, and a marker for the 20 MiB between.
    let dropped = (20 << 20) - 65536;
    let marker = format!("\n[airlock: {dropped} bytes dropped here (limits.stdio_bytes)]\n");
    let (head, tail) = invocation
        .stdout
        .split_once(&marker)
        .expect("a marker where output was dropped");
    assert_eq!((head.len(), tail.len()), (32768, 32768));
    assert!(head.bytes().chain(tail.bytes()).all(|b| b == b'o'));
    assert_eq!(invocation.stderr.len(), 65536 + marker.len());
    assert_eq!(invocation.receipt.stdio_bytes, 2 * 65536);
    assert_eq!(
        invocation.receipt.stdio_dropped_bytes,
        2 * (20 << 20) - 2 * 65536
    );
    assert_eq!(invocation.receipt.limit_hit, None);
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn json_recursion() {
    let t = runtime();
    let (error, receipt) = attack(&t.runtime, HOSTILE_JSON_RECURSION, "", status()).await;
    assert_trapped(
        &error,
        &receipt,
        "adapter trapped: wasm trap: call stack exhausted",
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn unreachable() {
    let t = runtime();
    for operation in [Operation::ValidateConfig, status(), create("k")] {
        let (error, receipt) = attack(&t.runtime, HOSTILE_UNREACHABLE, "", operation).await;
        assert_trapped(
            &error,
            &receipt,
            "adapter trapped: wasm trap: wasm `unreachable` instruction executed",
        );
    }
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn divide_by_zero() {
    let t = runtime();
    // Rust's check panics; the panic aborts the guest.
    let (error, receipt) = attack(&t.runtime, HOSTILE_DIVIDE_BY_ZERO, "", status()).await;
    assert_eq!(error.error_code, ErrorCode::Internal);
    assert!(
        error.message.starts_with(
            "adapter trapped: wasm trap: wasm `unreachable` instruction executed \
             (panicked at hostile/divide-by-zero/src/lib.rs:"
        ),
        "{}",
        error.message
    );
    assert!(
        error.message.ends_with(": attempt to divide by zero)"),
        "{}",
        error.message
    );
    assert_eq!(error.origin, ErrorOrigin::Trap);
    assert_eq!(receipt.limit_hit, None);
    // Without the check, the engine's division traps.
    let (error, receipt) = attack(
        &t.runtime,
        HOSTILE_DIVIDE_BY_ZERO,
        "",
        Operation::Destroy {
            instance_id: "i-1".into(),
        },
    )
    .await;
    assert_trapped(
        &error,
        &receipt,
        "adapter trapped: wasm trap: integer divide by zero",
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn out_of_bounds() {
    let t = runtime();
    let (error, receipt) = attack(&t.runtime, HOSTILE_OUT_OF_BOUNDS, "", status()).await;
    assert_trapped(
        &error,
        &receipt,
        "adapter trapped: wasm trap: out of bounds memory access",
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn abort_mid_result() {
    let t = runtime();
    for operation in [status(), create("k")] {
        let (error, receipt) = attack(&t.runtime, HOSTILE_ABORT_MID_RESULT, "", operation).await;
        assert_trapped(
            &error,
            &receipt,
            "adapter trapped: wasm trap: wasm `unreachable` instruction executed",
        );
    }
    // The failed create released its idempotency claim: the same key runs the guest again.
    let (error, receipt) = attack(&t.runtime, HOSTILE_ABORT_MID_RESULT, "", create("k")).await;
    assert_eq!(error.origin, ErrorOrigin::Trap);
    assert!(receipt.instantiated);
    assert_eq!(receipt.idempotency, Some("claimed"));
    assert_honest_call_succeeds(&t.runtime).await;
}
