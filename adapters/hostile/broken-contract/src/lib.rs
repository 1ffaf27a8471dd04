//! Hostile adapter: answers every operation with output that breaks the contract; the host's checks must refuse it.
//!
//! It skips the SDK (whose types make these lies hard to tell) and uses the raw bindings.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "airlock:adapter/adapter@0.1.0",
    generate_all,
});

use airlock::adapter::types::{
    AdapterError, Credential, EphemeralCredential, ErrorCode, Progress, ProvisionResult, Status,
    StatusDetail,
};
use exports::airlock::adapter::contract::Guest;

struct Broken;

impl Guest for Broken {
    /// Honest: accepts any config, so the other operations can be reached.
    fn validate_config(_config: String) -> Result<(), AdapterError> {
        Ok(())
    }

    /// `connection` is not JSON; with `"emptyId":true` in params the instance id is empty,
    /// with `"hugeId":true` it is 1 MiB long (the contract allows 1 to 256 bytes).
    fn create(
        _config: String,
        params: String,
        idempotency_key: Option<String>,
    ) -> Result<ProvisionResult, AdapterError> {
        let instance_id = if params.contains("\"emptyId\":true") {
            String::new()
        } else if params.contains("\"hugeId\":true") {
            "x".repeat(1 << 20)
        } else {
            "broken-1".to_owned()
        };
        Ok(ProvisionResult {
            instance_id,
            connection: "{not json".to_owned(),
            metadata: None,
            created: true,
            idempotency_key,
        })
    }

    /// Progress past its total (`current <= total` is required).
    fn status(_config: String, _instance_id: String) -> Result<StatusDetail, AdapterError> {
        Ok(StatusDetail {
            status: Status::Running,
            error_code: None,
            message: None,
            progress: Some(Progress {
                current: 7,
                total: 3,
            }),
            raw: None,
        })
    }

    /// An error with an empty message (messages must not be empty).
    fn destroy(_config: String, _instance_id: String) -> Result<(), AdapterError> {
        Err(AdapterError {
            code: ErrorCode::Internal,
            message: String::new(),
            raw: None,
        })
    }

    /// A credential that expired in 1970 (expiry must be in the future).
    fn credentials(_config: String, _instance_id: String) -> Result<Credential, AdapterError> {
        Ok(Credential::Ephemeral(EphemeralCredential {
            values: r#"{"token":"t"}"#.to_owned(),
            expires_at_ms: 1000,
        }))
    }
}

export!(Broken);
