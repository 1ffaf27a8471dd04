//! The `state` capability: a key-value store private to one adapter of one tenant, in the
//! runtime's storage. Keys are scoped by tenant and the adapter's name, so two adapters (or
//! two tenants of one adapter) never see each other's keys. Bounded per the policy: key and value size, live keys per adapter, and
//! operations per call.

use std::time::Duration;

use crate::bindings::airlock::adapter::state::{Host, StateError};
use std::sync::Arc;

use crate::policy::Limits;
use crate::storage::{Scope, Storage, StorageError};

/// One call's view of its adapter's state.
pub(crate) struct StateScope {
    storage: Arc<dyn Storage>,
    scope: Scope,
    max_key_bytes: usize,
    max_value_bytes: u64,
    max_keys: u64,
    max_ops: u32,
    pub(crate) ops: u32,
    /// Of those, the ones that write (set, insert-new, delete).
    pub(crate) writes: u32,
}

impl StateScope {
    pub(crate) fn new(storage: Arc<dyn Storage>, scope: Scope, limits: &Limits) -> Self {
        StateScope {
            storage,
            scope,
            max_key_bytes: limits.state_key_bytes as usize,
            max_value_bytes: limits.state_value_bytes,
            max_keys: limits.state_keys,
            max_ops: limits.state_ops_per_call,
            ops: 0,
            writes: 0,
        }
    }

    /// Count one writing operation and check the key.
    fn admit_write(&mut self, key: &str) -> Result<(), StateError> {
        self.admit(key)?;
        self.writes += 1;
        Ok(())
    }

    /// Count one operation and check the key.
    fn admit(&mut self, key: &str) -> Result<(), StateError> {
        if self.ops >= self.max_ops {
            return Err(StateError::QuotaExceeded(format!(
                "more than {} state operations in one call (limits.state_ops_per_call)",
                self.max_ops
            )));
        }
        self.ops += 1;
        if key.is_empty() {
            return Err(StateError::InvalidKey("the key is empty".into()));
        }
        if key.len() > self.max_key_bytes {
            return Err(StateError::InvalidKey(format!(
                "the key is {} bytes; the limit is {} (limits.state_key_bytes)",
                key.len(),
                self.max_key_bytes
            )));
        }
        if key.chars().any(char::is_control) {
            return Err(StateError::InvalidKey(
                "the key contains control characters".into(),
            ));
        }
        Ok(())
    }

    fn admit_value(&self, value: &[u8]) -> Result<(), StateError> {
        if value.len() as u64 > self.max_value_bytes {
            return Err(StateError::QuotaExceeded(format!(
                "the value is {} bytes; the limit is {} (limits.state_value_bytes)",
                value.len(),
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    fn too_many_keys(&self) -> StateError {
        StateError::QuotaExceeded(format!(
            "adapter already holds {} live keys (limits.state_keys)",
            self.max_keys
        ))
    }
}

fn unavailable(error: StorageError) -> StateError {
    tracing::warn!(target: "airlock::state", %error, "state store failed");
    StateError::Unavailable(format!("state store failed: {error}"))
}

fn ttl(secs: Option<u64>) -> Option<Duration> {
    secs.map(Duration::from_secs)
}

impl Host for StateScope {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, StateError>> {
        if let Err(e) = self.admit(&key) {
            return Ok(Err(e));
        }
        Ok(self
            .storage
            .state_get(&self.scope, &key)
            .await
            .map_err(unavailable))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_secs: Option<u64>,
    ) -> wasmtime::Result<Result<(), StateError>> {
        if let Err(e) = self
            .admit_write(&key)
            .and_then(|_| self.admit_value(&value))
        {
            return Ok(Err(e));
        }
        let stored = self
            .storage
            .state_set(&self.scope, &key, &value, ttl(ttl_secs), self.max_keys)
            .await;
        Ok(match stored {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.too_many_keys()),
            Err(e) => Err(unavailable(e)),
        })
    }

    async fn insert_new(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_secs: Option<u64>,
    ) -> wasmtime::Result<Result<bool, StateError>> {
        if let Err(e) = self
            .admit_write(&key)
            .and_then(|_| self.admit_value(&value))
        {
            return Ok(Err(e));
        }
        let stored = self
            .storage
            .state_insert_new(&self.scope, &key, &value, ttl(ttl_secs), self.max_keys)
            .await;
        Ok(match stored {
            Ok(Some(inserted)) => Ok(inserted),
            Ok(None) => Err(self.too_many_keys()),
            Err(e) => Err(unavailable(e)),
        })
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, StateError>> {
        if let Err(e) = self.admit_write(&key) {
            return Ok(Err(e));
        }
        Ok(self
            .storage
            .state_delete(&self.scope, &key)
            .await
            .map_err(unavailable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(limits: &Limits) -> (tempfile::TempDir, StateScope) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::sqlite::SqliteDb::open(&dir.path().join("a.db")).unwrap();
        let storage = Arc::new(crate::storage::sqlite::SqliteStorage::new(db));
        (
            dir,
            StateScope::new(storage, Scope::new("default", "t"), limits),
        )
    }

    #[tokio::test]
    async fn keys_values_and_op_budget_are_bounded() {
        let limits = Limits {
            state_key_bytes: 8,
            state_value_bytes: 4,
            state_ops_per_call: 5,
            state_keys: 1,
            ..Limits::default()
        };
        let (_dir, mut s) = scope(&limits);
        assert!(matches!(
            s.set("k".into(), b"1234".to_vec(), None).await.unwrap(),
            Ok(())
        ));
        assert!(
            matches!(s.set("k".into(), b"12345".to_vec(), None).await.unwrap(),
            Err(StateError::QuotaExceeded(m)) if m == "the value is 5 bytes; the limit is 4 (limits.state_value_bytes)")
        );
        assert!(matches!(s.get("123456789".into()).await.unwrap(),
            Err(StateError::InvalidKey(m)) if m == "the key is 9 bytes; the limit is 8 (limits.state_key_bytes)"));
        assert!(
            matches!(s.set("other".into(), b"1".to_vec(), None).await.unwrap(),
            Err(StateError::QuotaExceeded(m)) if m == "adapter already holds 1 live keys (limits.state_keys)")
        );
        assert!(matches!(s.get("k".into()).await.unwrap(), Ok(Some(v)) if v == b"1234"));
        assert!(matches!(s.get("k".into()).await.unwrap(),
            Err(StateError::QuotaExceeded(m)) if m == "more than 5 state operations in one call (limits.state_ops_per_call)"));
    }
}
