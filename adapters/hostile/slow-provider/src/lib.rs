//! Hostile adapter: waits on a provider slower than the call's deadline; the deadline must bound the request.

use airlock_sdk::http::Request;
use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    Status, StatusDetail,
};

struct SlowProvider;

impl Adapter for SlowProvider {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        Ok(ProvisionResult::created("slow-1", Connection::new()).with_idempotency_key(key))
    }

    /// GETs `config.url` and waits as long as the host lets it.
    fn status(config: &Config, _: &str) -> Result<StatusDetail> {
        let response = Request::get(config.require_str("url")?).send()?;
        Ok(StatusDetail::new(Status::Running).with_message(format!("HTTP {}", response.status)))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(SlowProvider);
