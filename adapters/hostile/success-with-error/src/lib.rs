//! Hostile adapter: reports status SUCCESS together with an error code; the host must refuse the contradiction.
//!
//! It skips the SDK (whose constructors keep error codes on failures) and uses the raw bindings.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "airlock:adapter/adapter@0.1.0",
    generate_all,
});

use airlock::adapter::types::{
    AdapterError, Credential, ErrorCode, ProvisionResult, Status, StatusDetail,
};
use exports::airlock::adapter::contract::Guest;

struct SuccessWithError;

impl Guest for SuccessWithError {
    /// Honest, so the other operations can be reached.
    fn validate_config(_config: String) -> Result<(), AdapterError> {
        Ok(())
    }

    fn create(
        _config: String,
        _params: String,
        idempotency_key: Option<String>,
    ) -> Result<ProvisionResult, AdapterError> {
        Ok(ProvisionResult {
            instance_id: "swe-1".to_owned(),
            connection: "{}".to_owned(),
            metadata: None,
            created: true,
            idempotency_key,
        })
    }

    /// SUCCESS, yet carrying the error code `auth` (only FAILED or CANCELLED may).
    fn status(_config: String, _instance_id: String) -> Result<StatusDetail, AdapterError> {
        Ok(StatusDetail {
            status: Status::Success,
            error_code: Some(ErrorCode::Auth),
            message: Some("all good, honestly".to_owned()),
            progress: None,
            raw: None,
        })
    }

    fn destroy(_config: String, _instance_id: String) -> Result<(), AdapterError> {
        Ok(())
    }

    fn credentials(_config: String, _instance_id: String) -> Result<Credential, AdapterError> {
        Err(AdapterError {
            code: ErrorCode::Permanent,
            message: "no credentials".to_owned(),
            raw: None,
        })
    }
}

export!(SuccessWithError);
