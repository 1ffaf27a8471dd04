//! The registry's listings: a tenant's adapters, their versions and the active one. Only
//! the caller's own: another tenant's adapter answers 404, as one that does not exist.

use airlock::storage::service::{AdapterEntry, VersionInfo};
use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller};

fn version_json(v: &VersionInfo) -> Value {
    json!({
        "version": v.version,
        "sha256": v.sha256,
        "size": v.size,
        "admitted": v.admitted,
        "hasRecording": v.has_recording,
        "createdMs": v.created_ms,
    })
}

fn entry_json(entry: &AdapterEntry) -> Value {
    json!({
        "name": entry.adapter,
        "active": entry.active,
        "versions": entry.versions.iter().map(version_json).collect::<Vec<_>>(),
    })
}

fn storage_failed(error: airlock::storage::StorageError) -> ApiError {
    ApiError::from(crate::TenantError::Storage(error))
}

/// `GET /v1/adapters`
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let adapters = state
        .store
        .adapters(&caller.tenant)
        .await
        .map_err(storage_failed)?;
    Ok(Json(json!({
        "adapters": adapters.iter().map(entry_json).collect::<Vec<_>>()
    })))
}

/// `GET /v1/adapters/{name}`
pub(super) async fn one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state
        .store
        .adapter(&caller.tenant, &name)
        .await
        .map_err(storage_failed)?
    {
        Some(entry) => Ok(Json(entry_json(&entry))),
        None => Err(ApiError::not_found(format!("no adapter {name:?}"))),
    }
}
