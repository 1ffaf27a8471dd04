//! The registry's uploads: publish a version (with [admission](crate::admission)) and
//! choose the active one. Only the caller's own adapters: another tenant's adapter of the
//! same name is another adapter, and answers 404 to everything but an upload (which makes
//! the caller an adapter of its own).
//!
//! | route | answer |
//! |---|---|
//! | `PUT /v1/adapters/{name}/versions/{version}` | 201 admitted (or flagged under a `warn` ceiling), 200 the same bytes again, 409 other bytes, 422 refused, 413 too large, 429 over the stored-bytes quota |
//! | `POST /v1/adapters/{name}/active` | 200 the adapter; 404 no such version; 409 a version that failed admission under a `refuse` ceiling |

use axum::Json;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Extension, Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::{UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::adapters::{AdapterView, VersionView};
use super::{ApiError, ApiErrorBody, ApiErrorDetail, AppState, Caller, ERROR_SOURCE};
use crate::admission::{self, MAX_COMPONENT_BYTES, Upload, Verdict};
use airlock::storage::service::{NewVersion, PutVersion, VersionInfo};
use airlock_core::ceiling::{Admission, Ceiling};

/// The most a `policy`, `config` or `params` part may be: 1 MiB each.
pub(super) const MAX_TEXT_PART_BYTES: usize = 1024 * 1024;

/// The most a `recording` part may be: 16 MiB.
pub(super) const MAX_RECORDING_BYTES: usize = 16 * 1024 * 1024;

/// The request body limit of an upload: every part at its largest, and 1 MiB for the
/// multipart framing. Other routes keep axum's default (2 MB).
pub(super) const UPLOAD_BODY_LIMIT: usize =
    MAX_COMPONENT_BYTES + MAX_RECORDING_BYTES + 3 * MAX_TEXT_PART_BYTES + 1024 * 1024;

/// The upload route with its own body limit.
pub(super) fn upload_route() -> UtoipaMethodRouter<super::AppState> {
    routes!(upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT))
}

/// An upload's parts (`multipart/form-data`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadForm {
    /// The component (`.wasm`), at most 32 MiB.
    #[schema(value_type = String, format = Binary)]
    component: Vec<u8>,
    /// The policy (TOML).
    policy: String,
    /// An `airlock check --record` file: the conformance check replays it instead of
    /// running against the built-in stand-in, and judges every rule.
    #[schema(value_type = Option<String>, format = Binary)]
    recording: Option<String>,
    /// A config the adapter accepts (JSON), for the conformance check; absent: `{}`.
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    /// Create params (JSON) for the conformance check; absent: `{"name": "airlock-check"}`.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
}

/// A refused upload: the service's error body, with the admission report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdmissionRefusal {
    /// `admission_failed`, and the failing checks and rules in a message.
    error: ApiErrorDetail,
    /// The admission report: each check and rule, its outcome and evidence.
    #[schema(value_type = Object)]
    admission: Value,
}

impl IntoResponse for AdmissionRefusal {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::UNPROCESSABLE_ENTITY, Json(self)).into_response();
        response
            .headers_mut()
            .insert(ERROR_SOURCE, HeaderValue::from_static("airlock"));
        response
    }
}

/// What an upload can answer besides a version.
pub(super) enum UploadError {
    Api(ApiError),
    Refused(AdmissionRefusal),
}

impl From<ApiError> for UploadError {
    fn from(error: ApiError) -> UploadError {
        UploadError::Api(error)
    }
}

impl From<airlock::storage::StorageError> for UploadError {
    fn from(error: airlock::storage::StorageError) -> UploadError {
        UploadError::Api(error.into())
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        match self {
            UploadError::Api(error) => error.into_response(),
            UploadError::Refused(refusal) => refusal.into_response(),
        }
    }
}

/// `POST /v1/adapters/{name}/active`'s body.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Activate {
    /// The version calls should run.
    version: String,
}

/// Publish a version: upload it, admission judges it, and an admitted (or, under a `warn`
/// ceiling, flagged) version is stored. Versions are immutable and content-addressed:
/// the same component and policy again answers 200 with the stored version; other bytes
/// under a stored version, 409.
#[utoipa::path(put, path = "/v1/adapters/{name}/versions/{version}", tag = "registry",
    params(
        ("name" = String, Path, description = "The adapter's name: 1 to 64 of a-z, 0-9, '-', '_', starting with a letter or digit"),
        ("version" = String, Path, description = "The version's label: 1 to 64 of A-Z, a-z, 0-9, '.', '_', '+', '-'"),
    ),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored: admitted, or flagged (`admitted: false`) under a ceiling with `admission = \"warn\"`; with the admission report", body = VersionView),
        (status = 200, description = "This version holds these bytes and this policy already; nothing changed", body = VersionView),
        (status = 400, description = "A bad name or version, a missing or unknown part, JSON that does not parse", body = ApiErrorBody),
        (status = 409, description = "The version is stored with another component or policy", body = ApiErrorBody),
        (status = 413, description = "The component is over 32 MiB (or another part over its bound)", body = ApiErrorBody),
        (status = 422, description = "Admission refused it; nothing was stored", body = AdmissionRefusal),
        (status = 429, description = "Storing it would exceed the tenant's stored-bytes quota", body = ApiErrorBody),
    ))]
