//! Who is calling: every `/v1/` request carries `Authorization: Bearer alk_…`, a tenant's
//! API key. The tenant it belongs to is put in the request's extensions for the handlers
//! ([`Caller`]); anything else is answered 401 before a handler runs.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};

/// The tenant a request was authenticated as.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant's name.
    pub tenant: String,
}

/// The authentication middleware of the `/v1/` routes.
pub(super) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("no API key: send `Authorization: Bearer alk_…`"))?;
    let key = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer alk_…`"))?;
    let tenant = state
        .tenants
        .authenticate(key.trim())
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "this API key is not a tenant's (it may have been rotated; `airlock tenant rotate-key` makes a new one)",
            )
        })?;
    request.extensions_mut().insert(Caller {
        tenant: tenant.name,
    });
    Ok(next.run(request).await)
}
