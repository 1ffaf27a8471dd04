//! Attacks the `http` capability from inside a guest: sends whatever requests its params
//! list and reports each outcome, so tests can assert every denial as the guest sees it.

use airlock_sdk::http::{HttpError, Method, Request};
use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    StatusDetail, json, secrets,
};
use serde::Deserialize;

struct HttpProbe;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// (header, template, secret name)
    #[serde(default)]
    secret_headers: Vec<(String, String, String)>,
    /// Add this many more headers, `x-flood-0`, `x-flood-1`, …: a header flood.
    #[serde(default)]
    flood: usize,
}

fn get() -> String {
    "GET".into()
}

fn method(name: &str) -> Method {
    match name {
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => Method::Get,
    }
}

fn outcome(probe: &Probe) -> serde_json::Value {
    let handles = match probe
        .secret_headers
        .iter()
        .map(|(_, _, name)| secrets::get(name))
        .collect::<std::result::Result<Vec<_>, _>>()
    {
        Ok(handles) => handles,
        Err(e) => return json!({ "error": "secret", "message": e.to_string() }),
    };
    let mut request = Request::new(method(&probe.method), probe.url.clone());
    for (name, value) in &probe.headers {
        request = request.header(name.clone(), value.clone());
    }
    for i in 0..probe.flood {
        request = request.header(format!("x-flood-{i}"), "1");
    }
    for ((name, template, _), handle) in probe.secret_headers.iter().zip(&handles) {
        request = request.secret_header(name.clone(), template.clone(), handle);
    }
    match request.send() {
        Ok(response) => json!({
            "status": response.status,
            "location": response.header("location"),
            "body": String::from_utf8_lossy(&response.body),
        }),
        Err(error) => {
            let kind = match &error {
                HttpError::Denied(_) => "denied",
                HttpError::Invalid(_) => "invalid",
                HttpError::LimitExceeded(_) => "limit-exceeded",
                HttpError::Timeout(_) => "timeout",
                HttpError::ConnectionFailed(_) => "connection-failed",
            };
            let message = match error {
                HttpError::Denied(m)
                | HttpError::Invalid(m)
                | HttpError::LimitExceeded(m)
                | HttpError::Timeout(m)
                | HttpError::ConnectionFailed(m) => m,
            };
            json!({ "error": kind, "message": message })
        }
    }
}

impl Adapter for HttpProbe {
    fn validate_config(_: &Config) -> Result<()> {
        Ok(())
    }

    fn create(_: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        #[derive(Deserialize)]
        struct Probes {
            requests: Vec<Probe>,
        }
        let probes: Probes = params.parse()?;
        let outcomes: Vec<serde_json::Value> = probes.requests.iter().map(outcome).collect();
        Ok(ProvisionResult::created("probe", Connection::new())
            .with_metadata(json!({ "outcomes": outcomes }))
            .with_idempotency_key(key))
    }

    /// Gives up after whatever the provider said: the host reclassifies the error.
    fn status(config: &Config, _: &str) -> Result<StatusDetail> {
        let url = config.require_str("url")?;
        let response = Request::get(url).send()?;
        Err(AdapterError::permanent(format!(
            "gave up after HTTP {}",
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

airlock_sdk::export!(HttpProbe);
