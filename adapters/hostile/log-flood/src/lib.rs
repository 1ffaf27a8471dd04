//! Hostile adapter: logs 100,000 lines, then succeeds; the host must keep its record limit and count the rest.

use airlock_sdk::{
    Adapter, Config, Connection, Credentials, Params, ProvisionResult, Result, Status,
    StatusDetail, log,
};

struct LogFlood;

/// How many lines every operation logs.
const LINES: u32 = 100_000;

fn flood() {
    for _ in 0..core::hint::black_box(LINES) {
        log::info("flood");
    }
}

impl Adapter for LogFlood {
    fn validate_config(_: &Config) -> Result<()> {
        flood();
        Ok(())
    }
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        flood();
        Ok(ProvisionResult::created("log-flood", Connection::new()).with_idempotency_key(key))
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        flood();
        Ok(StatusDetail::new(Status::Success))
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        flood();
        Ok(())
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        flood();
        Ok(Credentials::vault("secret/log-flood"))
    }
}

airlock_sdk::export!(LogFlood);
