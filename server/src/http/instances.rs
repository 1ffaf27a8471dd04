//! The contract's operations as endpoints, in the seed's camelCase shapes.
//!
//! Calls run the adapter's active version. The service keeps an instance registry: which
//! version created an instance and with which config, since the seed's `status`,
//! `destroy`, `credentials` and the optional operations take no config — the service
//! supplies the one the instance was created with. An instance of another tenant's, or one
//! this service did not create, is 404.
//!
//! Every call leaves a record (`GET /v1/calls/{id}`: its receipt and redacted logs) and
//! events on its instance's stream: `progress` as the guest reports it, `log`, `status`
//! when the status the service last saw changes, and the call's `receipt`. A create's
//! events, while its instance id is not known yet, go to the stream of its idempotency key
//! (`GET /v1/adapters/{name}/creates/{key}/events`) and, once it returns, to the instance's
//! as well.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock::storage::service::{
    FinishedCall, InstanceFilter, InstanceRecord, NewEvent, StatusSeen,
};
use airlock::{
    CallOptions, CostEstimate, Credential, Invocation, Operation, Output, ProgressReport,
    ProvisionResult, StatusDetail,
};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::json::ApiJson;
use super::{AdapterFailure, ApiError, ApiErrorBody, AppState, CallId, Caller};

/// The header a create's idempotency key may come in (or `idempotencyKey` in the body).
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The stream a create's events go to while its instance id is not known.
pub(crate) fn create_stream(key: &str) -> String {
    format!("create:{key}")
}

/// `validate-config`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateConfigRequest {
    /// The config to check.
    #[schema(value_type = Object)]
    config: Value,
}

/// `create`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateRequest {
    /// The adapter's config (kept with the instance for its later operations).
    #[schema(value_type = Object)]
    config: Value,
    /// The create parameters.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    params: Value,
    /// The idempotency key, if not in the `Idempotency-Key` header.
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

/// `validate-config`'s answer when the config is valid.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Valid {
    /// `true`.
    valid: bool,
}

/// `destroy`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Destroyed {
    /// `true`.
    destroyed: bool,
    /// The instance.
    instance_id: String,
}

/// An instance in the service's registry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceView {
    /// The adapter that created it.
    adapter: String,
    /// The instance id the adapter returned.
    instance_id: String,
    /// The adapter version that created it.
    version: String,
    /// The config it was created with.
    #[schema(value_type = Object)]
    config: Value,
    /// The last status the service saw, if any.
    status: Option<String>,
    /// When it was created, unix milliseconds.
    created_ms: i64,
    /// When a destroy of it succeeded, unix milliseconds.
    destroyed_ms: Option<i64>,
}

impl From<InstanceRecord> for InstanceView {
    fn from(record: InstanceRecord) -> InstanceView {
        InstanceView {
            adapter: record.adapter,
            instance_id: record.instance_id,
            version: record.version,
            config: serde_json::from_str(&record.config).unwrap_or(Value::Null),
            status: record.status,
            created_ms: record.created_ms,
            destroyed_ms: record.destroyed_ms,
        }
    }
}

/// `GET /v1/instances`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InstanceQuery {
    /// Only this adapter's instances.
    adapter: Option<String>,
    /// Only those whose last seen status is this (`PENDING`, `RUNNING`, `SUCCESS`, …).
    status: Option<String>,
    /// The previous page's `next`.
    cursor: Option<String>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<u32>,
}

/// A page of instances.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstancePage {
    /// The instances, by adapter and instance id.
    instances: Vec<InstanceView>,
    /// The cursor of the next page, when this one is full.
    next: Option<String>,
}

/// What a call needs besides its operation.
struct CallSite<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    call_id: &'a CallId,
    adapter: &'a str,
}

/// A finished call: the invocation and the version that ran.
struct Ran {
    invocation: Invocation,
    version: String,
}

