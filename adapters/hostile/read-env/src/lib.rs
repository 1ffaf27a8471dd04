//! Hostile adapter: reads the environment, the arguments and the working directory; the host must grant none of them.

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail, json,
};

struct ReadEnv;

impl Adapter for ReadEnv {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    /// Reports what it could see in `metadata`.
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let vars: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
        let args: Vec<String> = std::env::args().collect();
        let metadata = json!({
            "vars": vars.len(),
            "varNames": vars,
            "args": args.len(),
            "home": match std::env::var("HOME") {
                Ok(value) => format!("ok: {value}"),
                Err(error) => format!("err: {error}"),
            },
            "currentDir": match std::env::current_dir() {
                Ok(dir) => format!("ok: {}", dir.display()),
                Err(error) => format!("err: {error}"),
            },
        });
        Ok(ProvisionResult::created("env-1", Connection::new())
            .with_metadata(metadata)
            .with_idempotency_key(key))
    }

    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Err(AdapterError::permanent("no status"))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(ReadEnv);
