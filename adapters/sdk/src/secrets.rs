//! Secrets granted to this adapter by the operator. You get an opaque [`Secret`] handle,
//! never the value: pass it to [`crate::http::Request::secret_header`] and the host places
//! the value into the request, but only toward a destination the policy binds it to.

use crate::bindings::airlock::adapter::secrets as wit;
use crate::error::AdapterError;

/// An opaque handle to a granted secret.
pub use wit::Secret;

/// Why a secret could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The policy grants no secret of that name to this adapter.
    NotGranted(String),
    /// The policy does not allow revealing it.
    RevealDenied(String),
    /// The secret source failed, or the call already holds as many handles as it may (64
    /// live at once; drop one to get another).
    Unavailable(String),
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::NotGranted(m) => write!(f, "secret not granted: {m}"),
            SecretError::RevealDenied(m) => write!(f, "secret reveal denied: {m}"),
            SecretError::Unavailable(m) => write!(f, "secret unavailable: {m}"),
        }
    }
}

impl std::error::Error for SecretError {}

/// `?` in an operation: a missing grant or a refused reveal is `AUTH`, a failing source is
/// `RETRYABLE`.
impl From<SecretError> for AdapterError {
    fn from(error: SecretError) -> Self {
        let message = error.to_string();
        match error {
            SecretError::NotGranted(_) | SecretError::RevealDenied(_) => {
                AdapterError::auth(message)
            }
            SecretError::Unavailable(_) => AdapterError::retryable(message),
        }
    }
}

fn convert(error: wit::SecretError) -> SecretError {
    match error {
        wit::SecretError::NotGranted(m) => SecretError::NotGranted(m),
        wit::SecretError::RevealDenied(m) => SecretError::RevealDenied(m),
        wit::SecretError::Unavailable(m) => SecretError::Unavailable(m),
    }
}

/// The handle of the secret granted under `name`.
pub fn get(name: &str) -> Result<Secret, SecretError> {
    wit::get(name).map_err(convert)
}

/// The secret's value, where the policy allows `reveal` for it. The host logs every reveal
/// and redacts the value from everything the adapter returns or logs.
pub fn reveal(secret: &Secret) -> Result<String, SecretError> {
    wit::reveal(secret).map_err(convert)
}