impl CallSite<'_> {
    /// Run `operation` on the adapter's active version with `config`; its events go to
    /// `stream` (an instance id, or a create's key stream) as they come.
    async fn run(
        &self,
        config: &Value,
        operation: Operation,
        stream: Option<&str>,
    ) -> Result<Ran, ApiError> {
        if self.state.shutdown.is_cancelled() {
            return Err(ApiError::shutting_down());
        }
        let resolved = self
            .state
            .loaded
            .active(&self.caller.tenant, self.adapter)
            .await?;
        // Held until the call returns: the tenant's concurrency and rate on this node.
        let _permit = self
            .state
            .quotas
            .admit(&self.caller.tenant, &self.caller.ceiling.quotas)?;
        let operation_name = operation.name();
        let (sender, mut reports) = tokio::sync::mpsc::unbounded_channel::<ProgressReport>();
        let options = CallOptions::with_progress(sender);
        let call = resolved.adapter.invoke_with(config, operation, options);
        // Progress goes to the stream while the call runs, in the same task.
        let forward = async {
            while let Some(report) = reports.recv().await {
                if let Some(stream) = stream {
                    let mut data = json!({
                        "callId": self.call_id.0,
                        "operation": operation_name,
                        "current": report.current,
                        "total": report.total,
                    });
                    if let Some(message) = &report.message {
                        data["message"] = json!(message);
                    }
                    self.append(stream, "progress", &data).await;
                }
            }
        };
        let (invocation, ()) = tokio::join!(call, forward);
        let outcome = match &invocation.result {
            Ok(_) => "ok",
            Err(error) => error.error_code.as_str(),
        };
        crate::metrics::record_call(
            &self.caller.tenant,
            self.adapter,
            operation_name,
            &invocation.receipt,
            outcome,
        );
        Ok(Ran {
            invocation,
            version: resolved.version,
        })
    }

    /// Append an event now; a failure is logged, not the call's (the call happened). For
    /// events that must be live while the call runs (progress): the rest go through the
    /// recorder, after the answer, and so get larger sequence numbers than these.
    async fn append(&self, stream: &str, kind: &str, data: &Value) {
        if let Err(error) = self
            .state
            .store
            .event_append(
                &self.caller.tenant,
                self.adapter,
                stream,
                kind,
                &data.to_string(),
            )
            .await
        {
            tracing::warn!(target: "airlock::serve", call_id = %self.call_id.0, %error, "cannot store an event");
        }
    }

    /// Hand the call's record to the recorder with `first` (events to put before the
    /// call's own), `status` (a status it saw) and its logs and receipt on each of
    /// `streams`; they are written after the answer (see [`crate::recorder`]).
    async fn finish(
        &self,
        ran: &Ran,
        streams: &[&str],
        first: Vec<NewEvent>,
        status: Option<StatusSeen>,
    ) {
        let invocation = &ran.invocation;
        let receipt = serde_json::to_value(&invocation.receipt).unwrap_or(Value::Null);
        let logs = serde_json::to_value(&invocation.logs).unwrap_or(Value::Null);
        let record = airlock::storage::service::CallRecord {
            call_id: self.call_id.0.clone(),
            tenant: self.caller.tenant.clone(),
            adapter: self.adapter.to_owned(),
            operation: invocation.receipt.operation.to_owned(),
            receipt: receipt.to_string(),
            logs: logs.to_string(),
            at_ms: 0,
        };
        let operation = invocation.receipt.operation;
        let mut events = first;
        for stream in streams {
            let event = |kind: &str, data: &Value| NewEvent {
                stream: (*stream).to_owned(),
                kind: kind.to_owned(),
                data: data.to_string(),
            };
            for log in &invocation.logs {
                let mut data = serde_json::to_value(log).unwrap_or(Value::Null);
                data["callId"] = json!(self.call_id.0);
                data["operation"] = json!(operation);
                events.push(event("log", &data));
            }
            let mut data = json!({
                "callId": self.call_id.0,
                "operation": operation,
                "version": ran.version,
                "receipt": receipt,
            });
            if let Err(error) = &invocation.result {
                data["errorCode"] = json!(error.error_code);
            }
            events.push(event("receipt", &data));
        }
        self.state
            .recorder
            .record(FinishedCall {
                record,
                window: crate::upkeep::CALL_RECORD_WINDOW,
                status,
                events,
            })
            .await;
    }

    /// The config instance `id` of the caller's was created with; 404 if the registry has
    /// no such instance. An instance's config never changes, so a node keeps the ones it
    /// read ([`InstanceConfigs`]).
    async fn instance_config(&self, id: &str) -> Result<Arc<Value>, ApiError> {
        let key = (
            self.caller.tenant.clone(),
            self.adapter.to_owned(),
            id.to_owned(),
        );
        if let Some(config) = self.state.instance_configs.get(&key) {
            return Ok(config);
        }
        let record = self
            .state
            .store
            .instance(&self.caller.tenant, self.adapter, id)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no instance {id:?} of adapter {:?} (only instances this service created are known)",
                    self.adapter
                ))
            })?;
        let config: Value = serde_json::from_str(&record.config)
            .map_err(|e| ApiError::internal(format!("the stored config of {id:?}: {e}")))?;
        let config = Arc::new(config);
        self.state.instance_configs.put(key, config.clone());
        Ok(config)
    }

    /// Run `operation` on the registered instance `id`, with the config it was created
    /// with; record a changed status.
    async fn on_instance(
        &self,
        id: &str,
        operation: impl FnOnce(String) -> Operation,
    ) -> Result<Output, Response> {
        let config = self
            .instance_config(id)
            .await
            .map_err(IntoResponse::into_response)?;
        let ran = self
            .run(&config, operation(id.to_owned()), Some(id))
            .await
            .map_err(IntoResponse::into_response)?;
        let status = match &ran.invocation.result {
            Ok(Output::Status(detail)) => {
                Some(self.status_seen(id, detail, ran.invocation.receipt.operation))
            }
            _ => None,
        };
        if let Ok(Output::Destroyed { .. }) = &ran.invocation.result
            && let Err(error) = self
                .state
                .store
                .instance_destroyed(&self.caller.tenant, self.adapter, id)
                .await
        {
            tracing::warn!(target: "airlock::serve", call_id = %self.call_id.0, %error, "cannot record the destroy");
        }
        self.finish(&ran, &[id], Vec::new(), status).await;
        ran.invocation
            .result
            .map_err(|e| AdapterFailure(e).into_response())
    }

    /// The status `detail` tells, for the recorder: stored (with a `status` event) only if
    /// it differs from the instance's last one, which the store compares as it writes.
    fn status_seen(&self, id: &str, detail: &StatusDetail, operation: &str) -> StatusSeen {
        let status = serde_json::to_value(detail.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let data = json!({
            "callId": self.call_id.0,
            "operation": operation,
            "status": status,
            "detail": detail,
        });
        StatusSeen {
            instance_id: id.to_owned(),
            status,
            data: data.to_string(),
        }
    }
}

