//! A JSON body whose refusals are the service's own: a malformed body is 400 and a body
//! over the limit 413, both with the service's error body (axum's own rejections are
//! plain text).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::ApiError;

/// `axum::Json`, refused in the service's error body.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(format!(
                    "the body is larger than the service accepts ({})",
                    rejection.body_text()
                )),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::bad_request(
                    "send the body as JSON with `Content-Type: application/json`",
                ),
                _ => ApiError::bad_request(format!(
                    "the body is not the JSON asked for: {}",
                    rejection.body_text()
                )),
            }),
        }
    }
}
