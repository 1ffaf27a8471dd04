//! Host-owned idempotency. The contract asks every adapter to make `create` idempotent on
//! its key; the runtime makes that hold even for a buggy adapter, and across crashes:
//!
//! 1. Before the guest runs, the call claims (adapter, key) in the database, durably, with
//!    a hash of config and params and a lease as long as the call's deadline plus a grace.
//! 2. A repeat with a finished record gets the recorded result with `created = false`, and
//!    no guest runs. A repeat with other config or params is `VALIDATION`.
//! 3. A repeat while the claim is live waits (bounded) for it, in this process or another
//!    sharing the database file; when the winner finishes, the waiter gets its result.
//! 4. A claim whose lease ran out belongs to a call that crashed; the next call takes it
//!    over and runs the guest again. The guest sees the same client token
//!    ([`client_token`]) as the crashed call, which it passes to the provider, so the
//!    provider returns the resource it already made instead of making a second one.
//! 5. If the guest fails, the claim is released and the next call runs again.
//! 6. A destroy that succeeded is recorded; destroying that instance again succeeds at
//!    once. Records expire after the runtime's window and are purged off the call path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::adapter::{AdapterInner, CallOptions};
use crate::contract::{AdapterError, ErrorCode, ProvisionResult};
use crate::database::{Claim, ClaimRequest};
use crate::invoke;
use crate::operation::{Invocation, Operation, Output};

/// How much longer than the call's deadline a claim's lease lasts.
const LEASE_GRACE_MS: u64 = 2000;

/// Every this many keyed creates on a runtime, expired records are purged off the call path.
pub(crate) const PURGE_EVERY_CREATES: u64 = 512;

static OWNERS: AtomicU64 = AtomicU64::new(0);

/// The client token for (adapter, key): stable across retries, processes and crashes,
/// and says nothing about the key to the provider.
pub(crate) fn client_token(adapter: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"airlock client token v1\0")
        .chain_update(adapter.as_bytes())
        .chain_update(b"\0")
        .chain_update(key.as_bytes())
        .finalize();
    format!("alk-{}", &hex::encode(digest)[..32])
}

/// JSON with object keys sorted, so equal inputs hash equally however they were written.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn input_hash(config: &Value, params: &Value) -> String {
    let mut text = String::new();
    canonical(config, &mut text);
    text.push('\n');
    canonical(params, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A test hook: with `AIRLOCK_CRASH_POINT=<name>` in the environment, the process stops
/// dead at that point (until killed), so crash tests can SIGKILL it there. Compiled only
/// with the `crash-points` feature, which only the tests turn on: a shipped binary has no
/// way to be made to hang by its environment.
#[cfg(feature = "crash-points")]
fn crash_point(name: &str) {
    if std::env::var("AIRLOCK_CRASH_POINT").as_deref() == Ok(name) {
        eprintln!("airlock: reached crash point {name}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
fn crash_point(_name: &str) {}

/// Run `operation`, with the idempotency rules for `create` with a key and `destroy`.
pub(crate) async fn invoke(
    adapter: &AdapterInner,
    config: &Value,
    operation: Operation,
    options: CallOptions,
) -> Invocation {
    // The caller's input is checked, and the config serialized for the guest, once.
    let config_text = match invoke::check_input(adapter, config, &operation) {
        Ok(text) => text,
        Err(error) => return invoke::refusal(adapter, &operation, error, Instant::now()),
    };
    match &operation {
        Operation::Create {
            params,
            idempotency_key: Some(key),
        } => {
            let (params, key) = (params.clone(), key.clone());
            let input = CreateInput {
                config,
                config_text,
                params: &params,
                key: &key,
            };
            create(adapter, input, operation, options).await
        }
        Operation::Destroy { instance_id } => {
            let instance_id = instance_id.clone();
            destroy(adapter, config_text, operation, &instance_id, options).await
        }
        _ => invoke::invoke(adapter, config_text, operation, options).await,
    }
}

/// What a keyed create starts from.
struct CreateInput<'a> {
    config: &'a Value,
    config_text: String,
    params: &'a Value,
    key: &'a str,
}

fn store_failure(error: String) -> AdapterError {
    tracing::warn!(target: "airlock::idempotency", %error, "idempotency store failed");
    AdapterError::host(
        ErrorCode::Retryable,
        format!("idempotency store failed: {error}"),
    )
}

async fn create(
    adapter: &AdapterInner,
    input: CreateInput<'_>,
    operation: Operation,
    mut options: CallOptions,
) -> Invocation {
    let CreateInput {
        config,
        config_text,
        params,
        key,
    } = input;
    let started = Instant::now();
    let db = &adapter.runtime.inner.db;
    let name = &adapter.info.name;
    let limits = &adapter.policy.limits;
    let lease_ms = limits.deadline_ms + LEASE_GRACE_MS;
    let request = ClaimRequest {
        adapter: name.clone(),
        key: key.to_owned(),
        input_hash: input_hash(config, params),
        owner: format!(
            "{}:{}",
            std::process::id(),
            OWNERS.fetch_add(1, Ordering::Relaxed)
        ),
        lease_ms: lease_ms as i64,
        window_ms: adapter.runtime.inner.config.idempotency_window.as_millis() as i64,
    };
    let creates = adapter
        .runtime
        .inner
        .keyed_creates
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    if creates.is_multiple_of(PURGE_EVERY_CREATES) {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = db.purge_all_expired() {
                tracing::warn!(target: "airlock::idempotency", %error, "could not purge expired records");
            }
        });
    }

    // A live claim by another call is waited for, at most until its lease must be over.
    let wait_until = started + Duration::from_millis(lease_ms + LEASE_GRACE_MS);
    let mut pause = Duration::from_millis(10);
    let resumed = loop {
        match db.idempotency_claim(request.clone()).await {
            Err(error) => {
                return invoke::refusal(adapter, &operation, store_failure(error), started);
            }
            Ok(Claim::InputMismatch) => {
                let error = AdapterError::host(
                    ErrorCode::Validation,
                    format!(
                        "idempotency key {key:?} was already used with a different config or params (key reused with different input)"
                    ),
                );
                return invoke::refusal(adapter, &operation, error, started);
            }
            Ok(Claim::Done { result }) => return replay(adapter, &operation, &result, started),
            Ok(Claim::Busy) if Instant::now() >= wait_until => {
                let error = AdapterError::host(
                    ErrorCode::Retryable,
                    format!("another create with idempotency key {key:?} is still in progress"),
                );
                return invoke::refusal(adapter, &operation, error, started);
            }
            Ok(Claim::Busy) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Ok(Claim::Won { resumed }) => break resumed,
        }
    };
    if resumed {
        tracing::info!(target: "airlock::idempotency", adapter = %name, key, "taking over a create abandoned by a crashed call");
    }
    crash_point("after-claim");

    options.client_token = Some(client_token(name, key));
    let mut invocation = invoke::invoke(adapter, config_text, operation, options).await;
    invocation.receipt.idempotency = Some(if resumed { "resumed" } else { "claimed" });
    match &invocation.result {
        Ok(Output::Provisioned(result)) => {
            crash_point("after-guest");
            let recorded = serde_json::to_string(result).unwrap_or_default();
            match db
                .idempotency_complete(request, result.instance_id.clone(), recorded)
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(recorded_id)) => {
                    invocation.result = Err(AdapterError::contract(
                        crate::contract::ContractViolation(format!(
                            "idempotency key {key:?} is recorded for instance {recorded_id:?}, but the adapter returned {:?}; the recorded instance stands",
                            result.instance_id
                        )),
                    ));
                    invocation.receipt.error_code = Some(ErrorCode::Internal);
                }
                Err(error) => {
                    // The resource exists; only the record is missing. The next call with the
                    // key runs the guest again, and the client token makes that safe.
                    tracing::warn!(target: "airlock::idempotency", %error, "could not record a finished create");
                }
            }
        }
        _ => {
            if let Err(error) = db.idempotency_release(request).await {
                tracing::warn!(target: "airlock::idempotency", %error, "could not release a failed create's claim");
            }
        }
    }
    invocation
}