/// An instance: (tenant, adapter, instance id).
type InstanceKey = (String, String, String);

/// The configs of instances a node has read, by (tenant, adapter, instance id): an
/// instance's config is fixed at its create, so an entry never goes stale. At most
/// [`InstanceConfigs::CAPACITY`]; past that, an arbitrary entry makes room.
#[derive(Clone, Default)]
pub(crate) struct InstanceConfigs {
    entries: Arc<Mutex<HashMap<InstanceKey, Arc<Value>>>>,
}

impl InstanceConfigs {
    /// Most configs a node keeps.
    const CAPACITY: usize = 16_384;

    fn get(&self, key: &InstanceKey) -> Option<Arc<Value>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).cloned()
    }

    fn put(&self, key: InstanceKey, config: Arc<Value>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::CAPACITY
            && !entries.contains_key(&key)
            && let Some(evicted) = entries.keys().next().cloned()
        {
            entries.remove(&evicted);
        }
        entries.insert(key, config);
    }
}

/// An operation's answer: its output as JSON with `status`, or the adapter's error.
fn answer(result: Result<Output, Response>, status: StatusCode) -> Response {
    match result {
        Ok(output) => (status, Json(output.to_json())).into_response(),
        Err(response) => response,
    }
}

/// The idempotency key of a create: the header's or the body's (they must agree).
fn idempotency_key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get(IDEMPOTENCY_KEY) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("the Idempotency-Key header is not text"))?
                .to_owned(),
        ),
        None => None,
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::bad_request(format!(
            "the Idempotency-Key header ({h:?}) and the body's idempotencyKey ({b:?}) differ; send one"
        ))),
        (Some(key), _) | (None, Some(key)) => Ok(Some(key)),
        (None, None) => Ok(None),
    }
}

