//! Stage 2, dedupe: host-owned idempotency. The contract asks every adapter to make
//! `create` idempotent on its key; the runtime makes that hold even for a buggy adapter,
//! across crashes and across nodes sharing a database:
//!
//! 1. Before the guest runs, a keyed create claims (tenant, adapter, key) in storage,
//!    durably, with a hash of config and params, an owner (node, process, call) and an
//!    epoch, the claim's fencing token. The claim is a lease of `RuntimeConfig::claim_lease`
//!    that a heartbeat renews every third of its length while the call lives — while it
//!    waits for an instance too — so a slow call is never taken for a dead one.
//! 2. A repeat with a finished record gets the recorded result with `created = false`, and
//!    no guest runs. A repeat with other config or params is `VALIDATION`.
//! 3. A repeat while the claim is held waits (bounded) for it, in this process, another
//!    on this host or another node; when the holder finishes, the waiter gets its result.
//! 4. A claim whose holder is gone is taken over at the next epoch: at once when the holder
//!    was a process on this node that no longer runs, else when its lease ran out without a
//!    heartbeat. The guest then sees the same client token ([`client_token`]) as the lost
//!    call, which it passes to the provider, so the provider returns the resource it
//!    already made instead of making a second one.
//! 5. Every later write of a claim presents its epoch (the record stage): a holder that
//!    lost its lease (paused, partitioned) cannot overwrite the new holder's record.
//! 6. A destroy that succeeded is recorded; destroying that instance again succeeds at
//!    once. Records expire after the runtime's window and are purged off the call path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::receipt::{answered, refusal};
use crate::adapter::AdapterInner;
use crate::contract::{AdapterError, ErrorCode, ProvisionResult};
use crate::operation::{Invocation, Operation, Output};
use crate::storage::{Claim, ClaimRequest, Lease, Owner, Scope, Storage};

/// Every this many keyed creates on a runtime, expired records are purged off the call path.
pub(crate) const PURGE_EVERY_CREATES: u64 = 512;

/// What the dedupe stage decided.
pub(super) enum Dedupe {
    /// Run the guest. A keyed create holds its claim until the record stage, and gives the
    /// guest the key's client token.
    Run {
        claim: Option<HeldClaim>,
        client_token: Option<String>,
    },
    /// Answered from a record, or refused: no guest runs.
    Answered(Invocation),
}

/// A won claim. [`HeldClaim::renewing`] keeps its lease alive while the call works. A claim
/// dropped before the record stage settled it (the caller dropped the call's future) is
/// released, so the next caller of the key runs at once instead of waiting out the lease.
pub(super) struct HeldClaim {
    pub(super) lease: Lease,
    storage: Arc<dyn Storage>,
    settled: bool,
}

impl HeldClaim {
    /// The record stage recorded or released the claim.
    pub(super) fn settle(&mut self) {
        self.settled = true;
    }

    /// Run `work`, renewing the lease every third of its length until it ends. The
    /// heartbeat is polled with `work` in the call's own task rather than spawned: a task
    /// per call would cost a cross-thread wake-up to start and another to stop.
    pub(super) async fn renewing<T>(&self, work: impl Future<Output = T>) -> T {
        let (storage, lease) = (self.storage.clone(), self.lease.clone());
        let beat = async move {
            heartbeat(storage, lease).await;
            // A lost claim stops the beats; the work goes on, and the fence on the record
            // stage tells its caller.
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            biased;
            done = work => done,
            never = beat => match never {},
        }
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        if !self.settled {
            let (storage, lease) = (self.storage.clone(), self.lease.clone());
            tokio::spawn(async move {
                if let Err(error) = storage.release(&lease).await {
                    tracing::warn!(target: "airlock::idempotency", %error, "could not release a cancelled create's claim");
                }
            });
        }
    }
}

