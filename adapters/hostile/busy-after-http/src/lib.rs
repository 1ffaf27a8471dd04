//! Attacks the CPU limit after a successful HTTP call: one allowed request, then busy work
//! forever.

use airlock_sdk::http::Request;
use airlock_sdk::{
    Adapter, AdapterError, Config, Credentials, Params, ProvisionResult, Result, StatusDetail,
};

struct BusyAfterHttp;

impl Adapter for BusyAfterHttp {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        Err(AdapterError::permanent("create is not the attack"))
    }

    fn status(config: &Config, _: &str) -> Result<StatusDetail> {
        let response = Request::get(config.require_str("url")?).send()?;
        let mut counter = u64::from(response.status);
        loop {
            counter =
                core::hint::black_box(counter.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(BusyAfterHttp);
