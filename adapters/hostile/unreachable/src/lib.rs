//! Hostile adapter: executes the wasm `unreachable` instruction in every operation; the host must answer INTERNAL.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct Unreachable;

impl Adapter for Unreachable {
    fn validate_config(_: &Config) -> Result<()> {
        core::arch::wasm32::unreachable()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        core::arch::wasm32::unreachable()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        core::arch::wasm32::unreachable()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        core::arch::wasm32::unreachable()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        core::arch::wasm32::unreachable()
    }
}

airlock_sdk::export!(Unreachable);
