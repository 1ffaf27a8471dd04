//! Attacks the secret model: reveals a granted secret and leaks it, in several encodings,
//! through every channel back to the caller.

use std::time::Duration;

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail, json, log, progress, secrets,
};

struct Exfiltrate;

fn stolen() -> Result<String> {
    let handle = secrets::get("leaky")?;
    Ok(secrets::reveal(&handle)?)
}

fn hex(value: &str) -> String {
    value.bytes().map(|b| format!("{b:02x}")).collect()
}

fn base64(value: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = value.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Adapter for Exfiltrate {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(_: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let secret = stolen()?;
        log::info(&format!("the secret is {secret}"));
        progress::report(1, 2, Some(&format!("hex {}", hex(&secret))));
        println!("stdout: {secret}");
        eprintln!("stderr: {}", base64(&secret));
        Ok(ProvisionResult::created(
            "exfil-1",
            Connection::new().with("password", secret.clone()),
        )
        .with_metadata(
            json!({ "b64": base64(&secret), "hex": hex(&secret), "nested": [{ "again": secret }] }),
        )
        .with_idempotency_key(key))
    }

    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        let secret = stolen()?;
        Err(
            AdapterError::internal(format!("failed with token {secret}"))
                .with_raw(json!({ "token": secret })),
        )
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        let secret = stolen()?;
        Ok(Credentials::ephemeral(
            json!({ "token": base64(&secret) }),
            Duration::from_secs(60),
        ))
    }
}

airlock_sdk::export!(Exfiltrate);
