//! `airlock serve`: the service over HTTP (axum). This part holds the frame every endpoint
//! shares — the call id on every answer, authentication of `/v1/`, the service's own error
//! bodies, health and readiness — and the adapter listings. The registry's uploads and the
//! contract's operations build on it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `{"status": "ok"}` while the process serves |
//! | `GET /readyz` | 200 `{"status": "ready", "database": …}` when the database answers, else 503 |
//! | `GET /v1/adapters` | the caller's adapters, their versions and the active one |
//! | `GET /v1/adapters/{name}` | one of them, or 404 |

mod adapters;
mod auth;
mod error;

use std::future::Future;
use std::sync::Arc;

use airlock::Runtime;
use airlock::storage::service::ServiceStore;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use crate::Tenants;
pub use auth::Caller;
pub use error::{ApiError, ERROR_SOURCE};

/// The header every answer carries: the id of the call it answers.
pub const CALL_ID: &str = "airlock-call-id";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    runtime: Runtime,
    store: Arc<dyn ServiceStore>,
    tenants: Tenants,
}

/// The service's routes on `runtime` (its database holds the tenants and the registry).
pub fn router(runtime: Runtime) -> Router {
    let store = runtime.service_store();
    let state = AppState {
        tenants: Tenants::new(store.clone()),
        store,
        runtime,
    };
    let v1 = Router::new()
        .route("/v1/adapters", get(adapters::list))
        .route("/v1/adapters/{name}", get(adapters::one))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(v1)
        .fallback(not_found)
        .layer(middleware::from_fn(call_id))
        .with_state(state)
}

/// Serve `runtime` on `listener` until `shutdown` completes; then stop accepting and finish
/// the requests in flight.
pub async fn serve(
    runtime: Runtime,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(runtime))
        .with_graceful_shutdown(shutdown)
        .await
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

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let database = state.runtime.database();
    state
        .store
        .tenant("")
        .await
        .map_err(|error| ApiError::unavailable(format!("the database does not answer: {error}")))?;
    Ok(axum::Json(
        json!({ "status": "ready", "database": database, "node": state.runtime.node_id() }),
    ))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; the routes are listed in docs/service.md",
        request.method(),
        request.uri().path()
    ))
}
