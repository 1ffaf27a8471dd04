//! Hostile adapter: builds a valid result, then aborts before returning it; the host must answer INTERNAL.

use airlock_sdk::{
    Adapter, Config, Connection, Credentials, Params, ProvisionResult, Result, Status, StatusDetail,
};

struct AbortMidResult;

/// Keep the half-built result observable, then abort the process (a wasm trap).
fn abort_with<T>(partial: T) -> ! {
    core::hint::black_box(&partial);
    std::process::abort()
}

impl Adapter for AbortMidResult {
    fn validate_config(_: &Config) -> Result<()> {
        abort_with(())
    }
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let connection = Connection::new()
            .with("host", "db.example")
            .with("port", 5432);
        abort_with(ProvisionResult::created("half-built", connection).with_idempotency_key(key))
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        abort_with(
            StatusDetail::new(Status::Running)
                .with_progress(1, 2)
                .with_message("half built"),
        )
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        abort_with(())
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        abort_with(Credentials::vault("secret/half-built"))
    }
}

airlock_sdk::export!(AbortMidResult);
