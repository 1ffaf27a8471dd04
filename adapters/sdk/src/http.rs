//! Outbound HTTP to the destinations the operator's policy allows. The host resolves and
//! checks every address, follows no redirects, and bounds request count, sizes and time.
//!
//! ```ignore
//! use airlock_sdk::{http::{Method, Request}, secrets};
//! let token = secrets::get("provider-token")?;
//! let response = Request::new(Method::Post, "https://api.example.com/v1/databases")
//!     .header("content-type", "application/json")
//!     .secret_header("authorization", "Bearer {secret}", &token)
//!     .json(&serde_json::json!({"name": "db-1"}))
//!     .send()?;
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::airlock::adapter::http as wit;
use crate::error::AdapterError;
use crate::secrets::Secret;

pub use wit::Method;

/// A response from the provider.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON; a body that does not parse is the provider's fault (`RETRYABLE`
    /// for 5xx, otherwise `INTERNAL`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AdapterError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let message = format!(
                "provider answered {} with a body that is not the expected JSON: {e}",
                self.status
            );
            if self.status >= 500 {
                AdapterError::retryable(message)
            } else {
                AdapterError::internal(message)
            }
        })
    }

    /// The error the contract expects for a non-2xx answer: 429 → `LIMIT` (with the
    /// Retry-After it carried), 401/403 → `AUTH`, 5xx → `RETRYABLE`, 404 → `PERMANENT`,
    /// other 4xx → `VALIDATION`. `None` for 2xx.
    pub fn error(&self) -> Option<AdapterError> {
        let body = String::from_utf8_lossy(&self.body);
        let detail: String = body.chars().take(300).collect();
        let message = format!("provider answered HTTP {}: {detail}", self.status);
        Some(match self.status {
            200..=299 => return None,
            429 => {
                let mut error = AdapterError::limit(message);
                if let Some(after) = self.header("retry-after") {
                    error = error.with_raw(serde_json::json!({ "retryAfter": after }));
                }
                error
            }
            401 | 403 => AdapterError::auth(message),
            404 => AdapterError::permanent(message),
            400..=499 => AdapterError::validation(message),
            _ => AdapterError::retryable(message),
        })
    }
}

/// Why a request was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The policy does not allow this destination; the message names the line that would.
    Denied(String),
    /// The request is malformed (bad URL, forbidden header, …).
    Invalid(String),
    /// A policy bound was hit (request count, body size).
    LimitExceeded(String),
    /// No answer in time.
    Timeout(String),
    /// DNS, connect or TLS failure, or a reset.
    ConnectionFailed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m) => f.write_str(m),
            HttpError::Invalid(m) => write!(f, "invalid HTTP request: {m}"),
            HttpError::LimitExceeded(m) => write!(f, "HTTP limit exceeded: {m}"),
            HttpError::Timeout(m) => write!(f, "HTTP request timed out: {m}"),
            HttpError::ConnectionFailed(m) => write!(f, "HTTP connection failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// `?` in an operation: a denial is `AUTH`, a bad request `INTERNAL` (the adapter's bug), a
/// bound `LIMIT`, a timeout or connection failure `RETRYABLE`.
impl From<HttpError> for AdapterError {
    fn from(error: HttpError) -> Self {
        let message = error.to_string();
        match error {
            HttpError::Denied(_) => AdapterError::auth(message),
            HttpError::Invalid(_) => AdapterError::internal(message),
            HttpError::LimitExceeded(_) => AdapterError::limit(message),
            HttpError::Timeout(_) | HttpError::ConnectionFailed(_) => {
                AdapterError::retryable(message)
            }
        }
    }
}

/// A request being built.
pub struct Request<'a> {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    secret_headers: Vec<(String, String, &'a Secret)>,
    body: Option<Vec<u8>>,
    timeout_ms: Option<u32>,
}

impl<'a> Request<'a> {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            secret_headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A DELETE request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Add a header the host builds from `template`, replacing `{secret}` with the secret's
    /// value. The adapter never sees the value.
    pub fn secret_header(
        mut self,
        name: impl Into<String>,
        template: impl Into<String>,
        secret: &'a Secret,
    ) -> Self {
        self.secret_headers
            .push((name.into(), template.into(), secret));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Set a JSON body and its content type.
    pub fn json<T: Serialize>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(body)
    }

    /// Ask for a shorter timeout than the policy's.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Send it.
    pub fn send(self) -> Result<Response, HttpError> {
        let secret_headers: Vec<wit::SecretHeader<'_>> = self
            .secret_headers
            .iter()
            .map(|(name, template, secret)| wit::SecretHeader {
                name: name.clone(),
                template: template.clone(),
                secret,
            })
            .collect();
        let request = wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            secret_headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        };
        match wit::send(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(wit::RequestError::Denied(m)) => Err(HttpError::Denied(m)),
            Err(wit::RequestError::Invalid(m)) => Err(HttpError::Invalid(m)),
            Err(wit::RequestError::LimitExceeded(m)) => Err(HttpError::LimitExceeded(m)),
            Err(wit::RequestError::Timeout(m)) => Err(HttpError::Timeout(m)),
            Err(wit::RequestError::ConnectionFailed(m)) => Err(HttpError::ConnectionFailed(m)),
        }
    }
}
