//! Hostile adapter: recurses without bound in every operation; the host must report the stack overflow trap.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct DeepRecursion;

/// Recurse until the wasm stack runs out. Not a tail call: the result of the recursive call
/// is mixed non-associatively with values computed before it, so neither LLVM's tail-call
/// nor its accumulator elimination can turn this into a loop. Every local is a plain
/// scalar (no address taken, no `black_box` here), so the frames live on the engine's wasm
/// stack rather than on the shadow stack in linear memory: the engine's stack guard trips
/// ("stack overflow"), not an out-of-bounds access at the bottom of linear memory.
#[inline(never)]
fn recurse(n: u64, stop: u64) -> u64 {
    if n == stop {
        return n; // never reached: `stop` is opaque and far away
    }
    // Values live across the call make each frame larger.
    let a = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = a.rotate_left(13) ^ n;
    let c = b.wrapping_add(a >> 7);
    let d = c ^ (b << 3);
    let r = recurse(n + 1, stop);
    (r.rotate_left(5) ^ a)
        .wrapping_mul(b | 1)
        .wrapping_add(c ^ d)
}

/// Start the recursion from values the optimizer cannot see through.
fn overflow() -> ! {
    let result = recurse(core::hint::black_box(0), core::hint::black_box(u64::MAX));
    // Unreachable in practice; keeps the result observable.
    core::hint::black_box(result);
    unreachable!("the recursion returned")
}

impl Adapter for DeepRecursion {
    fn validate_config(_: &Config) -> Result<()> {
        overflow()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        overflow()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        overflow()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        overflow()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        overflow()
    }
}

airlock_sdk::export!(DeepRecursion);
