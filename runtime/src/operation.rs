//! What a caller asks of an adapter ([`Operation`]) and what comes back ([`Output`],
//! [`Invocation`], [`Receipt`]).

use serde::Serialize;
use serde_json::{Value, json};

use crate::capabilities::log::LogRecord;
use crate::capabilities::progress::ProgressReport;
use crate::contract::{
    AdapterError, CostEstimate, Credential, ErrorCode, LimitKind, ProvisionResult, StatusDetail,
};

/// An operation of the contract, with its arguments (the provider config is passed
/// beside it, to every operation).
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `validate-config`.
    ValidateConfig,
    /// `create`, with its params (a JSON object) and optional idempotency key.
    Create {
        /// The create parameters.
        params: Value,
        /// The idempotency key.
        idempotency_key: Option<String>,
    },
    /// `status`.
    Status {
        /// Which resource.
        instance_id: String,
    },
    /// `destroy`.
    Destroy {
        /// Which resource.
        instance_id: String,
    },
    /// `credentials`.
    Credentials {
        /// Which resource.
        instance_id: String,
    },
    /// Optional `pause` (interface `lifecycle`).
    Pause {
        /// Which resource.
        instance_id: String,
    },
    /// Optional `resume` (interface `lifecycle`).
    Resume {
        /// Which resource.
        instance_id: String,
    },
    /// Optional `estimate-costs` (interface `costs`).
    EstimateCosts {
        /// Which resource.
        instance_id: String,
    },
    /// Optional `rotate-credentials` (interface `rotation`).
    RotateCredentials {
        /// Which resource.
        instance_id: String,
    },
}

/// The operation names the CLI accepts, in the contract's spelling.
pub const OPERATION_NAMES: [&str; 9] = [
    "validate-config",
    "create",
    "status",
    "destroy",
    "credentials",
    "pause",
    "resume",
    "estimate-costs",
    "rotate-credentials",
];

impl Operation {
    /// The operation's WIT name.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::ValidateConfig => "validate-config",
            Operation::Create { .. } => "create",
            Operation::Status { .. } => "status",
            Operation::Destroy { .. } => "destroy",
            Operation::Credentials { .. } => "credentials",
            Operation::Pause { .. } => "pause",
            Operation::Resume { .. } => "resume",
            Operation::EstimateCosts { .. } => "estimate-costs",
            Operation::RotateCredentials { .. } => "rotate-credentials",
        }
    }

    /// Build an operation from its name and the arguments a command line gives.
    pub fn from_parts(
        name: &str,
        instance_id: Option<String>,
        params: Option<Value>,
        idempotency_key: Option<String>,
    ) -> Result<Operation, String> {
        let instance = |op: &str| {
            instance_id
                .clone()
                .ok_or_else(|| format!("`{op}` needs an instance id (--instance ID)"))
        };
        Ok(match name {
            "validate-config" => Operation::ValidateConfig,
            "create" => Operation::Create {
                params: params.unwrap_or_else(|| json!({})),
                idempotency_key,
            },
            "status" => Operation::Status {
                instance_id: instance(name)?,
            },
            "destroy" => Operation::Destroy {
                instance_id: instance(name)?,
            },
            "credentials" => Operation::Credentials {
                instance_id: instance(name)?,
            },
            "pause" => Operation::Pause {
                instance_id: instance(name)?,
            },
            "resume" => Operation::Resume {
                instance_id: instance(name)?,
            },
            "estimate-costs" => Operation::EstimateCosts {
                instance_id: instance(name)?,
            },
            "rotate-credentials" => Operation::RotateCredentials {
                instance_id: instance(name)?,
            },
            other => {
                return Err(format!(
                    "unknown operation `{other}`; expected one of: {}",
                    OPERATION_NAMES.join(", ")
                ));
            }
        })
    }

    pub(crate) fn instance_id(&self) -> Option<&str> {
        match self {
            Operation::ValidateConfig | Operation::Create { .. } => None,
            Operation::Status { instance_id }
            | Operation::Destroy { instance_id }
            | Operation::Credentials { instance_id }
            | Operation::Pause { instance_id }
            | Operation::Resume { instance_id }
            | Operation::EstimateCosts { instance_id }
            | Operation::RotateCredentials { instance_id } => Some(instance_id),
        }
    }
}

