//! Hostile adapter: reads far beyond its linear memory through a raw pointer; the host must report the trap.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct OutOfBounds;

/// An address near the top of the 4 GiB wasm32 address space, far past any memory the
/// policy allows.
const FAR: usize = 0xFFFF_FFF0;

fn escape() -> ! {
    let address = core::hint::black_box(FAR);
    // SAFETY: none; reading outside linear memory is the attack. The engine must trap.
    let byte = unsafe { core::ptr::read_volatile(address as *const u8) };
    core::hint::black_box(byte);
    unreachable!("read outside linear memory")
}

impl Adapter for OutOfBounds {
    fn validate_config(_: &Config) -> Result<()> {
        escape()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        escape()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        escape()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        escape()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        escape()
    }
}

airlock_sdk::export!(OutOfBounds);
