//! Structured guest output (what the WIT records can carry) through the contract checks
//! of `airlock_core::contract`, against a model of the contract written out here.
//!
//! Invariants:
//! - nothing panics, whatever the guest returned;
//! - the checks accept exactly what the model accepts: JSON documents that parse as objects,
//!   instance ids of 1 to `max_instance_id_bytes` bytes without control characters, the
//!   idempotency key echoed exactly, progress `current <= total`, an error code only on
//!   FAILED or CANCELLED, non-blank error messages and locators, messages, locators and
//!   versions within `max_message_bytes`, JSON documents within `max_json_bytes` as text
//!   and `max_json_depth` levels deep as parsed (the checks judge the depth on the text),
//!   an ephemeral expiry after now and at most the TTL ahead, an upper-case three-letter
//!   currency and non-negative decimal amounts;
//! - what is accepted keeps the guest's values (parsed JSON equal to the text's), and
//!   serialises to the seed's JSON and back unchanged;
//! - what is refused says why in a non-empty message.
#![no_main]

use std::time::Duration;

use airlock_core::contract::{
    self, ContractBounds, Credential, ErrorCode, Progress, SecretManager, Status, guest,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// 2026-01-01T00:00:00Z, plus the input's offset: the checks' clock, fixed per input.
const EPOCH_2026_MS: u64 = 1_767_225_600_000;

#[derive(Debug, Arbitrary)]
struct Input {
    max_instance_id_bytes: u8,
    max_message_bytes: u16,
    max_json_bytes: u16,
    max_json_depth: u8,
    ttl_secs: u32,
    now_offset_ms: u32,
    output: Output,
}

#[derive(Debug, Arbitrary)]
enum Output {
    Error {
        code: Code,
        message: String,
        raw: Option<Json>,
    },
    Provision {
        instance_id: String,
        connection: Json,
        metadata: Option<Json>,
        created: bool,
        requested_key: Option<String>,
        echoed_key: Echo,
    },
    Status {
        status: State,
        error_code: Option<Code>,
        message: Option<String>,
        progress: Option<(u64, u64)>,
        raw: Option<Json>,
    },
    Ephemeral {
        values: Json,
        /// Expiry relative to now, in milliseconds.
        expires_in_ms: i64,
    },
    Reference {
        manager: Manager,
        locator: String,
        version: Option<String>,
    },
    Costs {
        currency: String,
        hourly: Amount,
        monthly: Amount,
        breakdown: Option<Json>,
    },
}

/// A JSON document as a guest might send it: often valid, sometimes not an object, sometimes
/// not JSON at all.
#[derive(Debug, Arbitrary)]
enum Json {
    Object(Vec<(String, Leaf)>),
    Nested(String, Vec<(String, Leaf)>),
    /// An object wrapped in this many arrays (odd levels) and objects (even levels).
    Deep(u8, Vec<(String, Leaf)>),
    Leaf(Leaf),
    Array(Vec<Leaf>),
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    /// A binary fraction (`n / 2^k`), which JSON carries exactly.
    Float(i32, u8),
    Str(String),
}

#[derive(Debug, Arbitrary)]
enum Echo {
    Same,
    None,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Amount {
    Decimal(u64, Option<u32>),
    Text(String),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Code {
    Validation,
    Retryable,
    Permanent,
    Auth,
    Limit,
    Internal,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum State {
    Pending,
    Running,
    Success,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Manager {
    Vault,
    Aws,
    Gcp,
    Azure,
}

impl Leaf {
    fn value(&self) -> Value {
        match self {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => Value::Bool(*b),
            Leaf::Int(i) => Value::from(*i),
            Leaf::Float(n, k) => Value::from(f64::from(*n) / f64::from(1u32 << (k % 16))),
            Leaf::Str(s) => Value::String(s.clone()),
        }
    }
}

fn object(entries: &[(String, Leaf)]) -> Value {
    Value::Object(
        entries
            .iter()
            .map(|(k, v)| (k.clone(), v.value()))
            .collect(),
    )
}

impl Json {
    fn text(&self) -> String {
        match self {
            Json::Object(entries) => object(entries).to_string(),
            Json::Nested(key, entries) => {
                let mut outer = Map::new();
                outer.insert(key.clone(), object(entries));
                Value::Object(outer).to_string()
            }
            Json::Deep(levels, entries) => {
                let mut value = object(entries);
                for level in 0..*levels {
                    value = if level % 2 == 0 {
                        Value::Array(vec![value])
                    } else {
                        let mut outer = Map::new();
                        outer.insert(format!("l{level}"), value);
                        Value::Object(outer)
                    };
                }
                value.to_string()
            }
            Json::Leaf(leaf) => leaf.value().to_string(),
            Json::Array(items) => Value::Array(items.iter().map(Leaf::value).collect()).to_string(),
            Json::Text(text) => text.clone(),
        }
    }
}

impl Amount {
    fn text(&self) -> String {
        match self {
            Amount::Decimal(whole, None) => whole.to_string(),
            Amount::Decimal(whole, Some(fraction)) => format!("{whole}.{fraction}"),
            Amount::Text(text) => text.clone(),
        }
    }
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        match code {
            Code::Validation => ErrorCode::Validation,
            Code::Retryable => ErrorCode::Retryable,
            Code::Permanent => ErrorCode::Permanent,
            Code::Auth => ErrorCode::Auth,
            Code::Limit => ErrorCode::Limit,
            Code::Internal => ErrorCode::Internal,
        }
    }
}

impl From<State> for Status {
    fn from(state: State) -> Self {
        match state {
            State::Pending => Status::Pending,
            State::Running => Status::Running,
            State::Success => Status::Success,
            State::Failed => Status::Failed,
            State::Cancelled => Status::Cancelled,
        }
    }
}

impl From<Manager> for SecretManager {
    fn from(manager: Manager) -> Self {
        match manager {
            Manager::Vault => SecretManager::Vault,
            Manager::Aws => SecretManager::AwsSecretsManager,
            Manager::Gcp => SecretManager::GcpSecretManager,
            Manager::Azure => SecretManager::AzureKeyVault,
        }
    }
}

// The model: the contract's rules, written independently of the checks.

/// The text is within the size bound and parses as a JSON object within the depth bound:
/// that object.
fn model_object(text: &str, bounds: &ContractBounds) -> Option<Map<String, Value>> {
    if text.len() > bounds.max_json_bytes {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    if depth(&value) > bounds.max_json_depth {
        return None;
    }
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Levels of arrays and objects in a parsed document (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn model_optional(
    text: Option<&str>,
    bounds: &ContractBounds,
) -> Option<Option<Map<String, Value>>> {
    match text {
        None => Some(None),
        Some(text) => model_object(text, bounds).map(Some),
    }
}

fn model_decimal(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits =
        |s: &str, max: usize| (1..=max).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit());
    digits(whole, 18) && fraction.is_none_or(|f| digits(f, 12))
}

fn within(text: &str, bounds: &ContractBounds) -> bool {
    text.len() <= bounds.max_message_bytes
}

fn round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(value).expect("accepted output serialises");
    let back: T = serde_json::from_str(&json).expect("serialised output parses");
    assert_eq!(&back, value, "{json}");
}

fn refused<T: std::fmt::Debug>(result: &contract::Checked<T>) {
    if let Err(violation) = result {
        assert!(!violation.0.is_empty());
    }
}

fuzz_target!(|input: Input| {
    let bounds = ContractBounds {
        max_instance_id_bytes: usize::from(input.max_instance_id_bytes).max(1),
        max_credential_ttl: Duration::from_secs(u64::from(input.ttl_secs).max(1)),
        max_message_bytes: usize::from(input.max_message_bytes),
        max_json_bytes: usize::from(input.max_json_bytes).max(2),
        max_json_depth: usize::from(input.max_json_depth % 8).max(1),
    };
    let now_ms = EPOCH_2026_MS + u64::from(input.now_offset_ms);
    match input.output {
        Output::Error { code, message, raw } => {
            let raw = raw.map(|r| r.text());
            let parsed = model_optional(raw.as_deref(), &bounds);
            let accept =
                !message.trim().is_empty() && within(&message, &bounds) && parsed.is_some();
            let result = contract::adapter_error(
                guest::AdapterError {
                    code: code.into(),
                    message: message.clone(),
                    raw,
                },
                &bounds,
            );
            refused(&result);
            assert_eq!(result.is_ok(), accept, "{result:?}");
            if let Ok(error) = result {
                assert_eq!(error.error_code, ErrorCode::from(code));
                assert_eq!(error.message, message);
                assert_eq!(error.raw, parsed.flatten().map(Value::Object));
                round_trip(&error);
            }
        }
        Output::Provision {
            instance_id,
            connection,
            metadata,
            created,
            requested_key,
            echoed_key,
        } => {
            let echoed = match echoed_key {
                Echo::Same => requested_key.clone(),
                Echo::None => None,
                Echo::Other(key) => Some(key),
            };
            let connection = connection.text();
            let metadata = metadata.map(|m| m.text());
            let parsed_connection = model_object(&connection, &bounds);
            let parsed_metadata = model_optional(metadata.as_deref(), &bounds);
            let id_ok = !instance_id.is_empty()
                && instance_id.len() <= bounds.max_instance_id_bytes
                && !instance_id.chars().any(|c| c.is_control());
            let accept = id_ok
                && echoed == requested_key
                && parsed_connection.is_some()
                && parsed_metadata.is_some();
            let result = contract::provision_result(
                guest::ProvisionResult {
                    instance_id: instance_id.clone(),
                    connection,
                    metadata,
                    created,
                    idempotency_key: echoed,
                },
                requested_key.as_deref(),
                &bounds,
            );
            refused(&result);
            assert_eq!(result.is_ok(), accept, "{result:?}");
            if let Ok(result) = result {
                assert_eq!(result.instance_id, instance_id);
                assert_eq!(result.idempotency_key, requested_key);
                assert_eq!(Some(result.connection.clone()), parsed_connection);
                assert_eq!(Some(result.metadata.clone()), parsed_metadata);
                assert_eq!(result.created, created);
                round_trip(&result);
            }
        }
        Output::Status {
            status,
            error_code,
            message,
            progress,
            raw,
        } => {
            let status = Status::from(status);
            let raw = raw.map(|r| r.text());
            let parsed = model_optional(raw.as_deref(), &bounds);
            let progress = progress.map(|(current, total)| Progress { current, total });
            let accept = progress.is_none_or(|p| p.current <= p.total)
                && (error_code.is_none()
                    || status == Status::Failed
                    || status == Status::Cancelled)
                && message.as_deref().is_none_or(|m| within(m, &bounds))
                && parsed.is_some();
            let result = contract::status_detail(
                guest::StatusDetail {
                    status,
                    error_code: error_code.map(ErrorCode::from),
                    message: message.clone(),
                    progress,
                    raw,
                },
                &bounds,
            );
            refused(&result);
            assert_eq!(result.is_ok(), accept, "{result:?}");
            if let Ok(detail) = result {
                assert_eq!(detail.status, status);
                assert_eq!(detail.progress, progress);
                assert_eq!(detail.message, message);
                assert_eq!(Some(detail.raw.clone()), parsed);
                round_trip(&detail);
            }
        }
        Output::Ephemeral {
            values,
            expires_in_ms,
        } => {
            let expires_at_ms = now_ms.saturating_add_signed(expires_in_ms);
            let values = values.text();
            let parsed = model_object(&values, &bounds);
            let ttl_ms = bounds.max_credential_ttl.as_millis() as u64;
            let accept =
                expires_at_ms > now_ms && expires_at_ms - now_ms <= ttl_ms && parsed.is_some();
            let result = contract::credential_at(
                guest::Credential::Ephemeral {
                    values,
                    expires_at_ms,
                },
                &bounds,
                Duration::from_millis(now_ms),
            );
            refused(&result);
            assert_eq!(result.is_ok(), accept, "{result:?}");
            if let Ok(credential) = result {
                let Credential::Ephemeral {
                    values,
                    expires_at,
                    expires_at_ms: at,
                } = &credential
                else {
                    panic!("an ephemeral credential came back as {credential:?}");
                };
                assert_eq!(*at, expires_at_ms);
                assert_eq!(Some(values.clone()), parsed);
                let parsed_at = humantime::parse_rfc3339(expires_at).expect("RFC 3339 expiry");
                let since_epoch = parsed_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("after the epoch");
                assert_eq!(
                    since_epoch.as_millis() as u64,
                    expires_at_ms,
                    "{expires_at}"
                );
                round_trip(&credential);
            }
        }
        Output::Reference {
            manager,
            locator,
            version,
        } => {
            let accept = !locator.trim().is_empty()
                && within(&locator, &bounds)
                && version.as_ref().is_none_or(|v| within(v, &bounds));
            let result = contract::credential_at(
                guest::Credential::Reference {
                    manager: manager.into(),
                    locator: locator.clone(),
                    version: version.clone(),
                },
                &bounds,
                Duration::from_millis(now_ms),
            );
            refused(&result);
            assert_eq!(result.is_ok(), accept, "{result:?}");
            if let Ok(credential) = result {
                assert_eq!(
                    credential,
                    Credential::Reference {
                        manager: manager.into(),
                        locator,
                        version
                    }
                );
                round_trip(&credential);
            }
        }
        Output::Costs {
            currency,
            hourly,
            monthly,
            breakdown,
        } => {
            let (hourly, monthly) = (hourly.text(), monthly.text());
            let breakdown = breakdown.map(|b| b.text());
            let parsed = model_optional(breakdown.as_deref(), &bounds);
            let accept = currency.len() == 3
                && currency.bytes().all(|b| b.is_ascii_uppercase())
                && [&hourly, &monthly]
                    .iter()
                    .all(|a| model_decimal(a) && within(a, &bounds))
                && parsed.is_some();
            let result = contract::cost_estimate(
                guest::CostEstimate {
                    currency: currency.clone(),
                    hourly: hourly.clone(),
                    monthly: monthly.clone(),
                    breakdown,
                },
                &bounds,
            );
            refused(&result);
            assert_eq!(result.is_ok(), accept, "{result:?}");
            if let Ok(estimate) = result {
                assert_eq!(
                    (
                        estimate.currency.as_str(),
                        estimate.hourly.as_str(),
                        estimate.monthly.as_str()
                    ),
                    (currency.as_str(), hourly.as_str(), monthly.as_str())
                );
                assert_eq!(Some(estimate.breakdown.clone()), parsed);
                round_trip(&estimate);
            }
        }
    }
});
