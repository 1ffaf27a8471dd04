//! Stage 4, check: what the guest returned, judged. A failed call (trap, exhausted limit)
//! becomes the contract's error; an answer is checked against the contract; the leak guard
//! reads every field the guest wrote; a provider failure the guest passed through decides
//! the code; and the receipt gets what the store counted. Nothing after this stage sees
//! guest text unguarded.

use serde_json::Value;
use wasmtime::Trap;

use super::sandbox::{Answer, Ran};
use crate::adapter::AdapterInner;
use crate::bindings::wit;
use crate::capabilities::CallContext;
use crate::capabilities::http::ProviderFailure;
use crate::capabilities::limiter::LimitExceeded;
use crate::capabilities::secrets::guard::{Leak, LeakGuard};
use crate::contract::{
    self, AdapterError, ContractBounds, Credential, ErrorCode, ErrorOrigin, LimitKind,
};
use crate::operation::{Invocation, Operation, Output};
use crate::policy::Limits;

/// Judge what ran into the invocation the caller gets.
pub(super) fn check(adapter: &AdapterInner, ran: Ran<'_>, operation: &Operation) -> Invocation {
    let Ran {
        answer,
        store,
        mut receipt,
        started,
        slot,
    } = ran;
    let limits = &adapter.policy.limits;
    receipt.instantiated = true;
    receipt.fuel_consumed = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    // Guest text meets the leak guard where it enters the host: logs and progress in
    // their imports, stdout and stderr here, where they are read (a trap's message quotes
    // stderr, so it quotes the redacted text), and what the export returned as it is
    // checked. Nothing after this line sees guest text unguarded.
    let guard = &adapter.grants.secrets.guard;
    let (stdout, stdout_redactions) = store.data().stdout.redacted_text(guard);
    let (stderr, stderr_redactions) = store.data().stderr.redacted_text(guard);
    let result = match answer {
        Ok(answer) => check_answer(answer, operation, &limits.contract_bounds()),
        Err(error) => Err(classify(error, store.data(), limits, &stderr)),
    };
    let (result, result_redactions) = guard_result(guard, result);
    let ctx = store.into_data();
    // The store, and with it the instance, is gone: its pool slot may serve another call.
    drop(slot);
    let result = result.map_err(|error| reclassify(error, ctx.http.last_failure.as_ref()));
    receipt.redactions = [
        ctx.log.redactions,
        ctx.progress.redactions,
        stdout_redactions,
        stderr_redactions,
        result_redactions,
    ]
    .into_iter()
    .fold(0, u32::saturating_add);

    receipt.wall_time_us = started.elapsed().as_micros() as u64;
    receipt.memory_peak_bytes = ctx.limiter.memory_peak;
    receipt.state_ops = ctx.state.ops;
    receipt.state_writes = ctx.state.writes;
    receipt.http_requests = ctx.http.requests;
    receipt.secrets_revealed = ctx.secrets.revealed;
    receipt.log_records = ctx.log.records.len() as u32;
    receipt.logs_dropped = ctx.log.dropped;
    receipt.progress_dropped = ctx.progress.dropped;
    let (out_kept, out_dropped) = ctx.stdout.counts();
    let (err_kept, err_dropped) = ctx.stderr.counts();
    receipt.stdio_bytes = out_kept + err_kept;
    receipt.stdio_dropped_bytes = out_dropped + err_dropped;
    if let Err(error) = &result {
        receipt.error_code = Some(error.error_code);
        if let ErrorOrigin::Limit(kind) = error.origin {
            receipt.limit_hit = Some(kind);
        }
    }
    tracing::debug!(target: "airlock::call", adapter = %adapter.info.name, operation = operation.name(),
        wall_us = receipt.wall_time_us, fuel = receipt.fuel_consumed, error = ?receipt.error_code, "call finished");
    Invocation {
        result,
        receipt,
        logs: ctx.log.records,
        progress: ctx.progress.reports,
        stdout,
        stderr,
    }
}