/// What a successful operation returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// `validate-config` accepted the config.
    Valid,
    /// `create` returned a resource.
    Provisioned(ProvisionResult),
    /// `status`, `pause` or `resume` returned a status.
    Status(StatusDetail),
    /// `destroy` succeeded.
    Destroyed {
        /// The resource.
        instance_id: String,
    },
    /// `credentials` or `rotate-credentials` returned a credential.
    Credential(Credential),
    /// `estimate-costs` returned an estimate.
    CostEstimate(CostEstimate),
}

impl Output {
    /// The output in the seed's JSON shape.
    pub fn to_json(&self) -> Value {
        let value = match self {
            Output::Valid => Ok(json!({ "valid": true })),
            Output::Provisioned(r) => serde_json::to_value(r),
            Output::Status(s) => serde_json::to_value(s),
            Output::Destroyed { instance_id } => {
                Ok(json!({ "destroyed": true, "instanceId": instance_id }))
            }
            Output::Credential(c) => serde_json::to_value(c),
            Output::CostEstimate(c) => serde_json::to_value(c),
        };
        value.unwrap_or_else(|e| json!({ "serializationError": e.to_string() }))
    }
}

/// What one call cost and what stopped it, if anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The adapter's name.
    pub adapter: String,
    /// The operation.
    pub operation: &'static str,
    /// Wall time of the call, guest and host imports together, in microseconds.
    pub wall_time_us: u64,
    /// Fuel the guest burned.
    pub fuel_consumed: u64,
    /// The fuel limit.
    pub fuel_limit: u64,
    /// Highest linear memory of the instance, in bytes.
    pub memory_peak_bytes: u64,
    /// The memory limit, in bytes.
    pub memory_limit_bytes: u64,
    /// The deadline, in milliseconds.
    pub deadline_ms: u64,
    /// The limit that stopped the call, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_hit: Option<LimitKind>,
    /// The error code, if the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// Whether a fresh instance was created (false when the runtime refused the call first).
    pub instantiated: bool,
    /// Attempts made (more than one only with a retry policy).
    pub attempts: u32,
    /// What the idempotency layer did: `claimed` (first run of a key), `resumed` (took over
    /// a key a crashed or stalled call left running), `replayed` (answered from the record,
    /// no guest), `fenced` (the guest ran, but another call took the key over before this
    /// one could record: the answer is that call's record, or `RETRYABLE` if it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<&'static str>,
    /// Secret values (in any encoding) the leak guard replaced in the guest's output, or
    /// found in a result it refused.
    pub redactions: u32,
    /// Times the guest read a secret's value through `reveal`.
    pub secrets_revealed: u32,
    /// State operations performed.
    pub state_ops: u32,
    /// Of those, the ones that wrote (set, insert-new, delete).
    pub state_writes: u32,
    /// HTTP requests attempted.
    pub http_requests: u32,
    /// Log records kept, and dropped past the limit.
    pub log_records: u32,
    /// Log records dropped.
    pub logs_dropped: u32,
    /// Progress reports dropped (invalid or past the limit).
    pub progress_dropped: u32,
    /// Guest stdout and stderr bytes kept.
    pub stdio_bytes: u64,
    /// Guest stdout and stderr bytes dropped past the limit.
    pub stdio_dropped_bytes: u64,
}

/// The full outcome of one call: the result, its receipt, and what the guest said.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The operation's result.
    pub result: Result<Output, AdapterError>,
    /// What the call cost.
    pub receipt: Receipt,
    /// The guest's log records.
    pub logs: Vec<LogRecord>,
    /// The guest's progress reports.
    pub progress: Vec<ProgressReport>,
    /// Guest stdout, as kept.
    pub stdout: String,
    /// Guest stderr, as kept.
    pub stderr: String,
}
