//! Hostile adapter: `create` returns a different instance id on every call, even for the same idempotency key; the host's record must stand.

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail, state,
};

struct VanishingId;

impl Adapter for VanishingId {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    /// A fresh id from a counter in `state`, ignoring the key (but echoing it, as the
    /// contract asks), and always claiming `created`.
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let n = state::get_json::<u64>("counter")?.unwrap_or(0) + 1;
        state::set_json("counter", &n, None)?;
        Ok(
            ProvisionResult::created(format!("vanish-{n}"), Connection::new())
                .with_idempotency_key(key),
        )
    }

    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Err(AdapterError::permanent("no such instance, it vanished"))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(VanishingId);