/// The recorded result of a finished create, as `created = false`, without a guest.
fn replay(
    adapter: &AdapterInner,
    operation: &Operation,
    recorded: &str,
    started: Instant,
) -> Invocation {
    let mut invocation = match serde_json::from_str::<ProvisionResult>(recorded) {
        Ok(mut result) => {
            result.created = false;
            invoke::answered(adapter, operation, Output::Provisioned(result), started)
        }
        Err(e) => invoke::refusal(
            adapter,
            operation,
            AdapterError::host(
                ErrorCode::Internal,
                format!("recorded result does not parse: {e}"),
            ),
            started,
        ),
    };
    invocation.receipt.idempotency = Some("replayed");
    invocation
}

async fn destroy(
    adapter: &AdapterInner,
    config_text: String,
    operation: Operation,
    instance_id: &str,
    options: CallOptions,
) -> Invocation {
    let started = Instant::now();
    let db = &adapter.runtime.inner.db;
    let name = adapter.info.name.clone();
    match db.destroyed_contains(&name, instance_id) {
        Ok(true) => {
            let mut invocation = invoke::answered(
                adapter,
                &operation,
                Output::Destroyed {
                    instance_id: instance_id.to_owned(),
                },
                started,
            );
            invocation.receipt.idempotency = Some("replayed");
            return invocation;
        }
        Ok(false) => {}
        Err(error) => return invoke::refusal(adapter, &operation, store_failure(error), started),
    }
    let invocation = invoke::invoke(adapter, config_text, operation, options).await;
    if invocation.result.is_ok() {
        let window_ms = adapter.runtime.inner.config.idempotency_window.as_millis() as i64;
        if let Err(error) = db
            .destroyed_record(name, instance_id.to_owned(), window_ms)
            .await
        {
            tracing::warn!(target: "airlock::idempotency", %error, "could not record a destroy");
        }
    }
    invocation
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_stable_and_distinct() {
        assert_eq!(client_token("a", "k"), client_token("a", "k"));
        assert_ne!(client_token("a", "k"), client_token("b", "k"));
        assert_ne!(client_token("a", "k"), client_token("a", "k2"));
        assert_ne!(client_token("ab", "c"), client_token("a", "bc"));
        assert_eq!(client_token("a", "k").len(), 36);
    }

    #[test]
    fn input_hashes_ignore_key_order() {
        let a = input_hash(&json!({ "b": 1, "a": [ { "y": 1, "x": 2 } ] }), &json!({}));
        let b = input_hash(&json!({ "a": [ { "x": 2, "y": 1 } ], "b": 1 }), &json!({}));
        assert_eq!(a, b);
        assert_ne!(a, input_hash(&json!({ "a": [], "b": 1 }), &json!({})));
    }
}
