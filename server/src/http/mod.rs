//! `airlock serve`: the service over HTTP (axum). This part holds the frame every endpoint
//! shares — the call id on every answer, authentication of `/v1/`, the service's own error
//! bodies, health and readiness — and the adapter listings. The registry's uploads and the
//! contract's operations build on it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `{"status": "ok"}` while the process serves |
//! | `GET /readyz` | 200 `{"status": "ready", "database": …}` when the database answers, else 503 |
//! | `GET /metrics` | the node's metrics in Prometheus' text format ([`crate::metrics`]) |
//! | `GET /v1/adapters` | the caller's adapters, their versions and the active one |
//! | `GET /v1/adapters/{name}` | one of them, or 404 |

mod adapters;
mod auth;
mod calls;
mod error;
mod events;
mod instances;
mod json;
mod registry;

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use airlock::Runtime;
use airlock::storage::service::ServiceStore;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Tenants;
pub use auth::Caller;
pub use error::{
    AdapterFailure, ApiError, ApiErrorBody, ApiErrorDetail, ERROR_ORIGIN, ERROR_SOURCE,
    adapter_status,
};

/// The header every answer carries: the id of the call it answers.
pub const CALL_ID: &str = "airlock-call-id";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    runtime: Runtime,
    store: Arc<dyn ServiceStore>,
    tenants: Tenants,
    /// The tenants' call quotas on this node; the contract handlers take a permit per call.
    pub(crate) quotas: crate::quotas::Quotas,
    /// Tenants' ceilings, parsed once per text (the authentication middleware's).
    ceilings: auth::CeilingCache,
    /// Cancelled when the service stops: open event streams end, new calls are refused.
    shutdown: CancellationToken,
    /// Adapters loaded for calls.
    loaded: crate::loaded::Loaded,
    /// Writes calls' records and events after their answers.
    recorder: crate::recorder::Recorder,
    /// Instances' configs, as read for calls.
    instance_configs: instances::InstanceConfigs,
}

/// The OpenAPI document's frame; the paths and schemas come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airlock",
        description = "Airlock as a multi-tenant service: an adapter registry with admission, the adapter contract's operations, live events. See docs/service.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerKey),
    components(schemas(ApiErrorBody, ApiErrorDetail, airlock::AdapterError, airlock::ErrorCode)),
    tags(
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "registry", description = "Adapters and their versions"),
        (name = "contract", description = "The adapter contract's operations, on the caller's adapters"),
        (name = "events", description = "Live events of instances and creates, as server-sent events"),
        (name = "calls", description = "Each call's record: its receipt and redacted logs"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme: a tenant's API key.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The routes anyone may call.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(crate::metrics::metrics))
}

/// The routes of `/v1/`: a tenant's, behind its API key.
fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(adapters::list))
        .routes(routes!(adapters::one))
        .routes(routes!(instances::validate_config))
        .routes(routes!(instances::create))
        .routes(routes!(instances::status, instances::destroy))
        .routes(routes!(instances::credentials))
        .routes(routes!(instances::pause))
        .routes(routes!(instances::resume))
        .routes(routes!(instances::rotate_credentials))
        .routes(routes!(instances::costs))
        .routes(routes!(instances::list))
        .routes(routes!(events::stream))
        .routes(routes!(events::create_stream))
        .routes(routes!(calls::one))
        .routes(registry::upload_route())
        .routes(routes!(registry::activate))
}

/// The OpenAPI 3.1 document of the service, as `GET /openapi.json` serves it (and
/// `docs/openapi.json` holds it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = public_routes().merge(v1_routes()).split_for_parts();
    // Every `/v1/` operation needs a tenant's key.
    let bearer =
        utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new());
    for (path, item) in api.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            operation.security = Some(vec![bearer.clone()]);
        }
    }
    api
}

/// The service's routes on `runtime` (its database holds the tenants and the registry).
pub fn router(runtime: Runtime) -> Router {
    router_with_shutdown(runtime, CancellationToken::new())
}

pub(crate) fn router_with_shutdown(runtime: Runtime, shutdown: CancellationToken) -> Router {
    app(runtime, shutdown).0
}

