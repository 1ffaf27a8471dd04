//! Hostile adapter: returns 48 MiB strings as its output; the host must refuse them (contract or memory limit).

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    Status, StatusDetail,
};

struct GiantOutput;

/// 48 MiB of printable text.
fn giant() -> String {
    "i".repeat(core::hint::black_box(48 << 20))
}

impl Adapter for GiantOutput {
    fn validate_config(_: &Config) -> Result<()> {
        Err(AdapterError::validation(giant()))
    }
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        Ok(ProvisionResult::created(giant(), Connection::new()).with_idempotency_key(key))
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Ok(StatusDetail::new(Status::Running).with_message(giant()))
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        Err(AdapterError::permanent(giant()))
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent(giant()))
    }
}

airlock_sdk::export!(GiantOutput);
