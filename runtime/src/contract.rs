//! The contract's shapes on the host side and the checks on guest output. Both live in
//! [`airlock_core::contract`], on plain mirrors of the WIT records, so that they can be
//! tested and fuzzed without wasmtime; this module only turns the bindings' types into
//! those mirrors and calls the checks.

pub use airlock_core::contract::{
    AdapterError, CostEstimate, Credential, ErrorCode, ErrorOrigin, LimitKind, Progress,
    ProvisionResult, SecretManager, Status, StatusDetail,
};
use airlock_core::contract::{Checked, guest};
pub(crate) use airlock_core::contract::{ContractBounds, ContractViolation};

use crate::bindings::{costs, wit};

impl From<wit::ErrorCode> for ErrorCode {
    fn from(code: wit::ErrorCode) -> Self {
        match code {
            wit::ErrorCode::Validation => ErrorCode::Validation,
            wit::ErrorCode::Retryable => ErrorCode::Retryable,
            wit::ErrorCode::Permanent => ErrorCode::Permanent,
            wit::ErrorCode::Auth => ErrorCode::Auth,
            wit::ErrorCode::Limit => ErrorCode::Limit,
            wit::ErrorCode::Internal => ErrorCode::Internal,
        }
    }
}

fn status(status: wit::Status) -> Status {
    match status {
        wit::Status::Pending => Status::Pending,
        wit::Status::Running => Status::Running,
        wit::Status::Success => Status::Success,
        wit::Status::Failed => Status::Failed,
        wit::Status::Cancelled => Status::Cancelled,
    }
}

fn manager(manager: wit::SecretManager) -> SecretManager {
    match manager {
        wit::SecretManager::Vault => SecretManager::Vault,
        wit::SecretManager::AwsSecretsManager => SecretManager::AwsSecretsManager,
        wit::SecretManager::GcpSecretManager => SecretManager::GcpSecretManager,
        wit::SecretManager::AzureKeyVault => SecretManager::AzureKeyVault,
    }
}

pub(crate) fn adapter_error(
    error: wit::AdapterError,
    bounds: &ContractBounds,
) -> Checked<AdapterError> {
    let wit::AdapterError { code, message, raw } = error;
    airlock_core::contract::adapter_error(
        guest::AdapterError {
            code: code.into(),
            message,
            raw,
        },
        bounds,
    )
}

pub(crate) fn provision_result(
    result: wit::ProvisionResult,
    requested_key: Option<&str>,
    bounds: &ContractBounds,
) -> Checked<ProvisionResult> {
    let wit::ProvisionResult {
        instance_id,
        connection,
        metadata,
        created,
        idempotency_key,
    } = result;
    airlock_core::contract::provision_result(
        guest::ProvisionResult {
            instance_id,
            connection,
            metadata,
            created,
            idempotency_key,
        },
        requested_key,
        bounds,
    )
}

pub(crate) fn status_detail(
    detail: wit::StatusDetail,
    bounds: &ContractBounds,
) -> Checked<StatusDetail> {
    let wit::StatusDetail {
        status: state,
        error_code,
        message,
        progress,
        raw,
    } = detail;
    airlock_core::contract::status_detail(
        guest::StatusDetail {
            status: status(state),
            error_code: error_code.map(ErrorCode::from),
            message,
            progress: progress.map(|p| Progress {
                current: p.current,
                total: p.total,
            }),
            raw,
        },
        bounds,
    )
}

pub(crate) fn credential(
    credential: wit::Credential,
    bounds: &ContractBounds,
) -> Checked<Credential> {
    let plain = match credential {
        wit::Credential::Ephemeral(c) => guest::Credential::Ephemeral {
            values: c.values,
            expires_at_ms: c.expires_at_ms,
        },
        wit::Credential::Reference(r) => guest::Credential::Reference {
            manager: manager(r.manager),
            locator: r.locator,
            version: r.version,
        },
    };
    airlock_core::contract::credential(plain, bounds)
}

pub(crate) fn cost_estimate(
    estimate: costs::CostEstimate,
    bounds: &ContractBounds,
) -> Checked<CostEstimate> {
    let costs::CostEstimate {
        currency,
        hourly,
        monthly,
        breakdown,
    } = estimate;
    airlock_core::contract::cost_estimate(
        guest::CostEstimate {
            currency,
            hourly,
            monthly,
            breakdown,
        },
        bounds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn bounds() -> ContractBounds {
        ContractBounds {
            max_instance_id_bytes: 256,
            max_credential_ttl: Duration::from_secs(3600),
            max_message_bytes: 64 * 1024,
            max_json_bytes: 64 * 1024,
            max_json_depth: 32,
        }
    }

    #[test]
    fn wit_records_reach_the_checks_field_for_field() {
        let result = wit::ProvisionResult {
            instance_id: "i-1".into(),
            connection: r#"{"host":"h"}"#.into(),
            metadata: Some(r#"{"tier":"small"}"#.into()),
            created: false,
            idempotency_key: Some("k".into()),
        };
        let checked = provision_result(result, Some("k"), &bounds()).unwrap();
        assert_eq!(
            (
                checked.instance_id.as_str(),
                checked.connection["host"].as_str(),
                checked.metadata.as_ref().map(|m| m["tier"].clone()),
                checked.created,
                checked.idempotency_key.as_deref(),
            ),
            ("i-1", Some("h"), Some("small".into()), false, Some("k"))
        );

        let detail = wit::StatusDetail {
            status: wit::Status::Failed,
            error_code: Some(wit::ErrorCode::Auth),
            message: Some("denied".into()),
            progress: Some(wit::Progress {
                current: 2,
                total: 4,
            }),
            raw: None,
        };
        let checked = status_detail(detail, &bounds()).unwrap();
        assert_eq!(
            (checked.status, checked.error_code, checked.progress),
            (
                Status::Failed,
                Some(ErrorCode::Auth),
                Some(Progress {
                    current: 2,
                    total: 4
                })
            )
        );

        let error = wit::AdapterError {
            code: wit::ErrorCode::Limit,
            message: " ".into(),
            raw: None,
        };
        assert_eq!(
            adapter_error(error, &bounds()).unwrap_err().0,
            "returned an error (LIMIT) with an empty message"
        );

        let reference = wit::Credential::Reference(wit::SecretReference {
            manager: wit::SecretManager::AzureKeyVault,
            locator: "https://v.vault.azure.net/secrets/db".into(),
            version: Some("3".into()),
        });
        assert_eq!(
            credential(reference, &bounds()).unwrap(),
            Credential::Reference {
                manager: SecretManager::AzureKeyVault,
                locator: "https://v.vault.azure.net/secrets/db".into(),
                version: Some("3".into()),
            }
        );
        let soon = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000;
        let ephemeral = wit::Credential::Ephemeral(wit::EphemeralCredential {
            values: r#"{"user":"u"}"#.into(),
            expires_at_ms: soon,
        });
        assert!(matches!(
            credential(ephemeral, &bounds()).unwrap(),
            Credential::Ephemeral { expires_at_ms, .. } if expires_at_ms == soon
        ));

        let estimate = costs::CostEstimate {
            currency: "EUR".into(),
            hourly: "0.12".into(),
            monthly: "87.60".into(),
            breakdown: Some("[]".into()),
        };
        assert_eq!(
            cost_estimate(estimate, &bounds()).unwrap_err().0,
            "`breakdown` must be a JSON object, got an array"
        );
    }
}
