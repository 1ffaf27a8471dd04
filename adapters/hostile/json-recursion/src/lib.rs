//! Hostile adapter: builds a JSON value nested 10 million levels deep, recursively; the host must contain the trap.

use airlock_sdk::{Adapter, Config, Credentials, Params, ProvisionResult, Result, StatusDetail};
use serde_json::Value;

struct JsonRecursion;

/// How deep the value is nested.
const DEPTH: u64 = 10_000_000;

/// `[[[…null…]]]`, `depth` arrays deep. Not a tail call: the array is built around the
/// result of the recursive call.
#[inline(never)]
fn nest(depth: u64) -> Value {
    if depth == 0 {
        return Value::Null;
    }
    Value::Array(vec![nest(depth - 1)])
}

fn build() -> ! {
    let value = nest(core::hint::black_box(DEPTH));
    core::hint::black_box(&value);
    unreachable!("a value nested {DEPTH} levels deep was built")
}

impl Adapter for JsonRecursion {
    fn validate_config(_: &Config) -> Result<()> {
        build()
    }
    fn create(_: &Config, _: &Params, _: Option<&str>) -> Result<ProvisionResult> {
        build()
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        build()
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        build()
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        build()
    }
}

airlock_sdk::export!(JsonRecursion);
