//! Hostile adapter: burns CPU forever in every operation; the host must stop it with fuel.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct SpinLoop;

/// Count forever. `black_box` hides the counter from the optimizer, so the loop cannot be
/// removed or proven side-effect free.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        core::hint::black_box(&mut counter);
        counter = counter.wrapping_add(1);
    }
}

impl Adapter for SpinLoop {
    fn validate_config(_: &Config) -> Result<()> {
        spin()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        spin()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        spin()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        spin()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        spin()
    }
}

airlock_sdk::export!(SpinLoop);
