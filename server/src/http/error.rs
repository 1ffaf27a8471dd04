//! How the service answers a refusal of its own. Its body and its `Airlock-Error-Source:
//! airlock` header differ from an adapter's error (the seed's `AdapterError`, with
//! `Airlock-Error-Source: adapter`), so a client never takes one for the other.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The header that says who refused: `airlock` (the service) or `adapter` (the guest).
pub const ERROR_SOURCE: &str = "airlock-error-source";

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

impl ApiError {
    /// 401: no key, or not a key of any tenant.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
        }
    }

    /// 404: nothing of that name for this tenant (also when another tenant has one, so
    /// names do not leak).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    /// 503: the service cannot answer now (its database is unreachable).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
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
        response
    }
}

impl From<crate::TenantError> for ApiError {
    fn from(error: crate::TenantError) -> ApiError {
        tracing::warn!(target: "airlock::serve", %error, "storage failed");
        ApiError::unavailable(format!("the service's storage failed: {error}"))
    }
}
