//! Hostile adapter: sleeps in short steps forever, using almost no fuel; the host must stop it at the deadline.

use std::time::{Duration, SystemTime};

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct SlowUnderFuel;

/// Sleep 10 ms at a time and read the clock, forever: each step costs a few hundred units
/// of fuel and 10 ms of wall time, so only the deadline can stop it.
fn dawdle() -> ! {
    loop {
        core::hint::black_box(SystemTime::now());
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Adapter for SlowUnderFuel {
    fn validate_config(_: &Config) -> Result<()> {
        dawdle()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        dawdle()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        dawdle()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        dawdle()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        dawdle()
    }
}

airlock_sdk::export!(SlowUnderFuel);
