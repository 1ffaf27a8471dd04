//! Who is calling: every `/v1/` request carries `Authorization: Bearer alk_…`, a tenant's
//! API key. The tenant it belongs to, and its parsed ceiling, are put in the request's
//! extensions for the handlers ([`Caller`]); anything else is answered 401 before a handler
//! runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock_core::ceiling::Ceiling;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// The tenant a request was authenticated as.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant's name.
    pub tenant: String,
    /// The tenant's ceiling as stored when the request came in (the default ceiling if it
    /// has none): its `quotas` for `Quotas::admit`, the rest for admission. Parsed once per
    /// distinct ceiling text, not per request.
    pub ceiling: Arc<Ceiling>,
}

/// The most ceilings kept parsed. Each tenant has one at a time; a ceiling replaced by
/// `airlock tenant set-ceiling` stays until the cache is full, and then the whole cache is
/// emptied (and refilled by the next requests).
const CACHED_CEILINGS: usize = 4096;

/// Parsed ceilings by the SHA-256 of the tenant's name and the ceiling's text: a request
/// hashes the text (about a microsecond) instead of parsing TOML. The name is part of the
/// key because the parsed ceiling names its tenant (its `origin`, in admission's messages).
#[derive(Debug, Clone, Default)]
pub(crate) struct CeilingCache {
    parsed: Arc<Mutex<HashMap<[u8; 32], Arc<Ceiling>>>>,
}

impl CeilingCache {
    /// `tenant`'s ceiling from its row's text (`None`: the default ceiling). A stored text
    /// that does not parse is 503, never the default: the default would grant what the
    /// operator's ceiling may have meant to withhold, or withhold what it granted.
    pub(crate) fn ceiling(
        &self,
        tenant: &str,
        text: Option<&str>,
    ) -> Result<Arc<Ceiling>, ApiError> {
        let Some(text) = text else {
            static DEFAULT: std::sync::OnceLock<Arc<Ceiling>> = std::sync::OnceLock::new();
            return Ok(DEFAULT.get_or_init(Arc::default).clone());
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(tenant.as_bytes())
            .chain_update([0])
            .chain_update(text.as_bytes())
            .finalize()
            .into();
        let lock = || self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ceiling) = lock().get(&key) {
            return Ok(ceiling.clone());
        }
        let parsed = crate::tenants::parse_ceiling(text, &format!("the ceiling of tenant {tenant}"))
            .map_err(|error| {
                tracing::error!(target: "airlock::serve", tenant, %error, "a stored ceiling does not parse");
                ApiError::unavailable(format!(
                    "the stored ceiling of tenant {tenant} does not parse, so its calls are refused until the operator fixes it with `airlock tenant set-ceiling {tenant} FILE`: {error}"
                ))
            })?;
        let parsed = Arc::new(parsed);
        let mut cache = lock();
        if cache.len() >= CACHED_CEILINGS {
            cache.clear();
        }
        cache.insert(key, parsed.clone());
        Ok(parsed)
    }
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
    let ceiling = state
        .ceilings
        .ceiling(&tenant.name, tenant.ceiling.as_deref())?;
    request.extensions_mut().insert(Caller {
        tenant: tenant.name,
        ceiling,
    });
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_parsed_once_per_text_and_a_broken_one_is_503() {
        let cache = CeilingCache::default();
        let default = cache.ceiling("acme", None).unwrap();
        assert_eq!(*default, Ceiling::default());

        let text = "[quotas]\nconcurrent_calls = 4\n";
        let first = cache.ceiling("acme", Some(text)).unwrap();
        assert_eq!(first.quotas.concurrent_calls, 4);
        assert_eq!(first.origin.as_deref(), Some("the ceiling of tenant acme"));
        let again = cache.ceiling("acme", Some(text)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second request reuses the parse"
        );
        let other = cache.ceiling("globex", Some(text)).unwrap();
        assert_eq!(
            other.origin.as_deref(),
            Some("the ceiling of tenant globex")
        );
        let changed = cache
            .ceiling("acme", Some("[quotas]\nconcurrent_calls = 2\n"))
            .unwrap();
        assert_eq!(
            changed.quotas.concurrent_calls, 2,
            "a new text is parsed anew"
        );

        let error = cache
            .ceiling("acme", Some("[quotas]\nconcurrent_calls = \"many\"\n"))
            .unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (503, "unavailable"));
        assert!(
            error.message.starts_with("the stored ceiling of tenant acme does not parse, so its calls are refused until the operator fixes it with `airlock tenant set-ceiling acme FILE`: "),
            "{}",
            error.message
        );
    }
}

#[cfg(test)]
mod served {
    #[tokio::test]
    async fn a_stored_ceiling_that_does_not_parse_is_503_not_the_default() {
        let (url, key, _dir) =
            crate::metrics::tests::serve("broken-ceiling", Some("[quotas]\nwhat = 1\n")).await;
        let answer = reqwest::Client::new()
            .get(format!("{url}/v1/adapters"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["airlock-error-source"], "airlock");
        let body: serde_json::Value =
            serde_json::from_str(&answer.text().await.unwrap()).unwrap_or_default();
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("the stored ceiling of tenant broken-ceiling does not parse"),
            "{body}"
        );
    }
}