/// The service's routes, and the recorder of their calls (to flush when the service stops).
fn app(runtime: Runtime, shutdown: CancellationToken) -> (Router, crate::recorder::Recorder) {
    // The metrics recorder exists before the first call is recorded.
    crate::metrics::handle();
    let store = runtime.service_store();
    let recorder = crate::recorder::Recorder::spawn(store.clone());
    let state = AppState {
        recorder: recorder.clone(),
        instance_configs: instances::InstanceConfigs::default(),
        tenants: Tenants::new(store.clone()),
        loaded: crate::loaded::Loaded::new(runtime.clone(), store.clone()),
        quotas: crate::quotas::Quotas::new(),
        ceilings: auth::CeilingCache::default(),
        store,
        runtime,
        shutdown,
    };
    let (public, _) = public_routes().split_for_parts();
    let (v1, _) = v1_routes().split_for_parts();
    let v1 = v1.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    let api = Arc::new(openapi());
    let router = public
        .merge(v1)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { axum::Json(api.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(crate::metrics::track_http))
        .layer(middleware::from_fn(call_id))
        .with_state(state);
    (router, recorder)
}

/// How long `serve` lets the requests in flight finish after the stop signal, unless told
/// otherwise.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serve `runtime` on `listener` until `shutdown` completes. Then stop accepting, end the
/// open event streams, refuse new calls on open connections (503 `shutting_down`) and let
/// the requests in flight finish, for at most `grace`: calls still running then are cut
/// (their idempotency claims are taken over by another call once their lease runs out).
/// Last, the records and events of the calls answered are committed (also within `grace`).
pub async fn serve(
    runtime: Runtime,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let token = CancellationToken::new();
    crate::upkeep::spawn(
        runtime.service_store(),
        token.clone(),
        crate::upkeep::Retention::default(),
    );
    let stop = token.clone();
    // When the stop signal came: the grace period runs from then.
    let stopped_at = Arc::new(std::sync::OnceLock::new());
    let stop_time = stopped_at.clone();
    let signal = async move {
        shutdown.await;
        let _ = stop_time.set(tokio::time::Instant::now());
        stop.cancel();
    };
    let (router, recorder) = app(runtime, token.clone());
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .into_future();
    let bound = async {
        token.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = server => result,
        () = bound => {
            tracing::warn!(target: "airlock::serve", ?grace, "requests still in flight after the grace period; stopping without them");
            Ok(())
        }
    };
    // Commit what the answered calls left to write, within what is left of the grace period
    // (at least a second: a stop cut at the deadline still commits what is queued).
    let left = match stopped_at.get() {
        Some(at) => (*at + grace).saturating_duration_since(tokio::time::Instant::now()),
        None => grace,
    };
    if !recorder
        .flush_within(left.max(std::time::Duration::from_secs(1)))
        .await
    {
        tracing::warn!(target: "airlock::serve", "the stop came before every answered call's record and events were stored; the rest are lost");
    }
    result
}

/// A new call id: `call_` and 24 hex digits from the operating system's random source.
fn new_call_id() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness the id is still unique enough to find a call in the logs.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes.copy_from_slice(&nanos.to_be_bytes()[4..]);
    }
    format!("call_{}", hex::encode(bytes))
}

/// Give every request a call id (in its extensions, for handlers and logs) and every answer
/// the `Airlock-Call-Id` header.
async fn call_id(mut request: Request, next: Next) -> Response {
    let id = new_call_id();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    request.extensions_mut().insert(CallId(id.clone()));
    let mut response = next.run(request).await;
    tracing::info!(target: "airlock::serve", call_id = %id, %method, path, status = response.status().as_u16(), "request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CALL_ID, value);
    }
    response
}

/// The id of the call a request is.
#[derive(Debug, Clone)]
pub struct CallId(pub String);

/// `GET /healthz`'s answer.
#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`.
    status: &'static str,
}

/// `GET /readyz`'s answer.
#[derive(Serialize, ToSchema)]
struct Ready {
    /// `ready`.
    status: &'static str,
    /// The database the node uses (a PostgreSQL URL without its password, or a SQLite file).
    database: String,
    /// This node's id.
    node: String,
}

/// Whether the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves", body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Whether the node can answer calls: its database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The database does not answer", body = ApiErrorBody),
    ))]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Ready>, ApiError> {
    state
        .store
        .tenant("")
        .await
        .map_err(|error| ApiError::unavailable(format!("the database does not answer: {error}")))?;
    Ok(axum::Json(Ready {
        status: "ready",
        database: state.runtime.database(),
        node: state.runtime.node_id().to_owned(),
    }))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; the routes are listed in docs/service.md",
        request.method(),
        request.uri().path()
    ))
}

#[cfg(test)]
mod tests {
    /// The committed `docs/openapi.json` is the document the handlers make. After changing
    /// an endpoint, `AIRLOCK_UPDATE_OPENAPI=1 cargo test -p airlock-server openapi` rewrites it.
    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let generated = super::openapi().to_pretty_json().unwrap() + "\n";
        if std::env::var_os("AIRLOCK_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the handlers' document; run `AIRLOCK_UPDATE_OPENAPI=1 cargo test -p airlock-server openapi` and commit it"
        );
    }
}