/// Check a config without creating anything.
#[utoipa::path(post, path = "/v1/adapters/{name}/validate-config", tag = "contract",
    params(("name" = String, Path, description = "The adapter's name")),
    request_body = ValidateConfigRequest,
    responses(
        (status = 200, description = "The config is valid", body = Valid),
        (status = 422, description = "VALIDATION: the adapter rejects the config", body = airlock::AdapterError),
        (status = 404, description = "No such adapter", body = ApiErrorBody),
    ))]
pub(super) async fn validate_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(call_id): Extension<CallId>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ValidateConfigRequest>,
) -> Response {
    let site = CallSite {
        state: &state,
        caller: &caller,
        call_id: &call_id,
        adapter: &name,
    };
    let ran = match site
        .run(&body.config, Operation::ValidateConfig, None)
        .await
    {
        Ok(ran) => ran,
        Err(error) => return error.into_response(),
    };
    site.finish(&ran, &[], Vec::new(), None).await;
    answer(
        ran.invocation
            .result
            .map_err(|e| AdapterFailure(e).into_response()),
        StatusCode::OK,
    )
}

/// Create an instance: 201 when created, 200 when the idempotency key was seen before.
#[utoipa::path(post, path = "/v1/adapters/{name}/instances", tag = "contract",
    params(
        ("name" = String, Path, description = "The adapter's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "The create's idempotency key"),
    ),
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Created", body = ProvisionResult),
        (status = 200, description = "The key's instance, created before", body = ProvisionResult),
        (status = 422, description = "VALIDATION", body = airlock::AdapterError),
        (status = 429, description = "LIMIT (the provider's, or a limit of the call)", body = airlock::AdapterError),
        (status = 503, description = "RETRYABLE", body = airlock::AdapterError),
        (status = 404, description = "No such adapter", body = ApiErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(call_id): Extension<CallId>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Response {
    let key = match idempotency_key(&headers, body.idempotency_key) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let site = CallSite {
        state: &state,
        caller: &caller,
        call_id: &call_id,
        adapter: &name,
    };
    let key_stream = key.as_deref().map(create_stream);
    let operation = Operation::Create {
        params: body.params,
        idempotency_key: key,
    };
    let ran = match site
        .run(&body.config, operation, key_stream.as_deref())
        .await
    {
        Ok(ran) => ran,
        Err(error) => return error.into_response(),
    };
    let created = match &ran.invocation.result {
        Ok(Output::Provisioned(result)) => Some(result.clone()),
        _ => None,
    };
    let mut streams: Vec<&str> = key_stream.as_deref().into_iter().collect();
    let mut first = Vec::new();
    if let Some(result) = &created {
        let record = InstanceRecord {
            tenant: caller.tenant.clone(),
            adapter: name.clone(),
            instance_id: result.instance_id.clone(),
            version: ran.version.clone(),
            config: body.config.to_string(),
            status: None,
            created_ms: 0,
            destroyed_ms: None,
        };
        if let Err(error) = state.store.instance_put(&record).await {
            // The resource exists at the provider; the caller must learn its id, so the
            // answer is still the result, and the log says what the registry lacks.
            tracing::error!(target: "airlock::serve", call_id = %call_id.0, instance = %result.instance_id, %error, "cannot record the instance");
        }
        // Progress reported before the id was known goes to the instance's stream too,
        // before the call's logs and receipt.
        for report in &ran.invocation.progress {
            let mut data = json!({
                "callId": call_id.0,
                "operation": "create",
                "current": report.current,
                "total": report.total,
            });
            if let Some(message) = &report.message {
                data["message"] = json!(message);
            }
            first.push(NewEvent {
                stream: result.instance_id.clone(),
                kind: "progress".to_owned(),
                data: data.to_string(),
            });
        }
        streams.push(&result.instance_id);
    }
    site.finish(&ran, &streams, first, None).await;
    let status = match &created {
        Some(result) if !result.created => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    answer(
        ran.invocation
            .result
            .map_err(|e| AdapterFailure(e).into_response()),
        status,
    )
}

macro_rules! instance_operation {
    ($(#[$meta:meta])* $handler:ident, $method:ident, $path:literal, $variant:ident, $body:ty, $what:literal) => {
        $(#[$meta])*
        #[utoipa::path($method, path = $path, tag = "contract",
            params(
                ("name" = String, Path, description = "The adapter's name"),
                ("id" = String, Path, description = "The instance id"),
            ),
            responses(
                (status = 200, description = $what, body = $body),
                (status = 404, description = "No such adapter or instance of the caller's", body = ApiErrorBody),
                (status = "default", description = "The adapter's error, status by its code (docs/service.md)", body = airlock::AdapterError),
            ))]
        pub(super) async fn $handler(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Extension(call_id): Extension<CallId>,
            Path((name, id)): Path<(String, String)>,
        ) -> Response {
            let site = CallSite {
                state: &state,
                caller: &caller,
                call_id: &call_id,
                adapter: &name,
            };
            let result = site
                .on_instance(&id, |instance_id| Operation::$variant { instance_id })
                .await;
            answer(result, StatusCode::OK)
        }
    };
}

instance_operation!(
    /// The instance's status and progress.
    status, get, "/v1/adapters/{name}/instances/{id}", Status, StatusDetail, "The instance's status"
);
instance_operation!(
    /// Destroy the instance (idempotent).
    destroy, delete, "/v1/adapters/{name}/instances/{id}", Destroy, Destroyed, "Destroyed"
);
instance_operation!(
    /// Short-lived credentials, or a reference to them.
    credentials, post, "/v1/adapters/{name}/instances/{id}/credentials", Credentials, Credential, "Credentials"
);
instance_operation!(
    /// Pause the instance (the optional `lifecycle` interface).
    pause, post, "/v1/adapters/{name}/instances/{id}/pause", Pause, StatusDetail, "The status after pausing"
);
instance_operation!(
    /// Resume the instance (the optional `lifecycle` interface).
    resume, post, "/v1/adapters/{name}/instances/{id}/resume", Resume, StatusDetail, "The status after resuming"
);
instance_operation!(
    /// New credentials, the old ones revoked (the optional `rotation` interface).
    rotate_credentials, post, "/v1/adapters/{name}/instances/{id}/rotate-credentials", RotateCredentials, Credential, "The new credentials"
);
instance_operation!(
    /// What the instance costs (the optional `costs` interface).
    costs, get, "/v1/adapters/{name}/instances/{id}/costs", EstimateCosts, CostEstimate, "The estimate"
);

/// The caller's instances, paged.
#[utoipa::path(get, path = "/v1/instances", tag = "contract",
    params(InstanceQuery),
    responses(
        (status = 200, description = "A page of instances", body = InstancePage),
        (status = 400, description = "A malformed cursor", body = ApiErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<InstanceQuery>,
) -> Result<Json<InstancePage>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let after = match &query.cursor {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    let filter = InstanceFilter {
        adapter: query.adapter,
        status: query.status,
        after,
        limit,
    };
    // The statuses of calls this node answered may still be queued for writing.
    state.recorder.flush().await;
    let instances = state.store.instances(&caller.tenant, &filter).await?;
    let next = (instances.len() as u32 == limit)
        .then(|| instances.last())
        .flatten()
        .map(|last| encode_cursor(&last.adapter, &last.instance_id));
    Ok(Json(InstancePage {
        instances: instances.into_iter().map(InstanceView::from).collect(),
        next,
    }))
}

/// A page cursor: the last (adapter, instance id) of a page, as hex of `adapter\0id`.
fn encode_cursor(adapter: &str, instance_id: &str) -> String {
    hex::encode(format!("{adapter}\0{instance_id}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("the cursor is not one this service gave; start without it");
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (adapter, id) = text.split_once('\0').ok_or_else(bad)?;
    Ok((adapter.to_owned(), id.to_owned()))
}
