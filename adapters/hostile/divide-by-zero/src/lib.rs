//! Hostile adapter: divides by zero (a Rust panic, or a raw wasm trap in `destroy`); the host must answer INTERNAL.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};

struct DivideByZero;

/// `10 / 0` with a zero the optimizer cannot see: Rust's check panics
/// ("attempt to divide by zero"), which aborts the guest.
fn checked() -> ! {
    let divisor = core::hint::black_box(0u32);
    let quotient = 10 / divisor;
    core::hint::black_box(quotient);
    unreachable!("divided by zero")
}

/// `10 / 0` without Rust's check: the promise that the divisor is non-zero removes it, so
/// the engine runs `i32.div_u` by zero and traps.
fn raw() -> ! {
    let divisor = core::hint::black_box(0u32);
    // SAFETY: this is false on purpose; the point is the engine's trap. The divisor is
    // opaque, so the compiler cannot exploit the promise beyond dropping the check.
    unsafe { core::hint::assert_unchecked(divisor != 0) };
    let quotient = 10 / divisor;
    core::hint::black_box(quotient);
    unreachable!("divided by zero")
}

impl Adapter for DivideByZero {
    fn validate_config(_: &Config) -> Result<()> {
        checked()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        checked()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        checked()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        raw()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        checked()
    }
}

airlock_sdk::export!(DivideByZero);
