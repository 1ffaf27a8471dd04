//! Hostile adapter: logs one 8 MiB line, then succeeds; the host must cut the line and keep the call.

use airlock_sdk::{
    Adapter, Config, Connection, Credentials, Params, ProvisionResult, Result, Status,
    StatusDetail, log,
};

struct GiantLogLine;

/// One 8 MiB log line.
fn shout() {
    log::info(&"L".repeat(core::hint::black_box(8 << 20)));
}

impl Adapter for GiantLogLine {
    fn validate_config(_: &Config) -> Result<()> {
        shout();
        Ok(())
    }
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        shout();
        Ok(ProvisionResult::created("giant-log", Connection::new()).with_idempotency_key(key))
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        shout();
        Ok(StatusDetail::new(Status::Success))
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        shout();
        Ok(())
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        shout();
        Ok(Credentials::vault("secret/giant-log"))
    }
}

airlock_sdk::export!(GiantLogLine);
