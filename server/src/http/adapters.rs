//! The registry's listings: a tenant's adapters, their versions and the active one. Only
//! the caller's own: another tenant's adapter answers 404, as one that does not exist.

use airlock::storage::service::{AdapterEntry, VersionInfo};
use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, ApiErrorBody, AppState, Caller};

/// A stored version of an adapter.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VersionView {
    /// The version's label.
    version: String,
    /// SHA-256 of the component, hex.
    sha256: String,
    /// The component's size, bytes.
    size: u64,
    /// Whether admission passed (a tenant whose ceiling sets admission to `warn` may store
    /// versions that failed it).
    admitted: bool,
    /// Whether a recording was uploaded with it.
    has_recording: bool,
    /// When it was stored, unix milliseconds.
    created_ms: i64,
    /// The admission report (only in `GET /v1/adapters/{name}`): each rule, its outcome and
    /// evidence, and the optional interfaces the component exports.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    admission: Option<Value>,
    /// The policy's TOML text (only in `GET /v1/adapters/{name}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
}

/// An adapter of the caller's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdapterView {
    /// The adapter's name.
    name: String,
    /// The version calls run, if one was chosen.
    active: Option<String>,
    /// Its versions, oldest first.
    versions: Vec<VersionView>,
}

/// `GET /v1/adapters`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdapterList {
    /// The caller's adapters, by name.
    adapters: Vec<AdapterView>,
}

impl VersionView {
    pub(crate) fn new(v: &VersionInfo, detail: bool) -> VersionView {
        VersionView {
            version: v.version.clone(),
            sha256: v.sha256.clone(),
            size: v.size,
            admitted: v.admitted,
            has_recording: v.has_recording,
            created_ms: v.created_ms,
            admission: detail.then(|| serde_json::from_str(&v.admission).unwrap_or(Value::Null)),
            policy: detail.then(|| v.policy.clone()),
        }
    }
}

impl AdapterView {
    pub(super) fn new(entry: &AdapterEntry, detail: bool) -> AdapterView {
        AdapterView {
            name: entry.adapter.clone(),
            active: entry.active.clone(),
            versions: entry
                .versions
                .iter()
                .map(|v| VersionView::new(v, detail))
                .collect(),
        }
    }
}

/// The caller's adapters, their versions and the active one.
#[utoipa::path(get, path = "/v1/adapters", tag = "registry",
    responses(
        (status = 200, description = "The caller's adapters", body = AdapterList),
        (status = 401, description = "No valid API key", body = ApiErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<AdapterList>, ApiError> {
    let adapters = state.store.adapters(&caller.tenant).await?;
    Ok(Json(AdapterList {
        adapters: adapters
            .iter()
            .map(|a| AdapterView::new(a, false))
            .collect(),
    }))
}

/// One adapter of the caller's, with each version's admission report and policy.
#[utoipa::path(get, path = "/v1/adapters/{name}", tag = "registry",
    params(("name" = String, Path, description = "The adapter's name")),
    responses(
        (status = 200, description = "The adapter", body = AdapterView),
        (status = 404, description = "The caller has no adapter of that name", body = ApiErrorBody),
    ))]
pub(super) async fn one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<AdapterView>, ApiError> {
    match state.store.adapter(&caller.tenant, &name).await? {
        Some(entry) => Ok(Json(AdapterView::new(&entry, true))),
        None => Err(ApiError::not_found(format!("no adapter {name:?}"))),
    }
}
