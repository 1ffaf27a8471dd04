//! Hostile adapter: returns bytes that are not UTF-8 where the contract expects text; the host must refuse them.
//!
//! It skips the SDK and uses the raw bindings, building the strings with
//! `String::from_utf8_unchecked` so they cross the component boundary unvalidated.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "airlock:adapter/adapter@0.1.0",
    generate_all,
});

use airlock::adapter::types::{AdapterError, Credential, ErrorCode, ProvisionResult, StatusDetail};
use exports::airlock::adapter::contract::Guest;

struct NonUtf8;

/// `0xff 0xfe 'x'`: never valid UTF-8.
fn not_utf8() -> String {
    // SAFETY: deliberately not UTF-8; this adapter exists to hand the host an invalid
    // string. The guest itself never reads it as text.
    unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe, b'x']) }
}

impl Guest for NonUtf8 {
    /// Honest, so the other operations can be reached.
    fn validate_config(_config: String) -> Result<(), AdapterError> {
        Ok(())
    }

    /// The instance id is not UTF-8.
    fn create(
        _config: String,
        _params: String,
        idempotency_key: Option<String>,
    ) -> Result<ProvisionResult, AdapterError> {
        Ok(ProvisionResult {
            instance_id: not_utf8(),
            connection: "{}".to_owned(),
            metadata: None,
            created: true,
            idempotency_key,
        })
    }

    /// The error message is not UTF-8.
    fn status(_config: String, _instance_id: String) -> Result<StatusDetail, AdapterError> {
        Err(AdapterError {
            code: ErrorCode::Permanent,
            message: not_utf8(),
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

export!(NonUtf8);
