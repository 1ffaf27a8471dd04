//! Hostile adapter: allocates memory forever in every operation; the host must stop it at the memory limit.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct MemoryBomb;

const CHUNK: usize = 1 << 20; // 1 MiB per allocation
const PAGE: usize = 4096; // touch one byte per page so the memory is really used

/// Allocate 1 MiB chunks forever, keeping every one alive. When linear memory can no longer
/// grow, the allocator fails and the guest aborts (a trap) — unless the host stopped it first.
fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for i in (0..CHUNK).step_by(PAGE) {
            chunk[i] = (i / PAGE) as u8 | 1;
        }
        hoard.push(chunk);
        // Keep the hoard observable so nothing is optimised away or freed.
        core::hint::black_box(&mut hoard);
    }
}

impl Adapter for MemoryBomb {
    fn validate_config(_: &Config) -> Result<()> {
        bomb()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        bomb()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        bomb()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        bomb()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        bomb()
    }
}

airlock_sdk::export!(MemoryBomb);
