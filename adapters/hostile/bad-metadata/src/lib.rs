//! Hostile adapter: returns JSON documents of the wrong shape (`metadata` an array, `raw` not JSON); the host must refuse them.
//!
//! It skips the SDK (whose types only build JSON objects) and uses the raw bindings.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "airlock:adapter/adapter@0.1.0",
    generate_all,
});

use airlock::adapter::types::{
    AdapterError, Credential, ErrorCode, ProvisionResult, Status, StatusDetail,
};
use exports::airlock::adapter::contract::Guest;

struct BadMetadata;

impl Guest for BadMetadata {
    /// Honest, so the other operations can be reached.
    fn validate_config(_config: String) -> Result<(), AdapterError> {
        Ok(())
    }

    /// A valid id and connection, but `metadata` is a JSON array, not an object.
    fn create(
        _config: String,
        _params: String,
        idempotency_key: Option<String>,
    ) -> Result<ProvisionResult, AdapterError> {
        Ok(ProvisionResult {
            instance_id: "bad-metadata-1".to_owned(),
            connection: "{}".to_owned(),
            metadata: Some("[1,2]".to_owned()),
            created: true,
            idempotency_key,
        })
    }

    /// A plausible status whose `raw` is not JSON at all.
    fn status(_config: String, _instance_id: String) -> Result<StatusDetail, AdapterError> {
        Ok(StatusDetail {
            status: Status::Running,
            error_code: None,
            message: None,
            progress: None,
            raw: Some("not json".to_owned()),
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

export!(BadMetadata);