pub(super) async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<VersionView>), UploadError> {
    airlock_core::policy::validate_name(&name).map_err(ApiError::bad_request)?;
    admission::validate_version(&version).map_err(ApiError::bad_request)?;
    let multipart = multipart.map_err(|rejection| {
        ApiError::bad_request(format!(
            "an upload is multipart/form-data with the parts `component` and `policy`: {rejection}"
        ))
    })?;
    let upload = read_upload(multipart, &name, &version).await?;
    let sha256 = hex::encode(Sha256::digest(&upload.component));
    let tenant = caller.tenant.as_str();

    if let Some(stored) = stored_version(&state, tenant, &name, &version).await? {
        return same_or_conflict(stored, &sha256, &upload.policy);
    }
    let ceiling = state
        .tenants
        .ceiling(tenant)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::unauthorized(format!("tenant {tenant:?} no longer exists")))?;
    // Checked before admission (which may take seconds) and again before storing.
    within_quota(&state, tenant, &ceiling, upload.component.len()).await?;

    let report = admission::admit(&state.runtime, &ceiling, &upload)
        .await
        .map_err(|error| ApiError::unavailable(error.to_string()))?;
    let json = serde_json::to_value(&report)
        .map_err(|e| ApiError::internal(format!("the admission report: {e}")))?;
    if report.verdict == Verdict::Refused {
        for failure in &report.failures {
            crate::metrics::record_admission_refusal(&failure.rule);
        }
        let error = ApiError::admission_failed(format!(
            "{name} {version} was not admitted, and nothing was stored: {}",
            report.failure_lines().join("; ")
        ));
        return Err(UploadError::Refused(AdmissionRefusal {
            error: ApiErrorDetail {
                code: error.code.to_owned(),
                message: error.message,
            },
            admission: json,
        }));
    }

    within_quota(&state, tenant, &ceiling, upload.component.len()).await?;
    let stored_policy = upload.policy.clone();
    let put = state
        .store
        .version_put(&NewVersion {
            tenant: tenant.to_owned(),
            adapter: name.clone(),
            version: version.clone(),
            sha256: sha256.clone(),
            component: upload.component,
            policy: upload.policy,
            recording: upload.recording,
            admission: json.to_string(),
            admitted: report.admitted,
        })
        .await?;
    let stored = stored_version(&state, tenant, &name, &version)
        .await?
        .ok_or_else(|| ApiError::internal(format!("{name} {version} vanished once stored")))?;
    match put {
        PutVersion::Created => Ok((StatusCode::CREATED, Json(VersionView::new(&stored, true)))),
        // Another upload of the same version won the race.
        PutVersion::Same | PutVersion::Conflict { .. } => {
            same_or_conflict(stored, &sha256, &stored_policy)
        }
    }
}

/// Choose the version calls run. A version that failed admission (stored under a `warn`
/// ceiling) may be activated only while the tenant's ceiling still says `warn`.
#[utoipa::path(post, path = "/v1/adapters/{name}/active", tag = "registry",
    params(("name" = String, Path, description = "The adapter's name")),
    request_body(content = Activate, content_type = "application/json"),
    responses(
        (status = 200, description = "The adapter, with its new active version", body = AdapterView),
        (status = 400, description = "The body is not `{\"version\": …}`", body = ApiErrorBody),
        (status = 404, description = "The caller has no such adapter or version", body = ApiErrorBody),
        (status = 409, description = "The version failed admission and the tenant's ceiling refuses such versions", body = ApiErrorBody),
    ))]
pub(super) async fn activate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<Activate>, JsonRejection>,
) -> Result<Json<AdapterView>, ApiError> {
    let Json(Activate { version }) = body.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the body is `{{\"version\": \"…\"}}`: {}",
            rejection.body_text()
        ))
    })?;
    let tenant = caller.tenant.as_str();
    let Some(stored) = stored_version(&state, tenant, &name, &version).await? else {
        return Err(ApiError::not_found(format!(
            "no version {version:?} of adapter {name:?}"
        )));
    };
    if !stored.admitted {
        let ceiling =
            state.tenants.ceiling(tenant).await?.ok_or_else(|| {
                ApiError::unauthorized(format!("tenant {tenant:?} no longer exists"))
            })?;
        if ceiling.admission != Admission::Warn {
            return Err(ApiError::conflict(format!(
                "{name} {version} failed admission (its report is in GET /v1/adapters/{name}); only a tenant whose ceiling sets admission = \"warn\" may activate such a version, and this tenant's refuses: publish a version that passes"
            )));
        }
    }
    if !state.store.set_active(tenant, &name, &version).await? {
        return Err(ApiError::not_found(format!(
            "no version {version:?} of adapter {name:?}"
        )));
    }
    match state.store.adapter(tenant, &name).await? {
        Some(entry) => Ok(Json(AdapterView::new(&entry, false))),
        None => Err(ApiError::not_found(format!("no adapter {name:?}"))),
    }
}

