//! The adapter's private key-value store, kept by the host across calls and processes.
//!
//! ```ignore
//! use airlock_sdk::state;
//! state::set_json("instance:db-1", &record, None)?;
//! let record: Option<Record> = state::get_json("instance:db-1")?;
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::airlock::adapter::state as wit;
use crate::error::AdapterError;

/// Why a state operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The key is empty, too long, or not printable text: a bug in the adapter.
    InvalidKey(String),
    /// A bound of the policy (value size, key count, operations per call) was hit.
    QuotaExceeded(String),
    /// The host's store failed; the call may succeed if retried.
    Unavailable(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::InvalidKey(m) => write!(f, "invalid state key: {m}"),
            StateError::QuotaExceeded(m) => write!(f, "state quota exceeded: {m}"),
            StateError::Unavailable(m) => write!(f, "state store unavailable: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

/// `?` in an operation: a bad key is the adapter's bug (`INTERNAL`), a quota is `LIMIT`, an
/// unavailable store is `RETRYABLE`.
impl From<StateError> for AdapterError {
    fn from(error: StateError) -> Self {
        let message = error.to_string();
        match error {
            StateError::InvalidKey(_) => AdapterError::internal(message),
            StateError::QuotaExceeded(_) => AdapterError::limit(message),
            StateError::Unavailable(_) => AdapterError::retryable(message),
        }
    }
}

fn convert(error: wit::StateError) -> StateError {
    match error {
        wit::StateError::InvalidKey(m) => StateError::InvalidKey(m),
        wit::StateError::QuotaExceeded(m) => StateError::QuotaExceeded(m),
        wit::StateError::Unavailable(m) => StateError::Unavailable(m),
    }
}

fn ttl_secs(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|d| d.as_secs().max(1))
}

/// The bytes under `key`, if present and not expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    wit::get(key).map_err(convert)
}

/// Store `value` under `key`, replacing what was there; `ttl` bounds its life.
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
    wit::set(key, value, ttl_secs(ttl)).map_err(convert)
}

/// Store `value` only if `key` is absent; true if stored. Atomic across concurrent calls.
pub fn insert_new(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool, StateError> {
    wit::insert_new(key, value, ttl_secs(ttl)).map_err(convert)
}

/// Remove `key`; true if it was there.
pub fn delete(key: &str) -> Result<bool, StateError> {
    wit::delete(key).map_err(convert)
}

/// The JSON value under `key`, deserialized. A value that does not deserialize is the
/// adapter's own bug (`INTERNAL`).
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, AdapterError> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            AdapterError::internal(format!(
                "state value under {key:?} does not deserialize: {e}"
            ))
        }),
    }
}

/// Store `value` as JSON under `key`.
pub fn set_json<T: Serialize>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), AdapterError> {
    Ok(set(key, &to_json(key, value)?, ttl)?)
}

/// Store `value` as JSON under `key` only if `key` is absent; true if stored.
pub fn insert_new_json<T: Serialize>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<bool, AdapterError> {
    Ok(insert_new(key, &to_json(key, value)?, ttl)?)
}

fn to_json<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, AdapterError> {
    serde_json::to_vec(value).map_err(|e| {
        AdapterError::internal(format!("state value for {key:?} does not serialize: {e}"))
    })
}