/// The client token of `key`: stable across retries, processes, nodes and crashes, so a
/// provider can deduplicate the create it names; distinct per installation salt
/// (`RuntimeConfig::client_token_salt`), tenant, adapter name and key, so two
/// installations sharing a provider account, or two tenants, never receive each other's
/// resource for the same key. It says nothing about the key to the provider. Config and
/// params are not part of it: a key reused with other input is refused before any guest
/// runs.
pub(crate) fn client_token(salt: Option<&str>, scope: &Scope, key: &str) -> String {
    let mut digest = Sha256::new().chain_update(b"airlock client token v2\0");
    for part in [salt.unwrap_or(""), &scope.tenant, &scope.adapter, key] {
        // Length-prefixed, so no two different tuples hash the same bytes.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    format!("alk-{}", &hex::encode(digest.finalize())[..32])
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

pub(super) fn store_failure(error: crate::storage::StorageError) -> AdapterError {
    tracing::warn!(target: "airlock::idempotency", %error, "idempotency store failed");
    AdapterError::host(
        ErrorCode::Retryable,
        format!("idempotency store failed: {error}"),
    )
}

/// Decide whether the guest runs: claims for keyed creates, records for destroys.
pub(super) async fn dedupe(
    adapter: &AdapterInner,
    scope: &Scope,
    config: &Value,
    operation: &Operation,
    started: Instant,
) -> Dedupe {
    let storage = &adapter.runtime.inner.storage;
    match operation {
        Operation::Create {
            params,
            idempotency_key: Some(key),
        } => match claim(adapter, scope, config, params, key, operation, started).await {
            Ok(held) => {
                let salt = adapter.runtime.inner.config.client_token_salt.as_deref();
                Dedupe::Run {
                    client_token: Some(client_token(salt, scope, key)),
                    claim: Some(held),
                }
            }
            Err(answered) => Dedupe::Answered(answered),
        },
        Operation::Destroy { instance_id } => {
            match storage.is_destroyed(scope, instance_id).await {
                Ok(true) => {
                    let output = Output::Destroyed {
                        instance_id: instance_id.clone(),
                    };
                    let mut invocation = answered(adapter, operation, output, started);
                    invocation.receipt.idempotency = Some("replayed");
                    Dedupe::Answered(invocation)
                }
                Ok(false) => Dedupe::Run {
                    claim: None,
                    client_token: None,
                },
                Err(error) => {
                    Dedupe::Answered(refusal(adapter, operation, store_failure(error), started))
                }
            }
        }
        _ => Dedupe::Run {
            claim: None,
            client_token: None,
        },
    }
}

/// Claim `key`, waiting while another live call holds it; `Err` is the answer instead
/// (the record, a refusal).
async fn claim(
    adapter: &AdapterInner,
    scope: &Scope,
    config: &Value,
    params: &Value,
    key: &str,
    operation: &Operation,
    started: Instant,
) -> Result<HeldClaim, Invocation> {
    let runtime = &adapter.runtime.inner;
    let storage = &runtime.storage;
    let lease_length = runtime.config.claim_lease;
    let mut request = ClaimRequest {
        scope: scope.clone(),
        key: key.to_owned(),
        input_hash: input_hash(config, params),
        owner: Owner::this_call(&runtime.node_id),
        lease: lease_length,
        window: runtime.config.idempotency_window,
        take_over: None,
    };
    let creates = runtime.keyed_creates.fetch_add(1, Ordering::Relaxed) + 1;
    if creates.is_multiple_of(PURGE_EVERY_CREATES) {
        let storage = storage.clone();
        tokio::spawn(async move {
            if let Err(error) =
                crate::storage::purge_in_batches(&*storage, crate::storage::PURGE_BATCH).await
            {
                tracing::warn!(target: "airlock::idempotency", %error, "could not purge expired records");
            }
        });
    }

    // A live holder is waited for as long as its call may take (its deadline, its wait
    // for an instance is covered by heartbeats) and one lease beyond.
    let refuse = |error| refusal(adapter, operation, error, started);
    let wait_until = started + adapter.policy.limits.deadline() + lease_length * 2;
    let mut pause = Duration::from_millis(10);
    let lease = loop {
        match storage.claim(&request).await {
            Err(error) => return Err(refuse(store_failure(error))),
            Ok(Claim::InputMismatch) => {
                return Err(refuse(AdapterError::host(
                    ErrorCode::Validation,
                    format!(
                        "idempotency key {key:?} was already used with a different config or params (key reused with different input)"
                    ),
                )));
            }
            Ok(Claim::Done { result }) => return Err(replay(adapter, operation, &result, started)),
            Ok(Claim::Busy { holder, epoch })
                if request.take_over != Some(epoch) && holder.is_dead(&request.owner) =>
            {
                tracing::info!(target: "airlock::idempotency", adapter = %scope.adapter, key, pid = holder.pid,
                    "the process holding this key's claim is gone; taking it over without waiting for its lease");
                request.take_over = Some(epoch);
            }
            Ok(Claim::Busy { .. }) if Instant::now() >= wait_until => {
                return Err(refuse(AdapterError::host(
                    ErrorCode::Retryable,
                    format!("another create with idempotency key {key:?} is still in progress"),
                )));
            }
            Ok(Claim::Busy { .. }) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Ok(Claim::Won(lease)) => break lease,
        }
    };
    if lease.resumed {
        tracing::info!(target: "airlock::idempotency", adapter = %scope.adapter, key, epoch = lease.epoch,
            "taking over a create whose holder crashed or stalled");
    }
    super::crash_point("after-claim");
    Ok(HeldClaim {
        lease,
        storage: storage.clone(),
        settled: false,
    })
}

/// Renew `lease` every third of its length until dropped or lost.
async fn heartbeat(storage: Arc<dyn Storage>, lease: Lease) {
    let period = lease.length / 3;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match storage.renew(&lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(target: "airlock::idempotency", adapter = %lease.scope.adapter, key = %lease.key, epoch = lease.epoch,
                    "lost the claim: another call took the key over; this call's result will not be recorded");
                return;
            }
            // The next beat tries again; if none succeeds, the lease runs out and another
            // call may take the key over, which the fence on the record makes safe.
            Err(error) => {
                tracing::warn!(target: "airlock::idempotency", %error, "could not renew a claim's lease");
            }
        }
    }
}