/// The provider failure a guest passed through decides the code: a guest that gives up
/// after a 429 is `LIMIT` (with the Retry-After it saw), after a 401/403 `AUTH`, after a
/// 5xx or no answer at all `RETRYABLE`, whatever code it chose itself.
fn reclassify(mut error: AdapterError, failure: Option<&ProviderFailure>) -> AdapterError {
    if error.origin != ErrorOrigin::Adapter {
        return error;
    }
    let (code, status, retry_after) = match failure {
        Some(ProviderFailure::Status {
            status: 429,
            retry_after,
        }) => (ErrorCode::Limit, Some(429), retry_after.clone()),
        Some(ProviderFailure::Status {
            status: s @ (401 | 403),
            ..
        }) => (ErrorCode::Auth, Some(*s), None),
        Some(ProviderFailure::Status {
            status: s @ 500..=599,
            ..
        }) => (ErrorCode::Retryable, Some(*s), None),
        Some(ProviderFailure::Unreachable) => (ErrorCode::Retryable, None, None),
        _ => return error,
    };
    let mut raw = match error.raw.take() {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    if let Some(status) = status {
        raw.insert("providerStatus".into(), status.into());
    }
    if let Some(after) = retry_after {
        raw.insert("retryAfter".into(), after.into());
    }
    if code != error.error_code {
        raw.insert("adapterErrorCode".into(), error.error_code.as_str().into());
        error.error_code = code;
    }
    error.raw = Some(serde_json::Value::Object(raw));
    error
}

/// The leak guard on what the export returned, as it is checked. A result (what a caller
/// keeps and uses: connection, metadata, status, credentials, costs) that holds a granted
/// secret is refused: `INTERNAL` "adapter tried to return the secret "NAME" in /pointer",
/// because a `[REDACTED]` in a connection string would be a broken resource and no signal.
/// An error's message and raw detail are redacted, as logs are. Either way the receipt
/// counts what the guard replaced (or, for a refused result, would have).
fn guard_result(
    guard: &LeakGuard,
    result: Result<Output, AdapterError>,
) -> (Result<Output, AdapterError>, u32) {
    if guard.is_empty() {
        return (result, 0);
    }
    match result {
        Ok(mut output) => match leak_in(guard, &output) {
            None => (Ok(output), 0),
            Some(leak) => {
                let count = redact_output(guard, &mut output);
                let error = AdapterError {
                    error_code: ErrorCode::Internal,
                    message: format!("adapter tried to return {leak}"),
                    raw: None,
                    origin: ErrorOrigin::Contract,
                };
                (Err(error), count)
            }
        },
        Err(mut error) => {
            let mut count = guard.redact(&mut error.message);
            if let Some(raw) = &mut error.raw {
                count += guard.redact_json(raw);
            }
            (Err(error), count)
        }
    }
}

/// The first granted secret in a field of `output` the guest wrote, with its JSON pointer
/// into the output as the caller sees it (`Output::to_json`). Fields the host fills in
/// (the echoed idempotency key, a destroyed id, an expiry it formatted) are not the
/// guest's words and are not searched.
fn leak_in(guard: &LeakGuard, output: &Output) -> Option<Leak> {
    let text = |value: &str, pointer: &str| guard.find_text(value, pointer);
    let object =
        |map: &serde_json::Map<String, Value>, pointer: &str| guard.find_object(map, pointer);
    match output {
        Output::Valid | Output::Destroyed { .. } => None,
        Output::Provisioned(r) => text(&r.instance_id, "/instanceId")
            .or_else(|| object(&r.connection, "/connection"))
            .or_else(|| r.metadata.as_ref().and_then(|m| object(m, "/metadata"))),
        Output::Status(s) => s
            .message
            .as_deref()
            .and_then(|m| text(m, "/message"))
            .or_else(|| s.raw.as_ref().and_then(|r| object(r, "/raw"))),
        Output::Credential(Credential::Ephemeral { values, .. }) => object(values, "/values"),
        Output::Credential(Credential::Reference {
            locator, version, ..
        }) => text(locator, "/locator")
            .or_else(|| version.as_deref().and_then(|v| text(v, "/version"))),
        Output::CostEstimate(c) => text(&c.hourly, "/hourly")
            .or_else(|| text(&c.monthly, "/monthly"))
            .or_else(|| c.breakdown.as_ref().and_then(|b| object(b, "/breakdown"))),
    }
}

/// Redact every field [`leak_in`] searches; how many were replaced. Only counts: the
/// output it redacts is refused.
fn redact_output(guard: &LeakGuard, output: &mut Output) -> u32 {
    let object = |map: &mut serde_json::Map<String, serde_json::Value>| {
        let mut value = serde_json::Value::Object(std::mem::take(map));
        let count = guard.redact_json(&mut value);
        if let serde_json::Value::Object(redacted) = value {
            *map = redacted;
        }
        count
    };
    match output {
        Output::Valid | Output::Destroyed { .. } => 0,
        Output::Provisioned(r) => {
            guard.redact(&mut r.instance_id)
                + object(&mut r.connection)
                + r.metadata.as_mut().map_or(0, object)
        }
        Output::Status(s) => {
            s.message.as_mut().map_or(0, |m| guard.redact(m)) + s.raw.as_mut().map_or(0, object)
        }
        Output::Credential(Credential::Ephemeral { values, .. }) => object(values),
        Output::Credential(Credential::Reference {
            locator, version, ..
        }) => guard.redact(locator) + version.as_mut().map_or(0, |v| guard.redact(v)),
        Output::CostEstimate(c) => {
            guard.redact(&mut c.hourly)
                + guard.redact(&mut c.monthly)
                + c.breakdown.as_mut().map_or(0, object)
        }
    }
}

/// Check what the guest returned against the contract.
fn check_answer(
    answer: Answer,
    operation: &Operation,
    bounds: &ContractBounds,
) -> Result<Output, AdapterError> {
    let guest_error = |e: wit::AdapterError| match contract::adapter_error(e, bounds) {
        Ok(error) => error,
        Err(violation) => AdapterError::contract(violation),
    };
    let checked = match answer {
        Answer::Unit(r) => r.map_err(guest_error).map(|()| match operation {
            Operation::Destroy { instance_id } => Ok(Output::Destroyed {
                instance_id: instance_id.clone(),
            }),
            _ => Ok(Output::Valid),
        }),
        Answer::Provisioned(r) => r.map_err(guest_error).map(|result| {
            let key = match operation {
                Operation::Create {
                    idempotency_key, ..
                } => idempotency_key.as_deref(),
                _ => None,
            };
            contract::provision_result(result, key, bounds).map(Output::Provisioned)
        }),
        Answer::Status(r) => r
            .map_err(guest_error)
            .map(|d| contract::status_detail(d, bounds).map(Output::Status)),
        Answer::Credential(r) => r
            .map_err(guest_error)
            .map(|c| contract::credential(c, bounds).map(Output::Credential)),
        Answer::Costs(r) => r
            .map_err(guest_error)
            .map(|c| contract::cost_estimate(c, bounds).map(Output::CostEstimate)),
    };
    checked?.map_err(AdapterError::contract)
}

/// Turn a failed call (trap, exhausted limit, host failure) into the contract's error.
/// `stderr` is the guest's stderr as read (redacted), for a panic's message.
fn classify(
    error: wasmtime::Error,
    ctx: &CallContext,
    limits: &Limits,
    stderr: &str,
) -> AdapterError {
    if let Some(limit) = error
        .downcast_ref::<LimitExceeded>()
        .or(ctx.limiter.exceeded.as_ref())
    {
        return AdapterError::limit(limit.kind, limit.message.clone());
    }
    // The slot semaphore keeps component instances within the pool; a component needing
    // more memories, tables or core instances than its share can still find one of those
    // pools empty. That is a full pool too, not an adapter failure.
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return AdapterError::limit(
            LimitKind::Pool,
            format!("instance pool full: {full} (RuntimeConfig::pool_size)"),
        );
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => AdapterError::limit(
            LimitKind::Fuel,
            format!("fuel limit of {} exceeded (limits.fuel)", limits.fuel),
        ),
        Some(trap) => {
            let mut message = format!("adapter trapped: {trap}");
            // A Rust panic ends in `unreachable` after printing its message; only then is the
            // last `panicked at` line of stderr worth quoting (a guest could print one anyway,
            // so it is the guest's word, next to the host's trap).
            if *trap == Trap::UnreachableCodeReached
                && let Some(panic) = panic_message(stderr)
            {
                message.push_str(&format!(" ({panic})"));
            }
            AdapterError::trap(message)
        }
        // Lifting a result whose strings are not UTF-8 fails in wasmtime, not in the guest:
        // that is the guest's output breaking the contract.
        None if error.root_cause().to_string().contains("invalid utf-8") => {
            AdapterError::contract(contract::ContractViolation(format!(
                "it returned text that is not valid UTF-8 ({})",
                error.root_cause()
            )))
        }
        None => AdapterError::trap(format!("adapter failed: {}", error.root_cause())),
    }
}

/// The panic message a Rust guest printed to stderr before trapping, if any.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at")?;
    let text: String = stderr[start..]
        .lines()
        .take_while(|line| !line.starts_with("note:"))
        .collect::<Vec<_>>()
        .join(" ");
    let text = text.trim();
    Some(crate::capabilities::log::truncate(text.to_owned(), 1024).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_found_in_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom on purpose\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at src/lib.rs:9:5: boom on purpose")
        );
        assert_eq!(panic_message("nothing here"), None);
    }
}
