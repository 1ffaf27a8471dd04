//! Attacks the secret model: reveals a granted secret and leaks it, in every encoding the
//! leak guard covers, through every channel and every field back to the caller. See the
//! README for which `config.into` puts it where.

use std::time::Duration;

use airlock_sdk::log::Level;
use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, CostEstimate, Costs, Credentials, Params,
    ProvisionResult, Result, SecretManager, Status, StatusDetail, json, log, progress, secrets,
};

struct Exfiltrate;

fn stolen() -> Result<String> {
    let handle = secrets::get("leaky")?;
    Ok(secrets::reveal(&handle)?)
}

fn hex(value: &str) -> String {
    value.bytes().map(|b| format!("{b:02x}")).collect()
}

fn base64_with(value: &str, table: &[u8; 64], pad: bool) -> String {
    let bytes = value.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The value in the encoding `n` (eight of them), so that each channel tries another.
fn encoded(value: &str, n: usize) -> String {
    match n % 8 {
        0 => value.to_owned(),
        1 => base64_with(value, STANDARD, true),
        2 => base64_with(value, STANDARD, false),
        3 => base64_with(value, URL_SAFE, true),
        4 => base64_with(value, URL_SAFE, false),
        5 => hex(value),
        6 => hex(value).to_uppercase(),
        _ => value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    }
}

/// Reveal the secret and leak it through every channel that is not a result: a log
/// record at each level (message, field key and field value), a progress report, stdout
/// and stderr. Eighteen copies.
fn chatter() -> Result<String> {
    let secret = stolen()?;
    let levels = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ];
    for (i, level) in levels.into_iter().enumerate() {
        log::log(
            level,
            &format!("the secret is {}", encoded(&secret, i)),
            &[(&encoded(&secret, i + 1), &encoded(&secret, i + 2))],
        );
    }
    progress::report(1, 2, Some(&format!("hex {}", encoded(&secret, 5))));
    println!("stdout: {secret}");
    eprintln!("stderr: {}", encoded(&secret, 1));
    Ok(secret)
}

fn into(config: &Config) -> Result<String> {
    Ok(config.optional_str("into")?.unwrap_or("").to_owned())
}

impl Adapter for Exfiltrate {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(config: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let secret = chatter()?;
        let mut id = "exfil-1".to_owned();
        let mut connection = Connection::new().with("host", "db.example");
        let mut metadata = json!({ "plan": "small" });
        match into(config)?.as_str() {
            "connection" => connection = connection.with("apiToken", secret.clone()),
            "metadata" => {
                metadata = json!({ "plan": "small", "nested": [{ "again": encoded(&secret, 3) }] })
            }
            "metadata-key" => metadata = json!({ encoded(&secret, 6): true }),
            "instance-id" => id = encoded(&secret, 5),
            _ => {}
        }
        Ok(ProvisionResult::created(id, connection)
            .with_metadata(metadata)
            .with_idempotency_key(key))
    }

    fn status(config: &Config, _: &str) -> Result<StatusDetail> {
        let secret = chatter()?;
        let detail = StatusDetail::new(Status::Success);
        match into(config)?.as_str() {
            "error" => Err(
                AdapterError::internal(format!("failed with token {secret}"))
                    .with_raw(json!({ "token": encoded(&secret, 4), "ok": "nothing" })),
            ),
            "message" => Ok(detail.with_message(format!("ready; token {}", encoded(&secret, 7)))),
            "raw" => Ok(detail.with_raw(json!({ "provider": { "token": encoded(&secret, 6) } }))),
            _ => Ok(detail),
        }
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(config: &Config, _: &str) -> Result<Credentials> {
        let secret = chatter()?;
        let reference = |locator: String, version: Option<String>| Credentials::Reference {
            manager: SecretManager::Vault,
            locator,
            version,
        };
        Ok(match into(config)?.as_str() {
            "values" => Credentials::ephemeral(
                json!({ "user": "app", "token": encoded(&secret, 1) }),
                Duration::from_secs(60),
            ),
            "locator" => reference(format!("secret/{secret}"), None),
            "version" => reference("secret/db".into(), Some(encoded(&secret, 2))),
            "giant-version" => reference("secret/db".into(), Some("v".repeat(2 << 20))),
            _ => reference("secret/db".into(), Some("3".into())),
        })
    }
}

impl Costs for Exfiltrate {
    fn estimate_costs(config: &Config, _: &str) -> Result<CostEstimate> {
        let secret = chatter()?;
        let breakdown = match into(config)?.as_str() {
            "breakdown" => json!({ "compute": { "note": encoded(&secret, 7) } }),
            _ => json!({ "compute": "0.25" }),
        };
        Ok(CostEstimate {
            currency: "USD".into(),
            hourly: "0.25".into(),
            monthly: "182.50".into(),
            breakdown: Some(breakdown),
        })
    }
}

airlock_sdk::export!(Exfiltrate);