/// The caller's stored `version` of `name`, if any.
async fn stored_version(
    state: &AppState,
    tenant: &str,
    name: &str,
    version: &str,
) -> Result<Option<VersionInfo>, ApiError> {
    Ok(state
        .store
        .adapter(tenant, name)
        .await?
        .and_then(|entry| entry.versions.into_iter().find(|v| v.version == version)))
}

/// 200 with `stored` if it holds `sha256` and `policy`; else 409. A version is its
/// component *and* its policy: the same bytes under another policy are another version.
fn same_or_conflict(
    stored: VersionInfo,
    sha256: &str,
    policy: &str,
) -> Result<(StatusCode, Json<VersionView>), UploadError> {
    if stored.sha256 != sha256 {
        return Err(ApiError::conflict(format!(
            "{} {} is stored with another component (sha256 {}; this one is {sha256}); versions are immutable: publish a new version",
            stored.adapter, stored.version, stored.sha256
        ))
        .into());
    }
    if stored.policy != policy {
        return Err(ApiError::conflict(format!(
            "{} {} is stored with this component but another policy; versions are immutable: publish a new version",
            stored.adapter, stored.version
        ))
        .into());
    }
    Ok((StatusCode::OK, Json(VersionView::new(&stored, true))))
}

/// 429 if storing `size` more bytes would put `tenant` over its stored-bytes quota.
async fn within_quota(
    state: &AppState,
    tenant: &str,
    ceiling: &Ceiling,
    size: usize,
) -> Result<(), ApiError> {
    let stored = state.store.stored_bytes(tenant).await?;
    let quota = ceiling.quotas.stored_bytes;
    if stored.saturating_add(size as u64) > quota {
        return Err(ApiError::quota_exceeded(format!(
            "storing this component ({size} bytes) would put the tenant at {} bytes, over its stored-bytes quota of {quota} ({stored} stored); the operator sets `[quotas] stored_bytes` in the tenant's ceiling",
            stored.saturating_add(size as u64)
        )));
    }
    Ok(())
}

/// Read the parts of an upload, each within its bound.
async fn read_upload(
    mut multipart: Multipart,
    name: &str,
    version: &str,
) -> Result<Upload, ApiError> {
    let mut upload = Upload {
        adapter: name.to_owned(),
        version: version.to_owned(),
        component: Vec::new(),
        policy: String::new(),
        recording: None,
        config: None,
        params: None,
    };
    match read_parts(&mut multipart, &mut upload).await {
        Err(error) if error.status == StatusCode::PAYLOAD_TOO_LARGE => {
            // Read the rest (the body limit bounds it), so that the client, still sending,
            // gets the 413 rather than a connection reset.
            while let Ok(Some(mut field)) = multipart.next_field().await {
                while let Ok(Some(_)) = field.chunk().await {}
            }
            Err(error)
        }
        other => other.map(|()| upload),
    }
}

/// Read every part into `upload`; 400 without `component` or `policy`.
async fn read_parts(multipart: &mut Multipart, upload: &mut Upload) -> Result<(), ApiError> {
    let (mut component, mut policy) = (false, false);
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let part = field.name().unwrap_or_default().to_owned();
        match part.as_str() {
            "component" => {
                upload.component = read_part(field, &part, MAX_COMPONENT_BYTES).await?;
                component = true;
            }
            "policy" => {
                upload.policy = text(read_part(field, &part, MAX_TEXT_PART_BYTES).await?, &part)?;
                policy = true;
            }
            "recording" => {
                let recording = text(read_part(field, &part, MAX_RECORDING_BYTES).await?, &part)?;
                upload.recording = Some(recording);
            }
            "config" | "params" => {
                let bytes = read_part(field, &part, MAX_TEXT_PART_BYTES).await?;
                let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::bad_request(format!("the `{part}` part is not JSON: {e}"))
                })?;
                if part == "config" {
                    upload.config = Some(value);
                } else {
                    upload.params = Some(value);
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown part {other:?}: an upload has `component`, `policy` and optionally `recording`, `config`, `params`"
                )));
            }
        }
    }
    if !component || !policy {
        return Err(ApiError::bad_request(
            "an upload needs the parts `component` (the .wasm) and `policy` (TOML; may be empty)",
        ));
    }
    Ok(())
}

/// A part's bytes; 413 if they pass `most` (kept no further than that).
async fn read_part(mut field: Field<'_>, part: &str, most: usize) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        size = size.saturating_add(chunk.len());
        if size <= most {
            bytes.extend_from_slice(&chunk);
        }
    }
    if size > most {
        return Err(ApiError::payload_too_large(format!(
            "the `{part}` part is {size} bytes, over the {most} the registry accepts"
        )));
    }
    Ok(bytes)
}

fn text(bytes: Vec<u8>, part: &str) -> Result<String, ApiError> {
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("the `{part}` part is not UTF-8 text")))
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(format!(
            "the upload is over {UPLOAD_BODY_LIMIT} bytes, the most the registry accepts"
        ))
    } else {
        ApiError::bad_request(format!(
            "the multipart body is malformed: {}",
            error.body_text()
        ))
    }
}
