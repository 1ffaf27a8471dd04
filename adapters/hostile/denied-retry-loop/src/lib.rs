//! Hostile adapter: retries a denied HTTP request (to the cloud metadata address) forever; the per-call request budget must stop it.

use airlock_sdk::http::{HttpError, Request};
use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail,
};

struct DeniedRetryLoop;

impl Adapter for DeniedRetryLoop {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        Ok(ProvisionResult::created("drl-1", Connection::new()).with_idempotency_key(key))
    }

    /// Asks for the metadata address again and again, shrugging off every denial; the first
    /// other error (the budget) is returned with `?`.
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        loop {
            match Request::get("http://169.254.169.254/").send() {
                Err(HttpError::Denied(_)) => continue,
                Err(other) => return Err(other.into()),
                Ok(response) => {
                    return Err(AdapterError::internal(format!(
                        "the metadata address answered HTTP {}",
                        response.status
                    )));
                }
            }
        }
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(DeniedRetryLoop);
