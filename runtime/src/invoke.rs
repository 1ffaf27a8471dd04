//! One call: check the caller's input, take a pool slot, build a fresh store with its
//! limits, instantiate, call the export, check what came back, and write the receipt.
//! Whatever the guest does, this returns an [`Invocation`]; it never panics on guest
//! behaviour and never leaves anything behind (the store and instance are dropped here).

use std::time::Instant;

use serde_json::Value;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::adapter::{AdapterInner, COSTS, CallOptions, LIFECYCLE, ROTATION};
use crate::bindings::{costs, wit};
use crate::capabilities::http::ProviderFailure;
use crate::capabilities::limiter::LimitExceeded;
use crate::capabilities::secrets::guard::{Leak, LeakGuard};
use crate::capabilities::{CallContext, CallSetup};
use crate::contract::{
    self, AdapterError, ContractBounds, Credential, ErrorCode, ErrorOrigin, LimitKind,
};
use crate::operation::{Invocation, Operation, Output, Receipt};
use crate::policy::Limits;

/// What the guest's export returned, before any checking.
enum Answer {
    Unit(Result<(), wit::AdapterError>),
    Provisioned(Result<wit::ProvisionResult, wit::AdapterError>),
    Status(Result<wit::StatusDetail, wit::AdapterError>),
    Credential(Result<wit::Credential, wit::AdapterError>),
    Costs(Result<costs::CostEstimate, wit::AdapterError>),
}

/// Run `operation` in a fresh instance. `config_text` is the config as the guest gets it,
/// from [`check_input`], which the caller has run.
pub(crate) async fn invoke(
    adapter: &AdapterInner,
    config_text: String,
    operation: Operation,
    options: CallOptions,
) -> Invocation {
    let started = Instant::now();
    let limits = &adapter.policy.limits;
    let mut receipt = empty_receipt(adapter, &operation, limits);

    // A pool slot per live instance: past the pool size, calls wait here (or give up after
    // `pool_wait`), never in wasmtime.
    let _slot = match take_slot(adapter).await {
        Ok(permit) => permit,
        Err(error) => return refusal(adapter, &operation, error, started),
    };
    let deadline = Instant::now() + limits.deadline();

    let context = CallContext::new(CallSetup {
        adapter: &adapter.info.name,
        limits,
        db: adapter.runtime.inner.db.clone(),
        grants: &adapter.grants,
        deadline,
        live_progress: options.progress,
        client_token: options.client_token,
    });
    let mut store = Store::new(&adapter.runtime.inner.engine, context);
    store.limiter(|ctx| &mut ctx.limiter);
    let fuel_set = store.set_fuel(limits.fuel);
    let deadline_ms = limits.deadline_ms;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(LimitExceeded {
                kind: LimitKind::Deadline,
                message: deadline_message(deadline_ms),
            }
            .into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });

    // The epoch interrupts guest code; the timeout also covers time spent awaiting host
    // imports (database, network), which epochs cannot interrupt.
    let remaining = deadline.saturating_duration_since(Instant::now());
    let answer = match fuel_set {
        Err(e) => Err(e),
        Ok(()) => match tokio::time::timeout(
            remaining,
            call_export(adapter, &mut store, &operation, &config_text),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_) => Err(LimitExceeded {
                kind: LimitKind::Deadline,
                message: deadline_message(deadline_ms),
            }
            .into()),
        },
    };

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
        Ok(answer) => check_answer(answer, &operation, &limits.contract_bounds()),
        Err(error) => Err(classify(error, store.data(), limits, &stderr)),
    };
    let (result, result_redactions) = guard_result(guard, result);
    let ctx = store.into_data();
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

/// A slot of the instance pool, waiting as `RuntimeConfig::pool_wait` allows.
async fn take_slot(
    adapter: &AdapterInner,
) -> Result<tokio::sync::SemaphorePermit<'_>, AdapterError> {
    let inner = &adapter.runtime.inner;
    let closed = || AdapterError::host(ErrorCode::Internal, "runtime is shutting down");
    if let Ok(permit) = inner.slots.try_acquire() {
        return Ok(permit);
    }
    match inner.config.pool_wait {
        None => inner.slots.acquire().await.map_err(|_| closed()),
        Some(wait) => match tokio::time::timeout(wait, inner.slots.acquire()).await {
            Ok(permit) => permit.map_err(|_| closed()),
            Err(_) => Err(AdapterError::limit(
                LimitKind::Pool,
                format!(
                    "instance pool full: all {} instances are in use (RuntimeConfig::pool_size); no slot freed within {} ms (RuntimeConfig::pool_wait)",
                    inner.config.pool_size,
                    wait.as_millis()
                ),
            )),
        },
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

fn empty_receipt(adapter: &AdapterInner, operation: &Operation, limits: &Limits) -> Receipt {
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

fn deadline_message(ms: u64) -> String {
    format!("deadline of {ms} ms exceeded (limits.deadline_ms)")
}

/// The caller's input, checked before any guest runs: `VALIDATION` for bad input,
/// `PERMANENT` for an optional operation the adapter does not export.
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

pub(crate) fn check_input(
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

/// Instantiate and call the export for `operation`.
#[allow(clippy::ptr_arg)] // bindgen's call methods take `&String`
async fn call_export(
    adapter: &AdapterInner,
    store: &mut Store<CallContext>,
    operation: &Operation,
    config: &String,
) -> wasmtime::Result<Answer> {
    let instance = adapter.pre.instantiate_async(&mut *store).await?;
    let exports = &adapter.exports;
    macro_rules! contract {
        () => {
            exports.contract.load(&mut *store, &instance)?
        };
    }
    Ok(match operation {
        Operation::ValidateConfig => Answer::Unit(
            contract!()
                .call_validate_config(&mut *store, config)
                .await?,
        ),
        Operation::Create {
            params,
            idempotency_key,
        } => {
            let params = params.to_string();
            Answer::Provisioned(
                contract!()
                    .call_create(&mut *store, config, &params, idempotency_key.as_deref())
                    .await?,
            )
        }
        Operation::Status { instance_id } => Answer::Status(
            contract!()
                .call_status(&mut *store, config, instance_id)
                .await?,
        ),
        Operation::Destroy { instance_id } => Answer::Unit(
            contract!()
                .call_destroy(&mut *store, config, instance_id)
                .await?,
        ),
        Operation::Credentials { instance_id } => Answer::Credential(
            contract!()
                .call_credentials(&mut *store, config, instance_id)
                .await?,
        ),
        Operation::Pause { instance_id } | Operation::Resume { instance_id } => {
            let indices = exports.lifecycle.as_ref().expect("checked before the call");
            let lifecycle = indices.load(&mut *store, &instance)?;
            Answer::Status(if matches!(operation, Operation::Pause { .. }) {
                lifecycle
                    .call_pause(&mut *store, config, instance_id)
                    .await?
            } else {
                lifecycle
                    .call_resume(&mut *store, config, instance_id)
                    .await?
            })
        }
        Operation::EstimateCosts { instance_id } => {
            let indices = exports.costs.as_ref().expect("checked before the call");
            Answer::Costs(
                indices
                    .load(&mut *store, &instance)?
                    .call_estimate_costs(&mut *store, config, instance_id)
                    .await?,
            )
        }
        Operation::RotateCredentials { instance_id } => {
            let indices = exports.rotation.as_ref().expect("checked before the call");
            Answer::Credential(
                indices
                    .load(&mut *store, &instance)?
                    .call_rotate_credentials(&mut *store, config, instance_id)
                    .await?,
            )
        }
    })
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
