//! The contract's shapes on the host side, in the seed's JSON form (camelCase), and the
//! checks that turn what a guest returned ([`guest`]: the WIT records as plain Rust, JSON
//! still text) into them. Guest output is untrusted: every JSON document is parsed, every
//! id and number bounded. A failed check is a [`ContractViolation`], which the caller sees
//! as `INTERNAL` "adapter broke the contract".

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The six error categories of the contract.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The caller's configuration or parameters are wrong; never retried automatically.
    Validation,
    /// A transient provider or network problem; retry with backoff.
    Retryable,
    /// Not recoverable without a person.
    Permanent,
    /// Authentication or authorisation with the provider failed.
    Auth,
    /// A rate or service limit, or an Airlock limit (fuel, memory, deadline).
    Limit,
    /// A bug in the adapter, a trap, or a broken contract.
    Internal,
}

impl ErrorCode {
    /// All six, in the contract's order.
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::Validation,
        ErrorCode::Retryable,
        ErrorCode::Permanent,
        ErrorCode::Auth,
        ErrorCode::Limit,
        ErrorCode::Internal,
    ];

    /// The code as the contract spells it.
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

    /// The `airlock` CLI's exit status for this code.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::Validation => 10,
            ErrorCode::Retryable => 11,
            ErrorCode::Permanent => 12,
            ErrorCode::Auth => 13,
            ErrorCode::Limit => 14,
            ErrorCode::Internal => 15,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the runtime's limits stopped a call.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    /// The fuel (CPU) budget.
    Fuel,
    /// The linear-memory cap.
    Memory,
    /// The table-size cap.
    Table,
    /// The wall-clock deadline.
    Deadline,
    /// The runtime's instance pool: every one of `RuntimeConfig::pool_size` instances was
    /// in use for longer than `RuntimeConfig::pool_wait`.
    Pool,
}

impl LimitKind {
    /// The name used in messages and receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Fuel => "fuel",
            LimitKind::Memory => "memory",
            LimitKind::Table => "table",
            LimitKind::Deadline => "deadline",
            LimitKind::Pool => "pool",
        }
    }
}

/// Where an error came from: the adapter itself, or the runtime stopping or judging it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "limit")]
pub enum ErrorOrigin {
    /// The adapter returned this error.
    #[default]
    Adapter,
    /// A runtime limit stopped the call.
    Limit(LimitKind),
    /// The guest trapped (panic, `unreachable`, stack overflow, …).
    Trap,
    /// The guest's output broke the contract.
    Contract,
    /// The runtime refused the call before running the guest (bad input, missing export).
    Host,
}

/// The error of a contract operation, in the seed's shape.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterError {
    /// One of the six codes.
    pub error_code: ErrorCode,
    /// What went wrong.
    pub message: String,
    /// Optional detail (a JSON object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
    /// Who produced it.
    #[serde(skip)]
    pub origin: ErrorOrigin,
}

impl AdapterError {
    /// An error the runtime itself raises.
    pub fn host(code: ErrorCode, message: impl Into<String>) -> Self {
        AdapterError {
            error_code: code,
            message: message.into(),
            raw: None,
            origin: ErrorOrigin::Host,
        }
    }

    /// A runtime limit stopped the call.
    pub fn limit(kind: LimitKind, message: impl Into<String>) -> Self {
        AdapterError {
            error_code: ErrorCode::Limit,
            message: message.into(),
            raw: None,
            origin: ErrorOrigin::Limit(kind),
        }
    }

    /// The guest trapped.
    pub fn trap(message: impl Into<String>) -> Self {
        AdapterError {
            error_code: ErrorCode::Internal,
            message: message.into(),
            raw: None,
            origin: ErrorOrigin::Trap,
        }
    }

    /// The guest's output broke the contract.
    pub fn contract(violation: ContractViolation) -> Self {
        AdapterError {
            error_code: ErrorCode::Internal,
            message: format!("adapter broke the contract: {violation}"),
            raw: None,
            origin: ErrorOrigin::Contract,
        }
    }

