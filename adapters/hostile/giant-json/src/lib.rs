//! Hostile adapter: returns JSON documents past the policy's size and depth bounds; the host
//! must refuse each, naming the field, before it parses, stores or replays them.

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    Status, StatusDetail, Value, json,
};

struct GiantJson;

/// `{"pad": "xxxx…"}` of `bytes` bytes of padding.
fn padded(bytes: usize) -> Value {
    json!({ "pad": "x".repeat(core::hint::black_box(bytes)) })
}

/// `levels` levels of nesting: objects around arrays around objects …
fn nested(levels: usize, arrays: bool) -> Value {
    let mut value = json!({});
    for level in 1..levels {
        value = if arrays && level % 2 == 1 {
            json!([value])
        } else {
            json!({ "next": value })
        };
    }
    value
}

impl Adapter for GiantJson {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        Ok(ProvisionResult::created("giant-1", Connection::new())
            .with_metadata(padded(4 << 20))
            .with_idempotency_key(key))
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Ok(StatusDetail::new(Status::Running).with_raw(nested(100, true)))
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        Err(AdapterError::permanent("cannot destroy").with_raw(padded(100 << 10)))
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Ok(Credentials::ephemeral(
            nested(40, false),
            std::time::Duration::from_secs(60),
        ))
    }
}

airlock_sdk::export!(GiantJson);
