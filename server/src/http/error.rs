//! How the service answers a refusal of its own, and how it answers an adapter's error.
//!
//! The two differ in body and in the `Airlock-Error-Source` header, so a client never
//! takes one for the other:
//!
//! | source | header | body |
//! |---|---|---|
//! | the service (bad key, unknown adapter, body too large, quota, …) | `Airlock-Error-Source: airlock` | `{"error": {"code", "message"}}` ([`ApiError`]) |
//! | the adapter's call (the guest's error, or a limit, trap or broken contract of the call) | `Airlock-Error-Source: adapter` | the seed's `AdapterError` `{"errorCode", "message", "raw"}` ([`AdapterFailure`]) |

use airlock::{AdapterError, ErrorCode, ErrorOrigin};
use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The header that says who refused: `airlock` (the service) or `adapter` (the guest).
pub const ERROR_SOURCE: &str = "airlock-error-source";

/// The header that says, for an adapter's error, what produced it: `guest` (the adapter
/// returned it), `host` (the runtime refused the call), `limit` (a limit stopped it),
/// `trap` (the guest trapped) or `contract` (its output broke the contract).
pub const ERROR_ORIGIN: &str = "airlock-error-origin";

/// A refusal by the service: an HTTP status, a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`unauthorized`, `not_found`, `unavailable`, …).
    pub code: &'static str,
    /// What went wrong, and what to do about it.
    pub message: String,
}

/// The body of a refusal by the service.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// The refusal.
    pub error: ApiErrorDetail,
}

/// A refusal: its stable code and what to do about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorDetail {
    /// `unauthorized`, `not_found`, `bad_request`, `conflict`, `admission_failed`,
    /// `payload_too_large`, `quota_exceeded`, `unavailable`, `shutting_down`, `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: no key, or not a key of any tenant.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404: nothing of that name for this tenant (also when another tenant has one, so
    /// names do not leak).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400: the request is malformed (a body that is not the JSON asked for, a bad name).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 409: the request conflicts with what is stored (a version with other bytes).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422: an uploaded version failed admission (the answer carries the report).
    pub fn admission_failed(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "admission_failed",
            message,
        )
    }

    /// 413: the body is larger than the service accepts.
    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429: a quota of the tenant's is used up.
    pub fn quota_exceeded(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
    }

    /// 503: the service cannot answer now (its database is unreachable).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 503: the service is stopping and takes no new calls.
    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service is stopping and takes no new calls; retry on another node or after it restarts",
        )
    }

    /// 500: the service failed in a way the caller cannot fix.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody {
            error: ApiErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(ERROR_SOURCE, HeaderValue::from_static("airlock"));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"airlock\""),
            );
        }
        if self.code == "quota_exceeded" || self.code == "shutting_down" {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<airlock::storage::StorageError> for ApiError {
    fn from(error: airlock::storage::StorageError) -> ApiError {
        tracing::warn!(target: "airlock::serve", %error, "storage failed");
        ApiError::unavailable(format!("the service's storage failed: {error}"))
    }
}

impl From<crate::TenantError> for ApiError {
    fn from(error: crate::TenantError) -> ApiError {
        use crate::TenantError;
        match error {
            TenantError::Storage(error) => error.into(),
            TenantError::Unknown(_) => ApiError::not_found(error.to_string()),
            TenantError::Exists(_) => ApiError::conflict(error.to_string()),
            TenantError::BadName { .. } | TenantError::Ceiling(_) => {
                ApiError::bad_request(error.to_string())
            }
            TenantError::Random(_) => ApiError::internal(error.to_string()),
        }
    }
}

/// An adapter's call that ended in the seed's `AdapterError`: answered with the error as
/// the body, an HTTP status by its code ([`adapter_status`]) and `Airlock-Error-Source:
/// adapter`.
#[derive(Debug, Clone)]
pub struct AdapterFailure(pub AdapterError);

/// The HTTP status of an adapter's error code.
///
/// | code | status | why |
/// |---|---|---|
/// | `VALIDATION` | 422 | the request's config or params are wrong; fix them |
/// | `RETRYABLE` | 503, `Retry-After` | a transient failure; the same request may succeed later |
/// | `LIMIT` | 429, `Retry-After` | a quota or rate limit (the provider's, or the call's own limits) |
/// | `PERMANENT` | 409 | the request cannot succeed against the resource as it is |
/// | `AUTH` | 502 | the provider refused the adapter's credentials: the caller's own key is fine |
/// | `INTERNAL` | 500 | the adapter failed (a bug, a trap, a broken contract) |
pub fn adapter_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Validation => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Retryable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Limit => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Permanent => StatusCode::CONFLICT,
        ErrorCode::Auth => StatusCode::BAD_GATEWAY,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The seconds a client should wait before retrying an adapter's `RETRYABLE` or `LIMIT`
/// error: the provider's `Retry-After` as the runtime recorded it in `raw.retryAfter`
/// (seconds, at most an hour), else 1.
fn retry_after_seconds(error: &AdapterError) -> u64 {
    let value = error.raw.as_ref().and_then(|raw| raw.get("retryAfter"));
    value
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
        .map(|seconds| seconds.clamp(1, 3600))
        .unwrap_or(1)
}

/// What produced an adapter's error, for the `Airlock-Error-Origin` header.
fn origin_name(origin: &ErrorOrigin) -> &'static str {
    match origin {
        ErrorOrigin::Adapter => "guest",
        ErrorOrigin::Host => "host",
        ErrorOrigin::Limit(_) => "limit",
        ErrorOrigin::Trap => "trap",
        ErrorOrigin::Contract => "contract",
    }
}

impl IntoResponse for AdapterFailure {
    fn into_response(self) -> Response {
        let error = self.0;
        let status = adapter_status(error.error_code);
        let retry = matches!(error.error_code, ErrorCode::Retryable | ErrorCode::Limit)
            .then(|| retry_after_seconds(&error));
        let origin = origin_name(&error.origin);
        let mut response = (status, Json(error)).into_response();
        let headers = response.headers_mut();
        headers.insert(ERROR_SOURCE, HeaderValue::from_static("adapter"));
        headers.insert(ERROR_ORIGIN, HeaderValue::from_static(origin));
        if let Some(seconds) = retry {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
