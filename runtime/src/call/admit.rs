//! Stage 1, admit: the caller's input is checked, then the adapter's circuit breaker and
//! its concurrency limit let the call in or refuse it. A call refused here never claims a
//! key and never takes an instance.

use std::time::Instant;

use serde_json::Value;
use tokio::sync::SemaphorePermit;

use crate::adapter::{AdapterInner, COSTS, LIFECYCLE, ROTATION};
use crate::breaker::Admission;
use crate::contract::{AdapterError, ErrorCode};
use crate::operation::{Invocation, Operation};

/// A call let in: the config as the guest gets it, and what it holds until it finishes.
pub(super) struct Admitted<'a> {
    /// The config, serialized once for the guest.
    pub(super) config_text: String,
    /// The breaker's verdict, told the call's outcome at the end. Held across the call: if
    /// this call is the half-open probe and its future is dropped before it reports,
    /// dropping the admission frees the probe.
    breaker: Admission<'a>,
    /// One of the adapter's `limits.max_concurrent_calls` turns.
    _turn: SemaphorePermit<'a>,
}

impl Admitted<'_> {
    /// Tell the breaker how the call ended.
    pub(super) fn finish(self, invocation: &Invocation) {
        self.breaker.record(invocation.receipt.error_code);
    }
}

/// Check the input, then take the breaker's admission and a turn; `Err` is the refusal.
pub(super) async fn admit<'a>(
    adapter: &'a AdapterInner,
    config: &Value,
    operation: &Operation,
    started: Instant,
) -> Result<Admitted<'a>, Invocation> {
    let refuse = |error| super::receipt::refusal(adapter, operation, error, started);
    let config_text = check_input(adapter, config, operation).map_err(refuse)?;
    let breaker = adapter.breaker.admit(&adapter.info.name).map_err(refuse)?;
    let Ok(turn) = adapter.concurrency.acquire().await else {
        return Err(refuse(AdapterError::host(
            ErrorCode::Internal,
            "adapter is shutting down",
        )));
    };
    Ok(Admitted {
        config_text,
        breaker,
        _turn: turn,
    })
}

/// The caller's input, checked before any guest runs: `VALIDATION` for bad input,
/// `PERMANENT` for an optional operation the adapter does not export.
fn check_input(
    adapter: &AdapterInner,
    config: &Value,
    operation: &Operation,
) -> Result<String, AdapterError> {
    let invalid = |message: String| AdapterError::host(ErrorCode::Validation, message);
    if !config.is_object() {
        return Err(invalid("config must be a JSON object".into()));
    }
    let supported = |present: bool, interface: &str| {
        if present {
            Ok(())
        } else {
            Err(AdapterError::unsupported(operation.name(), interface))
        }
    };
    let exports = &adapter.exports;
    match operation {
        Operation::Create {
            params,
            idempotency_key,
        } => {
            if !params.is_object() {
                return Err(invalid("params must be a JSON object".into()));
            }
            if let Some(key) = idempotency_key
                && (key.is_empty() || key.len() > 256 || key.chars().any(char::is_control))
            {
                return Err(invalid(
                    "idempotency key must be 1 to 256 bytes of printable text".into(),
                ));
            }
        }
        Operation::Pause { .. } | Operation::Resume { .. } => {
            supported(exports.lifecycle.is_some(), LIFECYCLE)?
        }
        Operation::EstimateCosts { .. } => supported(exports.costs.is_some(), COSTS)?,
        Operation::RotateCredentials { .. } => supported(exports.rotation.is_some(), ROTATION)?,
        _ => {}
    }
    if let Some(id) = operation.instance_id() {
        let max = adapter.policy.limits.max_instance_id_bytes as usize;
        if id.is_empty() || id.len() > max || id.chars().any(char::is_control) {
            return Err(invalid(format!(
                "instance id must be 1 to {max} bytes of printable text"
            )));
        }
    }
    Ok(config.to_string())
}
