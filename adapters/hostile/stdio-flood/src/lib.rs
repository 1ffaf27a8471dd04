//! Hostile adapter: writes 20 MiB to stdout and to stderr, then succeeds; the host must keep its bound and count the rest.

use std::io::Write;

use airlock_sdk::{
    Adapter, Config, Connection, Credentials, Params, ProvisionResult, Result, Status, StatusDetail,
};

struct StdioFlood;

/// Bytes written to each stream.
const BYTES: usize = 20 << 20;
const CHUNK: usize = 64 << 10;

fn flood() {
    let chunk = vec![b'o'; CHUNK];
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    for _ in 0..core::hint::black_box(BYTES / CHUNK) {
        out.write_all(&chunk).expect("stdout accepts everything");
        err.write_all(&chunk).expect("stderr accepts everything");
    }
    out.flush().expect("stdout flushes");
}

impl Adapter for StdioFlood {
    fn validate_config(_: &Config) -> Result<()> {
        flood();
        Ok(())
    }
    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        flood();
        Ok(ProvisionResult::created("stdio-flood", Connection::new()).with_idempotency_key(key))
    }
    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        flood();
        Ok(StatusDetail::new(Status::Success))
    }
    fn destroy(_: &Config, _: &str) -> Result<()> {
        flood();
        Ok(())
    }
    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        flood();
        Ok(Credentials::vault("secret/stdio-flood"))
    }
}

airlock_sdk::export!(StdioFlood);
