//! A loaded adapter: its compiled component, pre-linked once (`InstancePre`), the export
//! indices of the contract and of whichever optional interfaces it has, and its policy.
//! Every call through it gets a fresh instance ([`crate::call`]).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use crate::bindings::{contract, costs, lifecycle, rotation};
use crate::cache::CacheOutcome;
use crate::capabilities::progress::ProgressReport;
use crate::capabilities::{AdapterGrants, CallContext};
use crate::contract::{AdapterError, CostEstimate, Credential, ProvisionResult, StatusDetail};
use crate::error::Error;
use crate::operation::{Invocation, Operation, Output};
use crate::policy::Policy;
use crate::runtime::{NamespaceBinding, Runtime};
use crate::storage::Scope;

/// The WIT names the runtime looks for.
pub(crate) const CONTRACT: &str = "airlock:adapter/contract@0.1.0";
pub(crate) const LIFECYCLE: &str = "airlock:adapter/lifecycle@0.1.0";
pub(crate) const COSTS: &str = "airlock:adapter/costs@0.1.0";
pub(crate) const ROTATION: &str = "airlock:adapter/rotation@0.1.0";

/// What a component is: its identity, what it exports and what it imports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterInfo {
    /// The adapter's name (state namespace).
    pub name: String,
    /// SHA-256 of the component bytes.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size_bytes: usize,
    /// Whether loading compiled it or found it in the cache.
    pub cache: CacheOutcome,
    /// Every export of the component, by WIT name.
    pub exports: Vec<String>,
    /// Every import of the component, by WIT name.
    pub imports: Vec<String>,
    /// The optional interfaces it exports.
    pub optional: OptionalInterfaces,
}

/// Which optional contract interfaces a component exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OptionalInterfaces {
    /// `lifecycle`: pause and resume.
    pub lifecycle: bool,
    /// `costs`: estimate-costs.
    pub costs: bool,
    /// `rotation`: rotate-credentials.
    pub rotation: bool,
}

impl AdapterInfo {
    pub(crate) fn describe(
        engine: &Engine,
        component: &Component,
        name: String,
        sha256: String,
        size_bytes: usize,
        cache: CacheOutcome,
    ) -> AdapterInfo {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let has = |wanted: &str| exports.iter().any(|e| e == wanted);
        let optional = OptionalInterfaces {
            lifecycle: has(LIFECYCLE),
            costs: has(COSTS),
            rotation: has(ROTATION),
        };
        AdapterInfo {
            name,
            sha256,
            size_bytes,
            cache,
            exports,
            imports,
            optional,
        }
    }

    /// The Airlock capabilities the component imports (`state`, `log`, …).
    pub fn capabilities(&self) -> Vec<&str> {
        self.imports
            .iter()
            .filter_map(|i| i.strip_prefix("airlock:adapter/"))
            .map(|i| i.split('@').next().unwrap_or(i))
            .filter(|i| *i != "types")
            .collect()
    }
}

/// Export indices resolved once at load.
pub(crate) struct Exports {
    pub(crate) contract: contract::GuestIndices,
    pub(crate) lifecycle: Option<lifecycle::GuestIndices>,
    pub(crate) costs: Option<costs::GuestIndices>,
    pub(crate) rotation: Option<rotation::GuestIndices>,
}

/// A loaded adapter. Cheap to clone; calls may run concurrently, each in its own instance.
#[derive(Clone)]
pub struct Adapter {
    pub(crate) inner: Arc<AdapterInner>,
    /// Whose state and records its calls use: a tenant and the adapter's name.
    scope: Scope,
}

/// Where a loaded adapter sits: its scope (the default tenant at load), what binds its
/// namespace, and where it came from.
pub(crate) struct Placement {
    pub(crate) scope: Scope,
    pub(crate) binding: NamespaceBinding,
    pub(crate) origin: String,
}

pub(crate) struct AdapterInner {
    pub(crate) runtime: Runtime,
    pub(crate) pre: InstancePre<CallContext>,
    pub(crate) exports: Exports,
    pub(crate) policy: Policy,
    pub(crate) grants: AdapterGrants,
    pub(crate) info: AdapterInfo,
    /// At most `limits.max_concurrent_calls` calls of this adapter at once.
    pub(crate) concurrency: tokio::sync::Semaphore,
    pub(crate) breaker: crate::breaker::CircuitBreaker,
    /// What binds its namespace to this component, for each tenant it is used for.
    binding: NamespaceBinding,
    /// Where the component came from, for messages.
    origin: String,
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Receives the guest's progress reports as they happen.
    pub progress: Option<UnboundedSender<ProgressReport>>,
    /// Set by the runtime's idempotency layer, not by callers.
    pub(crate) client_token: Option<String>,
}

impl CallOptions {
    /// Options that send the guest's progress reports to `sender` as they happen.
    pub fn with_progress(sender: UnboundedSender<ProgressReport>) -> CallOptions {
        CallOptions {
            progress: Some(sender),
            client_token: None,
        }
    }
}

