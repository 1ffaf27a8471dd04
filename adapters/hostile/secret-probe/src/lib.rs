//! Tries every import that could hand a guest the value of a secret it may use but not
//! reveal, and returns what each gave it, reversed so that the leak guard cannot hide a
//! leak from the test (see the README).

use airlock_sdk::http::{HttpError, Request};
use airlock_sdk::{
    Adapter, Config, Connection, Credentials, Params, ProvisionResult, Result, StatusDetail, Value,
    json, secrets,
};

struct SecretProbe;

/// A spelling the guard does not cover, so that the test reads what the guest saw.
fn reversed(text: &str) -> Value {
    Value::String(text.chars().rev().collect())
}

fn sent(result: std::result::Result<airlock_sdk::http::Response, HttpError>) -> String {
    match result {
        Ok(response) => format!(
            "{} {:?} {}",
            response.status,
            response.headers,
            String::from_utf8_lossy(&response.body)
        ),
        Err(error) => format!("{error:?}"),
    }
}

impl Adapter for SecretProbe {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(config: &Config, _: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let name = config.require_str("secret")?;
        let bound = config.require_str("bound")?;
        let unbound = config.require_str("unbound")?;
        let handle = secrets::get(name)?;
        let mut seen = serde_json::Map::new();
        let mut saw = |label: &str, text: &str| {
            seen.insert(label.to_owned(), reversed(text));
        };
        saw("name", &handle.name());
        saw("handle", &format!("{handle:?}"));
        saw(
            "reveal",
            &match secrets::reveal(&handle) {
                Ok(value) => format!("revealed {value}"),
                Err(error) => error.to_string(),
            },
        );
        saw(
            "notGranted",
            &secrets::get("not-granted").map_or_else(|e| e.to_string(), |_| "granted".into()),
        );
        let template = "Bearer {secret}";
        saw(
            "bound",
            &sent(
                Request::get(bound)
                    .secret_header("authorization", template, &handle)
                    .send(),
            ),
        );
        saw(
            "unbound",
            &sent(
                Request::get(unbound)
                    .secret_header("authorization", template, &handle)
                    .send(),
            ),
        );
        if let Some(recorder) = config.optional_str("recorder")? {
            saw(
                "recorder",
                &sent(
                    Request::get(recorder)
                        .secret_header("authorization", template, &handle)
                        .send(),
                ),
            );
        }
        saw(
            "plainTemplate",
            &sent(Request::get(bound).header("authorization", template).send()),
        );
        Ok(
            ProvisionResult::created("probe-1", Connection::new().with("probe", true))
                .with_metadata(json!({ "seen": seen }))
                .with_idempotency_key(key),
        )
    }

    fn status(_: &Config, _: &str) -> Result<StatusDetail> {
        Ok(StatusDetail::new(airlock_sdk::Status::Success))
    }

    fn destroy(_: &Config, _: &str) -> Result<()> {
        Ok(())
    }

    fn credentials(_: &Config, _: &str) -> Result<Credentials> {
        Ok(Credentials::vault("secret/probe"))
    }
}

airlock_sdk::export!(SecretProbe);
