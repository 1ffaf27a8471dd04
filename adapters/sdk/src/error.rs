//! The contract's error model: six codes, a message, optional provider detail.

use std::fmt;

use serde_json::Value;

/// The six error categories of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The caller's configuration or parameters are wrong; never retried automatically.
    Validation,
    /// A transient provider or network problem; the caller may retry with backoff.
    Retryable,
    /// Not recoverable without a person (unsupported region, hard quota, …).
    Permanent,
    /// Authentication or authorisation with the provider failed.
    Auth,
    /// A rate or service limit; may be retried later.
    Limit,
    /// An unexpected failure: a bug or an unhandled condition.
    Internal,
}

impl ErrorCode {
    /// The code as the contract spells it (`VALIDATION`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Validation => "VALIDATION",
            ErrorCode::Retryable => "RETRYABLE",
            ErrorCode::Permanent => "PERMANENT",
            ErrorCode::Auth => "AUTH",
            ErrorCode::Limit => "LIMIT",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every operation returns: a code, a message for a person, optional detail.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterError {
    /// Which of the six categories this is.
    pub code: ErrorCode,
    /// What went wrong. Name the field, the provider call, the limit.
    pub message: String,
    /// Optional provider detail; must be a JSON object.
    pub raw: Option<Value>,
}

/// The result type of every operation.
pub type Result<T, E = AdapterError> = std::result::Result<T, E>;

impl AdapterError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AdapterError {
            code,
            message: message.into(),
            raw: None,
        }
    }

    /// `VALIDATION`: the caller's input is wrong. Name the field.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }

    /// `RETRYABLE`: transient; the caller may retry with backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Retryable, message)
    }

    /// `PERMANENT`: needs a person to fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Permanent, message)
    }

    /// `AUTH`: the provider refused our credentials.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Auth, message)
    }

    /// `LIMIT`: a rate or service limit.
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Limit, message)
    }

    /// `INTERNAL`: a bug or an unhandled condition.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Attach provider detail (a JSON object) to the error.
    pub fn with_raw(mut self, raw: Value) -> Self {
        self.raw = Some(raw);
        self
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AdapterError {}
