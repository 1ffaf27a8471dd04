//! Hostile adapter: floods what the host builds from guest input in the `http` and
//! `secrets` imports (header count, header bytes, secret-header templates, secret handles).
//! Each attack must end in a precise error while the host process lives, and an honest
//! request in the same call must still go through.

use airlock_sdk::http::{HttpError, Request};
use airlock_sdk::secrets::{self, Secret, SecretError};
use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail, json,
};
use serde::Deserialize;

struct HeaderFlood;

/// Distinct header names: past 32,768 of them the host's header map used to panic.
const FLOOD_HEADERS: usize = 40_000;
/// `{secret}` repeated this often in one template.
const TEMPLATE_REPEATS: usize = 1_000_000;
/// `secrets.get` calls, every handle kept.
const HANDLE_CALLS: usize = 100_000;
/// The secret every attack asks for.
const SECRET: &str = "token";

/// A request carrying `FLOOD_HEADERS` headers named `x-flood-0` … `x-flood-39999`.
fn flooded(url: &str) -> Request<'static> {
    (0..FLOOD_HEADERS).fold(Request::get(url), |request, i| {
        request.header(format!("x-flood-{i}"), "1")
    })
}

/// What the guest saw of an HTTP error: its kind and message.
fn seen(error: HttpError) -> serde_json::Value {
    let (kind, message) = match error {
        HttpError::Denied(m) => ("denied", m),
        HttpError::Invalid(m) => ("invalid", m),
        HttpError::LimitExceeded(m) => ("limit-exceeded", m),
        HttpError::Timeout(m) => ("timeout", m),
        HttpError::ConnectionFailed(m) => ("connection-failed", m),
    };
    json!({ "error": kind, "message": message })
}

fn outcome(
    result: std::result::Result<airlock_sdk::http::Response, HttpError>,
) -> serde_json::Value {
    match result {
        Ok(response) => json!({ "status": response.status }),
        Err(error) => seen(error),
    }
}

/// Ask for the secret `HANDLE_CALLS` times, keeping every handle: how many the host gave,
/// the first refusal and how many calls were refused, and the handles.
fn hoard() -> (Vec<Secret>, serde_json::Value) {
    let mut held = Vec::new();
    let mut first_refusal = None;
    let mut refused = 0u32;
    for _ in 0..HANDLE_CALLS {
        match secrets::get(SECRET) {
            Ok(handle) => held.push(handle),
            Err(error) => {
                refused += 1;
                if first_refusal.is_none() {
                    let kind = match &error {
                        SecretError::NotGranted(_) => "not-granted",
                        SecretError::RevealDenied(_) => "reveal-denied",
                        SecretError::Unavailable(_) => "unavailable",
                    };
                    first_refusal = Some(json!({ "error": kind, "message": error.to_string() }));
                }
            }
        }
    }
    let held_count = held.len();
    // A dropped handle frees its place: the next `get` succeeds.
    held.pop();
    let after_drop = match secrets::get(SECRET) {
        Ok(handle) => {
            held.push(handle);
            json!("ok")
        }
        Err(error) => json!(error.to_string()),
    };
    let report = json!({
        "held": held_count,
        "refused": refused,
        "firstRefusal": first_refusal,
        "afterDrop": after_drop,
    });
    (held, report)
}

impl Adapter for HeaderFlood {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(_: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        #[derive(Deserialize)]
        struct Attack {
            attack: String,
            url: String,
        }
        let Attack { attack, url } = params.parse()?;
        let (handles, report) = match attack.as_str() {
            "headers" => (vec![secrets::get(SECRET)?], outcome(flooded(&url).send())),
            "header-bytes" => {
                let big = "v".repeat(256 * 1024);
                let request = (0..4).fold(Request::get(&url), |request, i| {
                    request.header(format!("x-big-{i}"), big.clone())
                });
                (vec![secrets::get(SECRET)?], outcome(request.send()))
            }
            "template" => {
                let handle = secrets::get(SECRET)?;
                let template = "{secret}".repeat(TEMPLATE_REPEATS);
                let sent = Request::get(&url)
                    .secret_header("authorization", template, &handle)
                    .send();
                (vec![handle], outcome(sent))
            }
            "handles" => hoard(),
            other => {
                return Err(AdapterError::validation(format!(
                    "unknown attack {other:?}"
                )));
            }
        };
        // The honest request, in the same call, after the attack.
        let handle = handles
            .first()
            .ok_or_else(|| AdapterError::internal("no secret handle left"))?;
        let honest = Request::get(&url)
            .header("x-honest", "yes")
            .secret_header("authorization", "Bearer {secret}", handle)
            .send();
        Ok(ProvisionResult::created("flood", Connection::new())
            .with_metadata(json!({ "attack": report, "honest": outcome(honest) }))
            .with_idempotency_key(key))
    }

    /// The header flood, returned with `?`: the call ends in the SDK's code for it.
    fn status(config: &Config, _: &str) -> Result<StatusDetail> {
        let url = config.require_str("url")?;
        let response = flooded(url).send()?;
        Err(AdapterError::internal(format!(
            "40,000 headers were sent and answered HTTP {}",
            response.status
        )))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Err(AdapterError::permanent("no credentials"))
    }
}

airlock_sdk::export!(HeaderFlood);
