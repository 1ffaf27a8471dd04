//! JSON documents crossing the boundary: the provider config, create's params, and the
//! connection details an adapter returns.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{AdapterError, Result};

macro_rules! json_document {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(Value);

        impl $name {
            /// Wrap a JSON value.
            pub fn new(value: Value) -> Self {
                $name(value)
            }

            /// The whole document.
            pub fn value(&self) -> &Value {
                &self.0
            }

            /// Deserialize the whole document into `T`; a mismatch is `VALIDATION` with
            /// serde's message, which names the field.
            pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
                T::deserialize(&self.0).map_err(|e| {
                    AdapterError::validation(format!(concat!("invalid ", $what, ": {}"), e))
                })
            }

            /// The field `name`, if present and not null.
            pub fn get(&self, name: &str) -> Option<&Value> {
                self.0.get(name).filter(|v| !v.is_null())
            }

            /// The string field `name`; `VALIDATION` naming the field if it is missing, not
            /// a string, or empty.
            pub fn require_str(&self, name: &str) -> Result<&str> {
                match self.get(name) {
                    None => Err(AdapterError::validation(format!(
                        concat!($what, ".{}: required field is missing"),
                        name
                    ))),
                    Some(Value::String(s)) if s.trim().is_empty() => Err(AdapterError::validation(
                        format!(concat!($what, ".{}: must not be empty"), name),
                    )),
                    Some(Value::String(s)) => Ok(s),
                    Some(other) => Err(AdapterError::validation(format!(
                        concat!($what, ".{}: expected a string, got {}"),
                        name,
                        kind(other)
                    ))),
                }
            }

            /// The optional string field `name`; `VALIDATION` if present but not a string.
            pub fn optional_str(&self, name: &str) -> Result<Option<&str>> {
                match self.get(name) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(other) => Err(AdapterError::validation(format!(
                        concat!($what, ".{}: expected a string, got {}"),
                        name,
                        kind(other)
                    ))),
                }
            }

            /// The optional unsigned integer field `name`, checked against `range`.
            pub fn optional_u64(
                &self,
                name: &str,
                range: std::ops::RangeInclusive<u64>,
            ) -> Result<Option<u64>> {
                let Some(value) = self.get(name) else { return Ok(None) };
                match value.as_u64() {
                    Some(n) if range.contains(&n) => Ok(Some(n)),
                    _ => Err(AdapterError::validation(format!(
                        concat!($what, ".{}: expected an integer from {} to {}, got {}"),
                        name,
                        range.start(),
                        range.end(),
                        value
                    ))),
                }
            }
        }
    };
}

json_document!(
    /// The provider configuration passed to every operation.
    Config,
    "config"
);
json_document!(
    /// The parameters of a `create` call.
    Params,
    "params"
);

/// How to reach a provisioned resource: a JSON object (host, port, database, …). Never put
/// long-lived secrets here; hand out [`crate::Credentials`] instead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connection(Map<String, Value>);

impl Connection {
    /// An empty connection object.
    pub fn new() -> Self {
        Connection(Map::new())
    }

    /// Add a field.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }

    /// The connection as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

impl From<Map<String, Value>> for Connection {
    fn from(map: Map<String, Value>) -> Self {
        Connection(map)
    }
}

/// The kind of a JSON value, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parse a document the host has already checked. The host guarantees JSON, so a failure
/// here means a host bug; say so rather than panic.
pub(crate) fn parse_document(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| AdapterError::internal(format!("host passed a {what} that is not JSON: {e}")))
}