/// The recorded result of a finished create, as `created = false`, without a guest.
pub(super) fn replay(
    adapter: &AdapterInner,
    operation: &Operation,
    recorded: &str,
    started: Instant,
) -> Invocation {
    let mut invocation = match serde_json::from_str::<ProvisionResult>(recorded) {
        Ok(mut result) => {
            result.created = false;
            answered(adapter, operation, Output::Provisioned(result), started)
        }
        Err(e) => refusal(
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_stable_and_distinct_per_salt_tenant_adapter_and_key() {
        let s = |tenant: &str, adapter: &str| Scope::new(tenant, adapter);
        let token = client_token(None, &s("t", "a"), "k");
        assert_eq!(token, client_token(None, &s("t", "a"), "k"));
        assert_eq!(token.len(), 36);
        for other in [
            client_token(Some("installation-2"), &s("t", "a"), "k"),
            client_token(None, &s("t2", "a"), "k"),
            client_token(None, &s("t", "b"), "k"),
            client_token(None, &s("t", "a"), "k2"),
            client_token(None, &s("t", "ak"), ""),
            client_token(None, &s("ta", ""), "k"),
        ] {
            assert_ne!(token, other);
        }
    }

    #[test]
    fn input_hashes_ignore_key_order() {
        let a = input_hash(&json!({ "b": 1, "a": [ { "y": 1, "x": 2 } ] }), &json!({}));
        let b = input_hash(&json!({ "a": [ { "x": 2, "y": 1 } ], "b": 1 }), &json!({}));
        assert_eq!(a, b);
        assert_ne!(a, input_hash(&json!({ "a": [], "b": 1 }), &json!({})));
    }
}
