//! The operator's administration of tenants, shared by the `airlock tenant` commands and
//! the service: create a tenant (its key shown once), list them, rotate a key, set a
//! ceiling, and tell which tenant a presented key belongs to.

use std::sync::Arc;

use airlock::storage::service::{ServiceStore, Tenant};
use airlock::storage::{DEFAULT_TENANT, StorageError};
use airlock_core::PolicyError;
use airlock_core::ceiling::Ceiling;

use crate::apikey::{self, ApiKey};

/// What a tenant operation could not do.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The name is not a tenant name.
    #[error("tenant name {name:?} {why}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A tenant of that name exists.
    #[error("tenant {0:?} exists already; `airlock tenant rotate-key {0}` makes it a new key")]
    Exists(String),
    /// No tenant of that name.
    #[error("no tenant {0:?}; `airlock tenant list` shows the tenants")]
    Unknown(String),
    /// The ceiling does not parse or is not valid.
    #[error(transparent)]
    Ceiling(#[from] PolicyError),
    /// The storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The operating system gave no random bytes for a key.
    #[error("cannot make an API key: the system's random source failed: {0}")]
    Random(getrandom::Error),
}

/// Tenant names: 1–63 of `a-z`, `0-9` and `-`, starting with a letter or digit and not
/// ending in `-` (they appear in URLs, logs and metrics labels unescaped). `default` is the
/// CLI's and the library's own tenant and cannot be given out.
pub fn validate_name(name: &str) -> Result<(), TenantError> {
    let bad = |why: &str| {
        Err(TenantError::BadName {
            name: name.to_owned(),
            why: why.to_owned(),
        })
    };
    if name.is_empty() || name.len() > 63 {
        return bad("must be 1 to 63 characters long");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return bad(&format!(
            "has {c:?}: use lowercase letters, digits and '-' only"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("must not start or end with '-'");
    }
    if name == DEFAULT_TENANT {
        return bad("is reserved for the rows of the CLI and the library; choose another");
    }
    Ok(())
}

/// Check a ceiling's TOML text; `origin` names it in messages (its file).
pub fn parse_ceiling(text: &str, origin: &str) -> Result<Ceiling, TenantError> {
    Ok(Ceiling::from_toml(text, origin)?)
}

/// Tenants on a service store.
#[derive(Clone)]
pub struct Tenants {
    store: Arc<dyn ServiceStore>,
}

impl Tenants {
    /// Tenants kept in `store` (see `airlock::Runtime::service_store`).
    pub fn new(store: Arc<dyn ServiceStore>) -> Tenants {
        Tenants { store }
    }

    /// Create `name` with `ceiling` (TOML text and its origin; `None`: the default
    /// ceiling). The key is returned once; only its hash is stored.
    pub async fn create(
        &self,
        name: &str,
        ceiling: Option<(&str, &str)>,
    ) -> Result<ApiKey, TenantError> {
        validate_name(name)?;
        if let Some((text, origin)) = ceiling {
            parse_ceiling(text, origin)?;
        }
        let key = ApiKey::generate().map_err(TenantError::Random)?;
        let text = ceiling.map(|(text, _)| text);
        if !self.store.tenant_create(name, &key.sha256(), text).await? {
            return Err(TenantError::Exists(name.to_owned()));
        }
        Ok(key)
    }

    /// Every tenant, by name.
    pub async fn list(&self) -> Result<Vec<Tenant>, TenantError> {
        Ok(self.store.tenants().await?)
    }

    /// Give `name` a new key; the old one stops working at once.
    pub async fn rotate_key(&self, name: &str) -> Result<ApiKey, TenantError> {
        let key = ApiKey::generate().map_err(TenantError::Random)?;
        if !self.store.tenant_set_key(name, &key.sha256()).await? {
            return Err(TenantError::Unknown(name.to_owned()));
        }
        Ok(key)
    }

    /// Replace `name`'s ceiling (TOML text and its origin; `None`: the default). Versions
    /// already admitted stay; the new ceiling applies to the next upload.
    pub async fn set_ceiling(
        &self,
        name: &str,
        ceiling: Option<(&str, &str)>,
    ) -> Result<(), TenantError> {
        if let Some((text, origin)) = ceiling {
            parse_ceiling(text, origin)?;
        }
        let text = ceiling.map(|(text, _)| text);
        if !self.store.tenant_set_ceiling(name, text).await? {
            return Err(TenantError::Unknown(name.to_owned()));
        }
        Ok(())
    }

    /// The tenant `presented` is the key of, if any: a malformed key is refused without a
    /// lookup; a found hash is compared again in constant time before it is trusted.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Tenant>, TenantError> {
        if !apikey::well_formed(presented) {
            return Ok(None);
        }
        let computed = apikey::key_sha256(presented);
        Ok(match self.store.tenant_by_key(&computed).await? {
            Some((tenant, stored)) if apikey::hashes_match(&stored, &computed) => Some(tenant),
            _ => None,
        })
    }

    /// One tenant's ceiling, parsed (the default if it has none); `None` for no such
    /// tenant.
    pub async fn ceiling(&self, name: &str) -> Result<Option<Ceiling>, TenantError> {
        let Some(tenant) = self.store.tenant(name).await? else {
            return Ok(None);
        };
        Ok(Some(match tenant.ceiling {
            Some(text) => parse_ceiling(&text, &format!("the ceiling of tenant {name}"))?,
            None => Ceiling::default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_a_reason() {
        for good in ["acme", "team-7", "a", &"x".repeat(63)] {
            validate_name(good).unwrap();
        }
        for (bad, says) in [
            ("", "1 to 63"),
            (&"x".repeat(64), "1 to 63"),
            ("Acme", "'A'"),
            ("a_b", "'_'"),
            ("a b", "' '"),
            ("-a", "start or end"),
            ("a-", "start or end"),
            ("default", "reserved"),
        ] {
            let error = validate_name(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