    /// `PERMANENT` "not supported by this adapter", for an optional operation it lacks.
    pub fn unsupported(operation: &str, interface: &str) -> Self {
        AdapterError::host(
            ErrorCode::Permanent,
            format!(
                "{operation} is not supported by this adapter (it does not export `{interface}`)"
            ),
        )
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_code, self.message)
    }
}

impl std::error::Error for AdapterError {}

/// What `create` returns.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionResult {
    /// The provider's id of the resource.
    pub instance_id: String,
    /// How to reach it.
    pub connection: Map<String, Value>,
    /// Extra detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// False when an existing resource was returned for a repeated key.
    pub created: bool,
    /// The idempotency key, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Where a resource is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Accepted, not started.
    Pending,
    /// In progress.
    Running,
    /// Ready.
    Success,
    /// Failed.
    Failed,
    /// Cancelled or torn down.
    Cancelled,
}

impl Status {
    /// The status as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Running => "RUNNING",
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// True for the states a resource does not leave on its own.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Success | Status::Failed | Status::Cancelled)
    }
}

/// Progress of a long operation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps done.
    pub current: u64,
    /// Steps in all.
    pub total: u64,
}

/// What `status` returns.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetail {
    /// The status.
    pub status: Status,
    /// With a failure: its category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// A message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Provider detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Map<String, Value>>,
}

/// A secret manager a credential reference points into.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretManager {
    /// HashiCorp Vault.
    Vault,
    /// AWS Secrets Manager.
    AwsSecretsManager,
    /// Google Secret Manager.
    GcpSecretManager,
    /// Azure Key Vault.
    AzureKeyVault,
}

/// What `credentials` and `rotate-credentials` return.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Credential {
    /// Short-lived credential fields.
    #[serde(rename_all = "camelCase")]
    Ephemeral {
        /// The fields (user name, token, …).
        values: Map<String, Value>,
        /// Expiry, RFC 3339 (UTC).
        expires_at: String,
        /// Expiry, milliseconds since the Unix epoch.
        expires_at_ms: u64,
    },
    /// A pointer into a secret manager.
    #[serde(rename_all = "camelCase")]
    Reference {
        /// Which manager.
        manager: SecretManager,
        /// Where in it (path, ARN, resource name, URL).
        locator: String,
        /// Which version.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
}

/// What `estimate-costs` returns.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostEstimate {
    /// ISO 4217 currency code.
    pub currency: String,
    /// Per hour, a decimal string.
    pub hourly: String,
    /// Per month, a decimal string.
    pub monthly: String,
    /// Per-component detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Map<String, Value>>,
}

/// A rule of the contract that guest output broke; the text says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractViolation(pub String);

impl fmt::Display for ContractViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ContractViolation {}

/// Bounds the checks apply, from the adapter's policy
/// ([`crate::policy::Limits::contract_bounds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractBounds {
    /// Longest instance id, in bytes (`limits.max_instance_id_bytes`).
    pub max_instance_id_bytes: usize,
    /// Longest life of an ephemeral credential (`limits.max_credential_ttl_secs`).
    pub max_credential_ttl: Duration,
    /// Longest message, locator or amount, in bytes (`limits.max_output_bytes`).
    pub max_message_bytes: usize,
    /// Largest JSON document (`connection`, `metadata`, `raw`, `values`, `breakdown`) as
    /// the guest serialized it, in bytes (`limits.max_json_bytes`).
    pub max_json_bytes: usize,
    /// Deepest nesting of arrays and objects in such a document (`limits.max_json_depth`);
    /// the document itself is level 1.
    pub max_json_depth: usize,
}

/// What a guest returned, as plain Rust: the WIT records of `airlock:adapter/types` and
/// `costs` field for field, JSON documents still unparsed text. The `airlock` crate
/// converts its generated bindings into these; the checks below turn them into the
/// contract's shapes or refuse them.
pub mod guest {
    use super::{ErrorCode, Progress, SecretManager, Status};

