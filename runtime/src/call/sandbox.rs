//! Stage 3, sandbox: a pool slot, a fresh store with the policy's limits (fuel, memory,
//! the deadline by epoch and by timeout), the instance, and the call of the export. What
//! comes out is the guest's raw answer and the store it ran in, for the check stage.

use std::time::Instant;

use wasmtime::{Store, UpdateDeadline};

use super::receipt::{deadline_message, empty_receipt, refusal};
use crate::adapter::{AdapterInner, CallOptions};
use crate::bindings::{costs, wit};
use crate::capabilities::limiter::LimitExceeded;
use crate::capabilities::{CallContext, CallSetup};
use crate::contract::{AdapterError, ErrorCode, LimitKind};
use crate::operation::{Invocation, Operation, Receipt};
use crate::storage::Scope;

/// A call that ran: the export's answer (or why there is none), the store it ran in, and
/// the receipt so far.
pub(super) struct Ran<'a> {
    pub(super) answer: wasmtime::Result<Answer>,
    pub(super) store: Store<CallContext>,
    pub(super) receipt: Receipt,
    /// When the sandbox stage began (the receipt's wall time counts from here).
    pub(super) started: Instant,
    /// The pool slot, held until the store is gone: the instance occupies wasmtime's pool
    /// until then, and a slot freed earlier would let another call find the pool full.
    pub(super) slot: Slot<'a>,
}

/// A slot of the instance pool, counted in the `airlock_instances_in_use` gauge (the
/// `metrics` facade: a no-op unless the embedder installed a recorder) while it is held.
pub(super) struct Slot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl<'a> Slot<'a> {
    fn new(permit: tokio::sync::SemaphorePermit<'a>) -> Slot<'a> {
        metrics::gauge!("airlock_instances_in_use").increment(1.0);
        Slot { _permit: permit }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        metrics::gauge!("airlock_instances_in_use").decrement(1.0);
    }
}

/// What the guest's export returned, before any checking.
pub(super) enum Answer {
    Unit(Result<(), wit::AdapterError>),
    Provisioned(Result<wit::ProvisionResult, wit::AdapterError>),
    Status(Result<wit::StatusDetail, wit::AdapterError>),
    Credential(Result<wit::Credential, wit::AdapterError>),
    Costs(Result<costs::CostEstimate, wit::AdapterError>),
}

/// Run `operation` in a fresh instance: take a pool slot (waiting as
/// `RuntimeConfig::pool_wait` allows), build the store with the policy's limits, instantiate
/// and call the export. `Err` is a refusal (no slot): no instance was made.
pub(super) async fn run<'a>(
    adapter: &'a AdapterInner,
    scope: &Scope,
    config_text: &String,
    operation: &Operation,
    options: CallOptions,
) -> Result<Ran<'a>, Invocation> {
    let started = Instant::now();
    let limits = &adapter.policy.limits;
    let receipt = empty_receipt(adapter, operation, limits);

    // A pool slot per live instance: past the pool size, calls wait here (or give up after
    // `pool_wait`), never in wasmtime.
    let slot = match take_slot(adapter).await {
        Ok(permit) => permit,
        Err(error) => return Err(refusal(adapter, operation, error, started)),
    };
    let deadline = Instant::now() + limits.deadline();

    let context = CallContext::new(CallSetup {
        scope,
        limits,
        storage: adapter.runtime.inner.storage.clone(),
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
            call_export(adapter, &mut store, operation, config_text),
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
    Ok(Ran {
        answer,
        store,
        receipt,
        started,
        slot,
    })
}

/// A slot of the instance pool, waiting as `RuntimeConfig::pool_wait` allows. A call that
/// had to wait records how long in `airlock_pool_wait_seconds` (whether it got a slot or
/// gave up); one that got a slot at once records nothing, to keep the common path cheap.
async fn take_slot(adapter: &AdapterInner) -> Result<Slot<'_>, AdapterError> {
    let inner = &adapter.runtime.inner;
    if let Ok(permit) = inner.slots.try_acquire() {
        return Ok(Slot::new(permit));
    }
    let waiting = Instant::now();
    let taken = wait_for_slot(adapter).await;
    metrics::histogram!("airlock_pool_wait_seconds").record(waiting.elapsed().as_secs_f64());
    taken.map(Slot::new)
}

/// Wait for a slot of a full pool, as long as `RuntimeConfig::pool_wait` allows.
async fn wait_for_slot(
    adapter: &AdapterInner,
) -> Result<tokio::sync::SemaphorePermit<'_>, AdapterError> {
    let inner = &adapter.runtime.inner;
    let closed = || AdapterError::host(ErrorCode::Internal, "runtime is shutting down");
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
