//! The contract's shapes and the traits an adapter implements.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::{ErrorCode, Result};
use crate::json::{Config, Connection, Params};

/// The five operations every adapter implements. Each call runs in a fresh instance, so
/// these are associated functions: there is no `self` to keep anything in. Keep what must
/// outlive a call in [`crate::state`].
pub trait Adapter {
    /// Pre-flight check of a provider config. Return [`crate::AdapterError::validation`]
    /// naming the bad field.
    fn validate_config(config: &Config) -> Result<()>;

    /// Provision a resource. With an `idempotency_key` seen before, return the same
    /// `instance_id` with `created == false`, and echo the key.
    fn create(
        config: &Config,
        params: &Params,
        idempotency_key: Option<&str>,
    ) -> Result<ProvisionResult>;

    /// Structured status and progress. Must not change anything.
    fn status(config: &Config, instance_id: &str) -> Result<StatusDetail>;

    /// Tear down. Destroying an already destroyed resource succeeds.
    fn destroy(config: &Config, instance_id: &str) -> Result<()>;

    /// Short-lived or referenced credentials; never long-lived plaintext.
    fn credentials(config: &Config, instance_id: &str) -> Result<Credentials>;
}

/// Optional (feature `lifecycle`): pause and resume.
pub trait Lifecycle: Adapter {
    /// Pause the resource; return its status afterwards.
    fn pause(config: &Config, instance_id: &str) -> Result<StatusDetail>;
    /// Resume a paused resource; return its status afterwards.
    fn resume(config: &Config, instance_id: &str) -> Result<StatusDetail>;
}

/// Optional (feature `costs`): cost estimates.
pub trait Costs: Adapter {
    /// What the resource costs to run.
    fn estimate_costs(config: &Config, instance_id: &str) -> Result<CostEstimate>;
}

/// Optional (feature `rotation`): credential rotation.
pub trait Rotation: Adapter {
    /// Replace the resource's credentials and return the new ones.
    fn rotate_credentials(config: &Config, instance_id: &str) -> Result<Credentials>;
}

/// What `create` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionResult {
    /// The provider's identifier of the resource (1 to 256 bytes).
    pub instance_id: String,
    /// How to reach the resource.
    pub connection: Connection,
    /// Optional extra detail; must be a JSON object.
    pub metadata: Option<Value>,
    /// True when this call made the resource.
    pub created: bool,
    /// The idempotency key, echoed.
    pub idempotency_key: Option<String>,
}

impl ProvisionResult {
    /// A freshly created resource.
    pub fn created(instance_id: impl Into<String>, connection: Connection) -> Self {
        ProvisionResult {
            instance_id: instance_id.into(),
            connection,
            metadata: None,
            created: true,
            idempotency_key: None,
        }
    }

    /// An existing resource returned for a repeated idempotency key.
    pub fn existing(instance_id: impl Into<String>, connection: Connection) -> Self {
        ProvisionResult {
            created: false,
            ..Self::created(instance_id, connection)
        }
    }

    /// Attach metadata (a JSON object).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Echo the idempotency key.
    pub fn with_idempotency_key(mut self, key: Option<&str>) -> Self {
        self.idempotency_key = key.map(str::to_owned);
        self
    }
}

/// Where a resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Accepted, not started.
    Pending,
    /// Being provisioned or changed.
    Running,
    /// Ready.
    Success,
    /// Failed; see the error code and message.
    Failed,
    /// Cancelled or torn down.
    Cancelled,
}

/// How far a long operation has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Steps done; never more than `total`.
    pub current: u64,
    /// Steps in all.
    pub total: u64,
}

/// What `status` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusDetail {
    /// The status.
    pub status: Status,
    /// With `Failed`: the failure's category.
    pub error_code: Option<ErrorCode>,
    /// A message for a person.
    pub message: Option<String>,
    /// Progress, for progress bars.
    pub progress: Option<Progress>,
    /// Provider detail; must be a JSON object.
    pub raw: Option<Value>,
}

impl StatusDetail {
    /// A status with nothing else.
    pub fn new(status: Status) -> Self {
        StatusDetail {
            status,
            error_code: None,
            message: None,
            progress: None,
            raw: None,
        }
    }

    /// A failed status with its error category and message.
    pub fn failed(code: ErrorCode, message: impl Into<String>) -> Self {
        StatusDetail {
            error_code: Some(code),
            message: Some(message.into()),
            ..Self::new(Status::Failed)
        }
    }

    /// Attach progress; `current` is clamped to `total`.
    pub fn with_progress(mut self, current: u64, total: u64) -> Self {
        self.progress = Some(Progress {
            current: current.min(total),
            total,
        });
        self
    }

    /// Attach a message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Attach provider detail (a JSON object).
    pub fn with_raw(mut self, raw: Value) -> Self {
        self.raw = Some(raw);
        self
    }
}

/// Which secret manager a [`Credentials::Reference`] points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretManager {
    /// HashiCorp Vault (locator: a path).
    Vault,
    /// AWS Secrets Manager (locator: an ARN).
    AwsSecretsManager,
    /// Google Secret Manager (locator: a resource name).
    GcpSecretManager,
    /// Azure Key Vault (locator: a secret identifier URL).
    AzureKeyVault,
}

/// What `credentials` returns: short-lived, or a reference. Long-lived plaintext has no
/// representation.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// A credential that expires.
    Ephemeral {
        /// Its fields (user name, token, …), a JSON object.
        values: Value,
        /// When it stops working.
        expires_at: SystemTime,
    },
    /// A pointer into a secret manager.
    Reference {
        /// Which manager.
        manager: SecretManager,
        /// Where in it.
        locator: String,
        /// Which version, if versioned.
        version: Option<String>,
    },
}

impl Credentials {
    /// An ephemeral credential valid for `ttl` from now.
    pub fn ephemeral(values: Value, ttl: Duration) -> Self {
        Credentials::Ephemeral {
            values,
            expires_at: SystemTime::now() + ttl,
        }
    }

    /// A HashiCorp Vault path.
    pub fn vault(path: impl Into<String>) -> Self {
        Credentials::Reference {
            manager: SecretManager::Vault,
            locator: path.into(),
            version: None,
        }
    }

    /// An AWS Secrets Manager ARN.
    pub fn aws_secret(arn: impl Into<String>) -> Self {
        Credentials::Reference {
            manager: SecretManager::AwsSecretsManager,
            locator: arn.into(),
            version: None,
        }
    }
}

/// A cost estimate. Amounts are decimal strings so money never passes through a float.
#[derive(Debug, Clone, PartialEq)]
pub struct CostEstimate {
    /// ISO 4217 code, such as `USD`.
    pub currency: String,
    /// Per hour, such as `"0.25"`.
    pub hourly: String,
    /// Per month, such as `"182.50"`.
    pub monthly: String,
    /// Optional per-component detail, a JSON object.
    pub breakdown: Option<Value>,
}

/// Milliseconds since the Unix epoch, for the wire.
pub(crate) fn epoch_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
