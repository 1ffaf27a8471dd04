//! The glue between the SDK's types and the generated bindings, and the [`export!`] macro.
//! Each exported function parses its JSON arguments once, calls the author's trait, and
//! turns the answer into the WIT shapes.

use serde_json::Value;

use crate::bindings::airlock::adapter::types as wit;
use crate::bindings::exports::airlock::adapter::contract;
use crate::contract::{
    Adapter, Credentials, ProvisionResult, SecretManager, Status, StatusDetail, epoch_millis,
};
use crate::error::{AdapterError, ErrorCode, Result};
use crate::json::{Config, Params, parse_document};

/// Export an adapter type: `airlock_sdk::export!(MyAdapter);`, once, at the crate root.
///
/// Exports the contract, and each optional interface whose SDK feature is on.
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        $crate::__private::__export_adapter!($ty with_types_in $crate::__private);
        $crate::__export_optional_lifecycle!($ty);
        $crate::__export_optional_costs!($ty);
        $crate::__export_optional_rotation!($ty);
    };
}

#[cfg(feature = "lifecycle")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_optional_lifecycle {
    ($ty:ident) => {
        $crate::__private::lifecycle::__export_lifecycle!($ty with_types_in $crate::__private::lifecycle);
    };
}
#[cfg(not(feature = "lifecycle"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_optional_lifecycle {
    ($ty:ident) => {};
}

#[cfg(feature = "costs")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_optional_costs {
    ($ty:ident) => {
        $crate::__private::costs::__export_costs!($ty with_types_in $crate::__private::costs);
    };
}
#[cfg(not(feature = "costs"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_optional_costs {
    ($ty:ident) => {};
}

#[cfg(feature = "rotation")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_optional_rotation {
    ($ty:ident) => {
        $crate::__private::rotation::__export_rotation!($ty with_types_in $crate::__private::rotation);
    };
}
#[cfg(not(feature = "rotation"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_optional_rotation {
    ($ty:ident) => {};
}

impl<T: Adapter> contract::Guest for T {
    fn validate_config(config: String) -> Result<(), wit::AdapterError> {
        with_config(&config, |config| T::validate_config(config))
    }

    fn create(
        config: String,
        params: String,
        idempotency_key: Option<String>,
    ) -> Result<wit::ProvisionResult, wit::AdapterError> {
        with_config(&config, |config| {
            let params = Params::new(parse_document(&params, "params")?);
            T::create(config, &params, idempotency_key.as_deref()).map(provision_result)
        })
    }

    fn status(config: String, instance_id: String) -> Result<wit::StatusDetail, wit::AdapterError> {
        with_config(&config, |config| {
            T::status(config, &instance_id).map(status_detail)
        })
    }

    fn destroy(config: String, instance_id: String) -> Result<(), wit::AdapterError> {
        with_config(&config, |config| T::destroy(config, &instance_id))
    }

    fn credentials(
        config: String,
        instance_id: String,
    ) -> Result<wit::Credential, wit::AdapterError> {
        with_config(&config, |config| {
            T::credentials(config, &instance_id).map(credentials)
        })
    }
}

#[cfg(feature = "lifecycle")]
impl<T: crate::Lifecycle> crate::bindings::lifecycle::exports::airlock::adapter::lifecycle::Guest
    for T
{
    fn pause(config: String, instance_id: String) -> Result<wit::StatusDetail, wit::AdapterError> {
        with_config(&config, |config| {
            T::pause(config, &instance_id).map(status_detail)
        })
    }

    fn resume(config: String, instance_id: String) -> Result<wit::StatusDetail, wit::AdapterError> {
        with_config(&config, |config| {
            T::resume(config, &instance_id).map(status_detail)
        })
    }
}

