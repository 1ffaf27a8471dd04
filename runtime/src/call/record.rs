//! Stage 5, record: what a call's outcome leaves in storage. A keyed create's result is
//! recorded under its claim's epoch, or its claim released when it failed; a successful
//! destroy is recorded. A holder that lost its claim is told so here, and its caller gets
//! the key's recorded outcome or `RETRYABLE`, never a second record.

use crate::contract::{AdapterError, ContractViolation, ErrorCode, ProvisionResult};
use crate::operation::{Invocation, Operation, Output};
use crate::storage::{Completion, Scope};

use super::dedupe::HeldClaim;
use crate::adapter::AdapterInner;

/// Record `invocation`'s outcome; the invocation the caller gets.
pub(super) async fn record(
    adapter: &AdapterInner,
    scope: &Scope,
    operation: &Operation,
    claim: Option<HeldClaim>,
    mut invocation: Invocation,
) -> Invocation {
    let storage = &adapter.runtime.inner.storage;
    if let Some(mut claim) = claim {
        // Whatever happens below, this stage settles the claim: a drop from here on (the
        // caller gave up mid-write) must not release a recorded key.
        claim.settle();
        let lease = &claim.lease;
        invocation.receipt.idempotency = Some(if lease.resumed { "resumed" } else { "claimed" });
        let created = match &invocation.result {
            Ok(Output::Provisioned(result)) => result,
            _ => {
                if let Err(error) = storage.release(lease).await {
                    tracing::warn!(target: "airlock::idempotency", %error, "could not release a failed create's claim");
                }
                return invocation;
            }
        };
        super::crash_point("after-guest");
        let recorded = serde_json::to_string(created).unwrap_or_default();
        match storage
            .complete(lease, &created.instance_id, &recorded)
            .await
        {
            Ok(Completion::Recorded) => {}
            Ok(Completion::Fenced { recorded }) => {
                let returned = created.instance_id.clone();
                fenced(&mut invocation, &lease.key, &returned, recorded.as_deref());
            }
            // The resource exists; only the record is missing. The next call with the key
            // runs the guest again, and the client token makes that safe.
            Err(error) => {
                tracing::warn!(target: "airlock::idempotency", %error, "could not record a finished create");
            }
        }
        return invocation;
    }
    if let (Operation::Destroy { instance_id }, Ok(_)) = (operation, &invocation.result) {
        let window = adapter.runtime.inner.config.idempotency_window;
        if let Err(error) = storage.record_destroyed(scope, instance_id, window).await {
            tracing::warn!(target: "airlock::idempotency", %error, "could not record a destroy");
        }
    }
    invocation
}

/// The answer of a create whose claim was taken over before it could record: the record
/// the new holder wrote if it names the same instance, a contract violation if it names
/// another (this guest made a second resource: the recorded one stands), `RETRYABLE` if
/// there is no record yet.
fn fenced(invocation: &mut Invocation, key: &str, returned: &str, recorded: Option<&str>) {
    let recorded = recorded.and_then(|text| serde_json::from_str::<ProvisionResult>(text).ok());
    invocation.receipt.idempotency = Some("fenced");
    let error = match recorded {
        Some(mut result) if result.instance_id == returned => {
            result.created = false;
            invocation.result = Ok(Output::Provisioned(result));
            invocation.receipt.error_code = None;
            return;
        }
        Some(result) => AdapterError::contract(ContractViolation(format!(
            "idempotency key {key:?} is recorded for instance {:?}, but the adapter returned {returned:?}; the recorded instance stands",
            result.instance_id
        ))),
        None => AdapterError::host(
            ErrorCode::Retryable,
            format!(
                "lost the claim on idempotency key {key:?}: its lease ran out before this call finished and another call took the key over; retry to get that call's outcome"
            ),
        ),
    };
    tracing::warn!(target: "airlock::idempotency", key, %error.message, "a create's claim was taken over before it recorded");
    invocation.receipt.error_code = Some(error.error_code);
    invocation.result = Err(error);
}
