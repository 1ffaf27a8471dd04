//! Hostile adapter: tries to read and write files through WASI; with no preopened directories every attempt must fail.

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail, json,
};

struct ReadFiles;

fn outcome<T>(result: std::io::Result<T>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => format!("ok: {}", ok(value)),
        Err(error) => format!("err: {error}"),
    }
}

fn listing(dir: std::fs::ReadDir) -> String {
    let names: Vec<String> = dir
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.join(",")
}

impl Adapter for ReadFiles {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    /// Reports each attempt in `metadata`: `ok: …` with what it got, or `err: …`.
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let metadata = json!({
            "passwd": outcome(std::fs::read_to_string("/etc/passwd"), |s| format!("{} bytes", s.len())),
            "root": outcome(std::fs::read_dir("/"), listing),
            "cwd": outcome(std::fs::read_dir("."), listing),
            "write": outcome(std::fs::write("/tmp/airlock-escape", b"x"), |()| "written".to_owned()),
        });
        Ok(ProvisionResult::created("files-1", Connection::new())
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

airlock_sdk::export!(ReadFiles);
