//! Hostile adapter: allocates 64-byte boxes forever, keeping them all; the host must stop it at the memory limit.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct ManySmallAllocs;

/// Box 64-byte values forever, keeping every box alive, so the allocator asks the engine
/// for one more page every few dozen allocations.
fn hoard() -> ! {
    let mut boxes: Vec<Box<[u8; 64]>> = Vec::new();
    let mut n: u8 = 0;
    loop {
        n = n.wrapping_add(1);
        boxes.push(Box::new([n | 1; 64]));
        core::hint::black_box(&mut boxes);
    }
}

impl Adapter for ManySmallAllocs {
    fn validate_config(_: &Config) -> Result<()> {
        hoard()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        hoard()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        hoard()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        hoard()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        hoard()
    }
}

airlock_sdk::export!(ManySmallAllocs);
