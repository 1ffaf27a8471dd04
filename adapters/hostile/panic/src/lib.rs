//! Hostile adapter: panics in every operation; the host must turn the trap into INTERNAL.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct Panic;

/// The exact message every operation panics with; integration tests match on it.
const MESSAGE: &str = "hostile adapter panicked on purpose";

impl Adapter for Panic {
    fn validate_config(_: &Config) -> Result<()> {
        panic!("{MESSAGE}")
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        panic!("{MESSAGE}")
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        panic!("{MESSAGE}")
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        panic!("{MESSAGE}")
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        panic!("{MESSAGE}")
    }
}

airlock_sdk::export!(Panic);
