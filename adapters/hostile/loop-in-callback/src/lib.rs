//! Hostile adapter: loops forever calling host imports (log, progress); the host must stop it with fuel or the deadline.

use airlock_sdk::{
    Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail, log, progress,
};

struct LoopInCallback;

/// Call the `log` and `progress` imports forever. Every iteration crosses into the host,
/// so most of the time is spent outside guest code.
fn chatter() -> ! {
    let mut step: u64 = 0;
    loop {
        log::debug("x");
        progress::report(step % 10, 10, None);
        step = core::hint::black_box(step.wrapping_add(1));
    }
}

impl Adapter for LoopInCallback {
    fn validate_config(_: &Config) -> Result<()> {
        chatter()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        chatter()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        chatter()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        chatter()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        chatter()
    }
}

airlock_sdk::export!(LoopInCallback);