#[cfg(feature = "costs")]
impl<T: crate::Costs> crate::bindings::costs::exports::airlock::adapter::costs::Guest for T {
    fn estimate_costs(
        config: String,
        instance_id: String,
    ) -> Result<
        crate::bindings::costs::exports::airlock::adapter::costs::CostEstimate,
        wit::AdapterError,
    > {
        with_config(&config, |config| {
            T::estimate_costs(config, &instance_id).map(|estimate| {
                crate::bindings::costs::exports::airlock::adapter::costs::CostEstimate {
                    currency: estimate.currency,
                    hourly: estimate.hourly,
                    monthly: estimate.monthly,
                    breakdown: estimate.breakdown.as_ref().map(Value::to_string),
                }
            })
        })
    }
}

#[cfg(feature = "rotation")]
impl<T: crate::Rotation> crate::bindings::rotation::exports::airlock::adapter::rotation::Guest
    for T
{
    fn rotate_credentials(
        config: String,
        instance_id: String,
    ) -> Result<wit::Credential, wit::AdapterError> {
        with_config(&config, |config| {
            T::rotate_credentials(config, &instance_id).map(credentials)
        })
    }
}

/// Parse the config once, run the operation, and convert its error.
fn with_config<R>(
    config: &str,
    operation: impl FnOnce(&Config) -> Result<R>,
) -> Result<R, wit::AdapterError> {
    parse_document(config, "config")
        .map(Config::new)
        .and_then(|config| operation(&config))
        .map_err(adapter_error)
}

pub(crate) fn error_code(code: ErrorCode) -> wit::ErrorCode {
    match code {
        ErrorCode::Validation => wit::ErrorCode::Validation,
        ErrorCode::Retryable => wit::ErrorCode::Retryable,
        ErrorCode::Permanent => wit::ErrorCode::Permanent,
        ErrorCode::Auth => wit::ErrorCode::Auth,
        ErrorCode::Limit => wit::ErrorCode::Limit,
        ErrorCode::Internal => wit::ErrorCode::Internal,
    }
}

fn adapter_error(error: AdapterError) -> wit::AdapterError {
    wit::AdapterError {
        code: error_code(error.code),
        message: error.message,
        raw: error.raw.as_ref().map(Value::to_string),
    }
}

fn provision_result(result: ProvisionResult) -> wit::ProvisionResult {
    wit::ProvisionResult {
        instance_id: result.instance_id,
        connection: result.connection.into_value().to_string(),
        metadata: result.metadata.as_ref().map(Value::to_string),
        created: result.created,
        idempotency_key: result.idempotency_key,
    }
}

fn status_detail(detail: StatusDetail) -> wit::StatusDetail {
    wit::StatusDetail {
        status: match detail.status {
            Status::Pending => wit::Status::Pending,
            Status::Running => wit::Status::Running,
            Status::Success => wit::Status::Success,
            Status::Failed => wit::Status::Failed,
            Status::Cancelled => wit::Status::Cancelled,
        },
        error_code: detail.error_code.map(error_code),
        message: detail.message,
        progress: detail.progress.map(|p| wit::Progress {
            current: p.current,
            total: p.total,
        }),
        raw: detail.raw.as_ref().map(Value::to_string),
    }
}

fn credentials(credentials: Credentials) -> wit::Credential {
    match credentials {
        Credentials::Ephemeral { values, expires_at } => {
            wit::Credential::Ephemeral(wit::EphemeralCredential {
                values: values.to_string(),
                expires_at_ms: epoch_millis(expires_at),
            })
        }
        Credentials::Reference {
            manager,
            locator,
            version,
        } => wit::Credential::Reference(wit::SecretReference {
            manager: match manager {
                SecretManager::Vault => wit::SecretManager::Vault,
                SecretManager::AwsSecretsManager => wit::SecretManager::AwsSecretsManager,
                SecretManager::GcpSecretManager => wit::SecretManager::GcpSecretManager,
                SecretManager::AzureKeyVault => wit::SecretManager::AzureKeyVault,
            },
            locator,
            version,
        }),
    }
}