    /// `adapter-error`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AdapterError {
        /// `code`.
        pub code: ErrorCode,
        /// `message`.
        pub message: String,
        /// `raw`: JSON text that must be an object.
        pub raw: Option<String>,
    }

    /// `provision-result`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ProvisionResult {
        /// `instance-id`.
        pub instance_id: String,
        /// `connection`: JSON text that must be an object.
        pub connection: String,
        /// `metadata`: JSON text that must be an object.
        pub metadata: Option<String>,
        /// `created`.
        pub created: bool,
        /// `idempotency-key`: must echo the key the caller gave.
        pub idempotency_key: Option<String>,
    }

    /// `status-detail`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StatusDetail {
        /// `status`.
        pub status: Status,
        /// `error-code`: only with FAILED or CANCELLED.
        pub error_code: Option<ErrorCode>,
        /// `message`.
        pub message: Option<String>,
        /// `progress`: `current` at most `total`.
        pub progress: Option<Progress>,
        /// `raw`: JSON text that must be an object.
        pub raw: Option<String>,
    }

    /// `credential`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Credential {
        /// `ephemeral`.
        Ephemeral {
            /// `values`: JSON text that must be an object.
            values: String,
            /// `expires-at-ms`: in the future, within the policy's TTL.
            expires_at_ms: u64,
        },
        /// `reference`.
        Reference {
            /// `manager`.
            manager: SecretManager,
            /// `locator`: not blank.
            locator: String,
            /// `version`.
            version: Option<String>,
        },
    }

    /// `cost-estimate` of the `costs` interface.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CostEstimate {
        /// `currency`: three upper-case ASCII letters.
        pub currency: String,
        /// `hourly`: a non-negative decimal.
        pub hourly: String,
        /// `monthly`: a non-negative decimal.
        pub monthly: String,
        /// `breakdown`: JSON text that must be an object.
        pub breakdown: Option<String>,
    }
}

/// The outcome of a check.
pub type Checked<T> = Result<T, ContractViolation>;

fn violation<T>(message: impl Into<String>) -> Checked<T> {
    Err(ContractViolation(message.into()))
}

