//! Receipts and invocations the stages build: an empty receipt for a call, and the
//! invocation of a call the runtime answered itself (refused, or replayed from a record)
//! without an instance. A leaf every stage may use; it calls no stage.

use std::time::Instant;

use crate::adapter::AdapterInner;
use crate::contract::{AdapterError, ErrorOrigin};
use crate::operation::{Invocation, Operation, Output, Receipt};
use crate::policy::Limits;

pub(super) fn empty_receipt(
    adapter: &AdapterInner,
    operation: &Operation,
    limits: &Limits,
) -> Receipt {
    Receipt {
        adapter: adapter.info.name.clone(),
        operation: operation.name(),
        wall_time_us: 0,
        fuel_consumed: 0,
        fuel_limit: limits.fuel,
        memory_peak_bytes: 0,
        memory_limit_bytes: limits.memory_bytes(),
        deadline_ms: limits.deadline_ms,
        limit_hit: None,
        error_code: None,
        instantiated: false,
        attempts: 1,
        idempotency: None,
        redactions: 0,
        secrets_revealed: 0,
        state_ops: 0,
        state_writes: 0,
        http_requests: 0,
        log_records: 0,
        logs_dropped: 0,
        progress_dropped: 0,
        stdio_bytes: 0,
        stdio_dropped_bytes: 0,
    }
}

pub(super) fn deadline_message(ms: u64) -> String {
    format!("deadline of {ms} ms exceeded (limits.deadline_ms)")
}

/// An invocation the runtime answered itself, without an instance.
fn without_instance(
    adapter: &AdapterInner,
    operation: &Operation,
    result: Result<Output, AdapterError>,
    started: Instant,
) -> Invocation {
    let mut receipt = empty_receipt(adapter, operation, &adapter.policy.limits);
    receipt.wall_time_us = started.elapsed().as_micros() as u64;
    receipt.error_code = result.as_ref().err().map(|e| e.error_code);
    if let Err(AdapterError {
        origin: ErrorOrigin::Limit(kind),
        ..
    }) = &result
    {
        receipt.limit_hit = Some(*kind);
    }
    Invocation {
        result,
        receipt,
        logs: vec![],
        progress: vec![],
        stdout: String::new(),
        stderr: String::new(),
    }
}

/// The runtime refused the call before any guest ran.
pub(crate) fn refusal(
    adapter: &AdapterInner,
    operation: &Operation,
    error: AdapterError,
    started: Instant,
) -> Invocation {
    without_instance(adapter, operation, Err(error), started)
}

/// The runtime answered from its own records, without running the guest.
pub(crate) fn answered(
    adapter: &AdapterInner,
    operation: &Operation,
    output: Output,
    started: Instant,
) -> Invocation {
    without_instance(adapter, operation, Ok(output), started)
}
