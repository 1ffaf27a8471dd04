//! Benchmark adapter: every operation answers a constant without touching a capability,
//! so a call to it costs what the runtime costs (instance, limits, policy, receipt, JSON
//! mapping) and almost nothing else. `cargo bench -p airlock-cli --bench compare` times its
//! `status` against the bare wasmtime floor.

use airlock_sdk::{
    Adapter, Config, Connection, Credentials, Params, ProvisionResult, Result, Status,
    StatusDetail, json,
};
use std::time::Duration;

/// The adapter. It keeps nothing and calls nothing.
pub struct Constant;

/// The one instance this adapter pretends to have.
const INSTANCE_ID: &str = "constant-1";

impl Adapter for Constant {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        Ok(
            ProvisionResult::existing(INSTANCE_ID, Connection::new().with("port", 5432))
                .with_idempotency_key(key),
        )
    }

    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Ok(StatusDetail::new(Status::Success)
            .with_progress(4, 4)
            .with_message("ready"))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Ok(Credentials::ephemeral(
            json!({ "token": "constant" }),
            Duration::from_secs(60),
        ))
    }
}

airlock_sdk::export!(Constant);