fn mismatch(origin: &str, message: String) -> Error {
    Error::WorldMismatch {
        origin: origin.to_owned(),
        message,
    }
}

impl Adapter {
    pub(crate) fn prepare(
        runtime: Runtime,
        component: Component,
        policy: Policy,
        grants: AdapterGrants,
        info: AdapterInfo,
        placement: Placement,
    ) -> Result<Adapter, Error> {
        let Placement {
            scope,
            binding,
            origin,
        } = placement;
        let origin = origin.as_str();
        let engine = &runtime.inner.engine;
        // Imports first: a component asking for something Airlock does not grant (a newer
        // WASI, wasi:http, an unknown interface) is told which one.
        for (name, item) in component.component_type().imports(engine) {
            let known = name.starts_with("airlock:adapter/") || name.starts_with("wasi:");
            if !known
                || matches!(
                    item.ty,
                    ComponentItem::CoreFunc(_) | ComponentItem::Module(_)
                )
            {
                return Err(mismatch(
                    origin,
                    format!("it imports `{name}`, which Airlock does not provide"),
                ));
            }
        }
        let pre = runtime
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| mismatch(origin, format!("its imports cannot be satisfied: {e:#}")))?;

        if !info.exports.iter().any(|e| e == CONTRACT) {
            let similar: Vec<&String> = info
                .exports
                .iter()
                .filter(|e| e.contains("contract"))
                .collect();
            let hint = if similar.is_empty() {
                format!("it exports {:?}", info.exports)
            } else {
                format!(
                    "it exports {similar:?} instead; rebuild it against this runtime's WIT (airlock:adapter@0.1.0)"
                )
            };
            return Err(mismatch(
                origin,
                format!("it does not export `{CONTRACT}`; {hint}"),
            ));
        }
        let contract = contract::GuestIndices::new(&pre).map_err(|e| {
            mismatch(
                origin,
                format!("its `{CONTRACT}` export does not match the WIT: {e:#}"),
            )
        })?;
        // An optional interface is either absent, or present and exactly right.
        macro_rules! optional {
            ($present:expr, $module:ident, $wit:expr) => {
                if $present {
                    Some($module::GuestIndices::new(&pre).map_err(|e| {
                        mismatch(
                            origin,
                            format!("its `{}` export does not match the WIT: {e:#}", $wit),
                        )
                    })?)
                } else {
                    None
                }
            };
        }
        let exports = Exports {
            contract,
            lifecycle: optional!(info.optional.lifecycle, lifecycle, LIFECYCLE),
            costs: optional!(info.optional.costs, costs, COSTS),
            rotation: optional!(info.optional.rotation, rotation, ROTATION),
        };
        tracing::info!(target: "airlock::load", adapter = %info.name, sha256 = %info.sha256, cache = ?info.cache, "adapter loaded");
        let policy_limits = policy.limits.clone();
        Ok(Adapter {
            inner: Arc::new(AdapterInner {
                runtime,
                pre,
                exports,
                policy,
                grants,
                info,
                concurrency: tokio::sync::Semaphore::new(
                    policy_limits.max_concurrent_calls as usize,
                ),
                breaker: crate::breaker::CircuitBreaker::new(
                    policy_limits.breaker_failures,
                    std::time::Duration::from_millis(policy_limits.breaker_cooldown_ms),
                ),
                binding,
                origin: origin.to_owned(),
            }),
            scope,
        })
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.inner.info.name
    }

    /// What the component exports and imports.
    pub fn info(&self) -> &AdapterInfo {
        &self.inner.info
    }

    /// The policy it runs under.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Run `operation` with `config` in a fresh instance; the full outcome with its receipt.
    pub async fn invoke(&self, config: &Value, operation: Operation) -> Invocation {
        self.invoke_with(config, operation, CallOptions::default())
            .await
    }

    /// [`Adapter::invoke`] with options (live progress).
    pub async fn invoke_with(
        &self,
        config: &Value,
        operation: Operation,
        options: CallOptions,
    ) -> Invocation {
        crate::call::run(&self.inner, &self.scope, config, operation, options).await
    }

    /// This adapter for `tenant`: the same compiled component and policy, with the
    /// tenant's own state, idempotency keys, destroy records and client tokens. Binds the
    /// adapter's namespace for the tenant as loading did for the default tenant (so a
    /// namespace a tenant gave another component is refused). The circuit breaker and the
    /// concurrency limit stay shared by every tenant of this loaded adapter.
    pub async fn for_tenant(&self, tenant: &str) -> Result<Adapter, Error> {
        crate::policy::validate_name(tenant).map_err(|message| Error::Policy {
            origin: self.inner.origin.clone(),
            message: format!("tenant {tenant:?}: {message}"),
        })?;
        let scope = Scope::new(tenant, self.scope.adapter.clone());
        self.inner
            .runtime
            .bind_namespace(&scope, &self.inner.binding, &self.inner.origin)
            .await?;
        Ok(Adapter {
            inner: self.inner.clone(),
            scope,
        })
    }

    /// The tenant this adapter's calls belong to ([`crate::storage::DEFAULT_TENANT`] unless
    /// it came from [`Adapter::for_tenant`]).
    pub fn tenant(&self) -> &str {
        &self.scope.tenant
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    pub(crate) fn binding(&self) -> &NamespaceBinding {
        &self.inner.binding
    }

    pub(crate) fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// [`Adapter::invoke`], retried per `policy` while the error is `RETRYABLE` or `LIMIT`.
    /// A create keeps its idempotency key on every attempt. Returns the last attempt, with
    /// `receipt.attempts` saying how many there were.
    pub async fn invoke_with_retry(
        &self,
        config: &Value,
        operation: Operation,
        policy: &crate::RetryPolicy,
    ) -> Invocation {
        let started = std::time::Instant::now();
        let mut jitter = crate::retry::Jitter::new();
        let mut attempt = 1;
        loop {
            let mut invocation = self.invoke(config, operation.clone()).await;
            invocation.receipt.attempts = attempt;
            let error = match &invocation.result {
                Err(error) if crate::RetryPolicy::retries(error.error_code) => error,
                _ => return invocation,
            };
            let delay = policy.delay(attempt, error, jitter.next());
            if attempt >= policy.max_attempts || started.elapsed() + delay > policy.max_elapsed {
                return invocation;
            }
            tracing::debug!(target: "airlock::retry", adapter = %self.name(), attempt, ?delay, code = %error.error_code, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// `validate-config`.
    pub async fn validate_config(&self, config: &Value) -> Result<(), AdapterError> {
        self.invoke(config, Operation::ValidateConfig)
            .await
            .result
            .map(|_| ())
    }

    /// `create`.
    pub async fn create(
        &self,
        config: &Value,
        params: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<ProvisionResult, AdapterError> {
        let op = Operation::Create {
            params: params.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        match self.invoke(config, op).await.result? {
            Output::Provisioned(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// `status`.
    pub async fn status(
        &self,
        config: &Value,
        instance_id: &str,
    ) -> Result<StatusDetail, AdapterError> {
        self.status_like(
            config,
            Operation::Status {
                instance_id: instance_id.to_owned(),
            },
        )
        .await
    }

    /// `destroy`.
    pub async fn destroy(&self, config: &Value, instance_id: &str) -> Result<(), AdapterError> {
        self.invoke(
            config,
            Operation::Destroy {
                instance_id: instance_id.to_owned(),
            },
        )
        .await
        .result
        .map(|_| ())
    }

    /// `credentials`.
    pub async fn credentials(
        &self,
        config: &Value,
        instance_id: &str,
    ) -> Result<Credential, AdapterError> {
        self.credential_like(
            config,
            Operation::Credentials {
                instance_id: instance_id.to_owned(),
            },
        )
        .await
    }

    /// Optional `pause`; `PERMANENT` if the adapter lacks `lifecycle`.
    pub async fn pause(
        &self,
        config: &Value,
        instance_id: &str,
    ) -> Result<StatusDetail, AdapterError> {
        self.status_like(
            config,
            Operation::Pause {
                instance_id: instance_id.to_owned(),
            },
        )
        .await
    }

    /// Optional `resume`; `PERMANENT` if the adapter lacks `lifecycle`.
    pub async fn resume(
        &self,
        config: &Value,
        instance_id: &str,
    ) -> Result<StatusDetail, AdapterError> {
        self.status_like(
            config,
            Operation::Resume {
                instance_id: instance_id.to_owned(),
            },
        )
        .await
    }

    /// Optional `estimate-costs`; `PERMANENT` if the adapter lacks `costs`.
    pub async fn estimate_costs(
        &self,
        config: &Value,
        instance_id: &str,
    ) -> Result<CostEstimate, AdapterError> {
        match self
            .invoke(
                config,
                Operation::EstimateCosts {
                    instance_id: instance_id.to_owned(),
                },
            )
            .await
            .result?
        {
            Output::CostEstimate(estimate) => Ok(estimate),
            other => Err(unexpected(other)),
        }
    }

    /// Optional `rotate-credentials`; `PERMANENT` if the adapter lacks `rotation`.
    pub async fn rotate_credentials(
        &self,
        config: &Value,
        instance_id: &str,
    ) -> Result<Credential, AdapterError> {
        self.credential_like(
            config,
            Operation::RotateCredentials {
                instance_id: instance_id.to_owned(),
            },
        )
        .await
    }

    async fn status_like(
        &self,
        config: &Value,
        op: Operation,
    ) -> Result<StatusDetail, AdapterError> {
        match self.invoke(config, op).await.result? {
            Output::Status(detail) => Ok(detail),
            other => Err(unexpected(other)),
        }
    }

    async fn credential_like(
        &self,
        config: &Value,
        op: Operation,
    ) -> Result<Credential, AdapterError> {
        match self.invoke(config, op).await.result? {
            Output::Credential(credential) => Ok(credential),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(output: Output) -> AdapterError {
    AdapterError::host(
        crate::ErrorCode::Internal,
        format!("runtime bug: unexpected output {output:?}"),
    )
}