/// Parse a guest JSON document that must be an object, within the policy's bounds. The
/// size and the depth are judged on the text, before anything is parsed: a document past
/// them never becomes a `serde_json::Value` (which would be redacted, stored in the
/// idempotency record and replayed on every repeat).
fn object(field: &str, text: &str, bounds: &ContractBounds) -> Checked<Map<String, Value>> {
    if text.len() > bounds.max_json_bytes {
        return violation(format!(
            "`{field}` is {} bytes of JSON; the limit is {} (limits.max_json_bytes)",
            text.len(),
            bounds.max_json_bytes
        ));
    }
    if let Some(depth) = nesting_over(text, bounds.max_json_depth) {
        return violation(format!(
            "`{field}` nests arrays and objects {depth} deep; the limit is {} (limits.max_json_depth)",
            bounds.max_json_depth
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => violation(format!(
            "`{field}` must be a JSON object, got {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => unreachable!(),
            }
        )),
        Err(e) => violation(format!("`{field}` is not valid JSON ({e})")),
    }
}

/// The first nesting depth past `max` that `text` reaches, counting `[` and `{` outside
/// strings; `None` within the bound. One pass over the bytes, no allocation, so a guest's
/// ten-million-deep document costs the host a scan, not a stack. Text that is not JSON
/// is left to the parser to name.
fn nesting_over(text: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn optional_object(
    field: &str,
    text: Option<String>,
    bounds: &ContractBounds,
) -> Checked<Option<Map<String, Value>>> {
    text.map(|t| object(field, &t, bounds)).transpose()
}

fn instance_id(id: String, bounds: &ContractBounds) -> Checked<String> {
    if id.is_empty() {
        return violation("`instanceId` is empty");
    }
    if id.len() > bounds.max_instance_id_bytes {
        return violation(format!(
            "`instanceId` is {} bytes; the limit is {}",
            id.len(),
            bounds.max_instance_id_bytes
        ));
    }
    if id.chars().any(char::is_control) {
        return violation("`instanceId` contains control characters");
    }
    Ok(id)
}

fn message(field: &str, text: String, bounds: &ContractBounds) -> Checked<String> {
    if text.len() > bounds.max_message_bytes {
        return violation(format!(
            "`{field}` is {} bytes; the limit is {}",
            text.len(),
            bounds.max_message_bytes
        ));
    }
    Ok(text)
}

/// Check an error the guest returned: a non-blank message within bounds, `raw` an object.
pub fn adapter_error(error: guest::AdapterError, bounds: &ContractBounds) -> Checked<AdapterError> {
    if error.message.trim().is_empty() {
        return violation(format!(
            "returned an error ({}) with an empty message",
            error.code
        ));
    }
    Ok(AdapterError {
        error_code: error.code,
        message: message("message", error.message, bounds)?,
        raw: optional_object("raw", error.raw, bounds)?.map(Value::Object),
        origin: ErrorOrigin::Adapter,
    })
}

/// Check what `create` returned: a bounded instance id without control characters, the
/// caller's idempotency key echoed exactly, `connection` and `metadata` objects.
pub fn provision_result(
    result: guest::ProvisionResult,
    requested_key: Option<&str>,
    bounds: &ContractBounds,
) -> Checked<ProvisionResult> {
    let instance_id = instance_id(result.instance_id, bounds)?;
    if result.idempotency_key.as_deref() != requested_key {
        return violation(format!(
            "`idempotencyKey` must echo the key given ({requested_key:?}), got {:?}",
            result.idempotency_key
        ));
    }
    Ok(ProvisionResult {
        instance_id,
        connection: object("connection", &result.connection, bounds)?,
        metadata: optional_object("metadata", result.metadata, bounds)?,
        created: result.created,
        idempotency_key: result.idempotency_key,
    })
}

/// Check what `status` returned: progress `current <= total`, an error code only on
/// FAILED or CANCELLED, a bounded message, `raw` an object.
pub fn status_detail(
    detail: guest::StatusDetail,
    bounds: &ContractBounds,
) -> Checked<StatusDetail> {
    let status = detail.status;
    if let Some(p) = detail.progress
        && p.current > p.total
    {
        return violation(format!(
            "progress current ({}) is greater than total ({})",
            p.current, p.total
        ));
    }
    if detail.error_code.is_some() && !matches!(status, Status::Failed | Status::Cancelled) {
        return violation(format!(
            "status {} carries an error code; only FAILED or CANCELLED may",
            status.as_str()
        ));
    }
    Ok(StatusDetail {
        status,
        error_code: detail.error_code,
        message: detail
            .message
            .map(|m| message("message", m, bounds))
            .transpose()?,
        progress: detail.progress,
        raw: optional_object("raw", detail.raw, bounds)?,
    })
}

/// Check what `credentials` or `rotate-credentials` returned, now: an ephemeral
/// credential's expiry in the future and within the policy's TTL, `values` an object; a
/// reference's locator not blank and within bounds, its version within bounds.
pub fn credential(credential: guest::Credential, bounds: &ContractBounds) -> Checked<Credential> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    credential_at(credential, bounds, now)
}

/// [`credential`] at a given time (since the Unix epoch), for checks that must not depend
/// on the clock.
pub fn credential_at(
    credential: guest::Credential,
    bounds: &ContractBounds,
    now: Duration,
) -> Checked<Credential> {
    match credential {
        guest::Credential::Ephemeral {
            values,
            expires_at_ms,
        } => {
            let expires = Duration::from_millis(expires_at_ms);
            if expires <= now {
                return violation(format!(
                    "ephemeral credential already expired (expiresAt {})",
                    rfc3339(expires_at_ms)
                ));
            }
            if expires - now > bounds.max_credential_ttl {
                return violation(format!(
                    "ephemeral credential lives {}s; the policy allows at most {}s (max_credential_ttl_secs)",
                    (expires - now).as_secs(),
                    bounds.max_credential_ttl.as_secs()
                ));
            }
            Ok(Credential::Ephemeral {
                values: object("values", &values, bounds)?,
                expires_at: rfc3339(expires_at_ms),
                expires_at_ms,
            })
        }
        guest::Credential::Reference {
            manager,
            locator,
            version,
        } => {
            if locator.trim().is_empty() {
                return violation("secret reference has an empty locator");
            }
            Ok(Credential::Reference {
                manager,
                locator: message("locator", locator, bounds)?,
                version: version.map(|v| message("version", v, bounds)).transpose()?,
            })
        }
    }
}

/// Check what `estimate-costs` returned: an ISO 4217 currency code, non-negative decimal
/// amounts within bounds, `breakdown` an object.
pub fn cost_estimate(
    estimate: guest::CostEstimate,
    bounds: &ContractBounds,
) -> Checked<CostEstimate> {
    let currency_ok =
        estimate.currency.len() == 3 && estimate.currency.chars().all(|c| c.is_ascii_uppercase());
    if !currency_ok {
        return violation(format!(
            "currency {:?} is not an ISO 4217 code",
            estimate.currency
        ));
    }
    for (field, amount) in [("hourly", &estimate.hourly), ("monthly", &estimate.monthly)] {
        if !is_decimal(amount) {
            return violation(format!(
                "`{field}` {amount:?} is not a non-negative decimal"
            ));
        }
    }
    Ok(CostEstimate {
        currency: estimate.currency,
        hourly: message("hourly", estimate.hourly, bounds)?,
        monthly: message("monthly", estimate.monthly, bounds)?,
        breakdown: optional_object("breakdown", estimate.breakdown, bounds)?,
    })
}

fn is_decimal(text: &str) -> bool {
    let mut parts = text.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    !whole.is_empty()
        && whole.len() <= 18
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction
            .is_none_or(|f| !f.is_empty() && f.len() <= 12 && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> ContractBounds {
        ContractBounds {
            max_instance_id_bytes: 256,
            max_credential_ttl: Duration::from_secs(3600),
            max_message_bytes: 64 * 1024,
            max_json_bytes: 4096,
            max_json_depth: 4,
        }
    }

    fn result(id: &str, connection: &str) -> guest::ProvisionResult {
        guest::ProvisionResult {
            instance_id: id.into(),
            connection: connection.into(),
            metadata: None,
            created: true,
            idempotency_key: Some("k".into()),
        }
    }

    #[test]
    fn provision_result_checks_ids_json_and_key_echo() {
        let ok = provision_result(result("i-1", r#"{"host":"h"}"#), Some("k"), &bounds()).unwrap();
        assert_eq!(ok.connection["host"], "h");
        let err = |r, key| provision_result(r, key, &bounds()).unwrap_err().0;
        assert_eq!(err(result("", "{}"), Some("k")), "`instanceId` is empty");
        assert_eq!(
            err(result(&"x".repeat(257), "{}"), Some("k")),
            "`instanceId` is 257 bytes; the limit is 256"
        );
        assert!(err(result("i", "{oops"), Some("k")).starts_with("`connection` is not valid JSON"));
        assert_eq!(
            err(result("i", "[1]"), Some("k")),
            "`connection` must be a JSON object, got an array"
        );
        assert!(err(result("i", "{}"), Some("other")).starts_with("`idempotencyKey` must echo"));
    }

    #[test]
    fn json_documents_are_bounded_in_size_and_depth_before_parsing() {
        let bounds = bounds();
        let err = |connection: &str| {
            provision_result(result("i", connection), Some("k"), &bounds)
                .unwrap_err()
                .0
        };
        // 4,096 bytes is the bound: one byte more is refused by its size.
        let fits = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4096 - 10));
        assert_eq!(fits.len(), 4096);
        assert!(provision_result(result("i", &fits), Some("k"), &bounds).is_ok());
        let over = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4096 - 9));
        assert_eq!(
            err(&over),
            "`connection` is 4097 bytes of JSON; the limit is 4096 (limits.max_json_bytes)"
        );
        // Depth 4 is the bound; brackets inside strings (escaped quotes too) do not count.
        assert!(
            provision_result(
                result("i", r#"{"a":[{"b":["[[[{{\"]]"]}]}"#),
                Some("k"),
                &bounds
            )
            .is_ok()
        );
        assert_eq!(
            err(r#"{"a":[{"b":[[1]]}]}"#),
            "`connection` nests arrays and objects 5 deep; the limit is 4 (limits.max_json_depth)"
        );
        // Thousands of levels cost a scan, never a parse, and name the first level past it.
        assert_eq!(
            err(&"[".repeat(4000)),
            "`connection` nests arrays and objects 5 deep; the limit is 4 (limits.max_json_depth)"
        );
        // Every JSON field of every record is bounded, and named.
        let deep = Some(r#"{"a":{"b":{"c":{"d":{}}}}}"#.to_owned());
        let metadata = guest::ProvisionResult {
            metadata: deep.clone(),
            ..result("i", "{}")
        };
        assert!(
            provision_result(metadata, Some("k"), &bounds)
                .unwrap_err()
                .0
                .starts_with("`metadata` nests")
        );
        let detail = guest::StatusDetail {
            status: Status::Running,
            error_code: None,
            message: None,
            progress: None,
            raw: deep.clone(),
        };
        assert!(
            status_detail(detail, &bounds)
                .unwrap_err()
                .0
                .starts_with("`raw` nests")
        );
        let error = guest::AdapterError {
            code: ErrorCode::Permanent,
            message: "no".into(),
            raw: Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000))),
        };
        assert!(
            adapter_error(error, &bounds)
                .unwrap_err()
                .0
                .starts_with("`raw` is 5010 bytes of JSON")
        );
        let far = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000;
        let values = guest::Credential::Ephemeral {
            values: deep.clone().unwrap(),
            expires_at_ms: far,
        };
        assert!(
            credential(values, &bounds)
                .unwrap_err()
                .0
                .starts_with("`values` nests")
        );
        let estimate = guest::CostEstimate {
            currency: "EUR".into(),
            hourly: "1".into(),
            monthly: "730".into(),
            breakdown: deep,
        };
        assert!(
            cost_estimate(estimate, &bounds)
                .unwrap_err()
                .0
                .starts_with("`breakdown` nests")
        );
    }

    #[test]
    fn status_detail_checks_progress_and_error_code() {
        let detail = |status, current, total, code| guest::StatusDetail {
            status,
            error_code: code,
            message: None,
            progress: Some(Progress { current, total }),
            raw: None,
        };
        assert!(status_detail(detail(Status::Running, 3, 3, None), &bounds()).is_ok());
        assert_eq!(
            status_detail(detail(Status::Running, 7, 3, None), &bounds())
                .unwrap_err()
                .0,
            "progress current (7) is greater than total (3)"
        );
        assert_eq!(
            status_detail(
                detail(Status::Success, 1, 1, Some(ErrorCode::Auth)),
                &bounds()
            )
            .unwrap_err()
            .0,
            "status SUCCESS carries an error code; only FAILED or CANCELLED may"
        );
    }

    #[test]
    fn credentials_must_expire_in_the_future_within_the_ttl() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let eph = |at| guest::Credential::Ephemeral {
            values: "{}".into(),
            expires_at_ms: at,
        };
        assert!(credential(eph(now + 60_000), &bounds()).is_ok());
        assert!(
            credential(eph(1000), &bounds())
                .unwrap_err()
                .0
                .starts_with("ephemeral credential already expired")
        );
        assert!(
            credential(eph(now + 7_200_000), &bounds())
                .unwrap_err()
                .0
                .contains("at most 3600s")
        );
    }

    #[test]
    fn decimals() {
        for good in ["0", "12", "12.50", "0.0001"] {
            assert!(is_decimal(good), "{good}");
        }
        for bad in ["", "-1", "1.", ".5", "1e3", "NaN", "1,5"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }
}
