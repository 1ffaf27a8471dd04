//! The fakecloud adapter with one `airlock check` rule broken, chosen by a cargo feature.
//! Every operation delegates to the fakecloud adapter (its source, compiled here as `base`);
//! the feature that is on maps one kind of provider failure to the wrong code, leaks the
//! provider token, or retries a create with a fresh provider key.

#[path = "../../../fakecloud/src/adapter.rs"]
mod base;

use base::FakeCloud;

use airlock_sdk::http::{Method, Request};
use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, ErrorCode, Params, ProvisionResult,
    Result, StatusDetail, Value, json, log, secrets,
};

/// The broken adapter.
pub struct Broken;

/// The wrong code for one kind of failure, recognised by the SDK's messages for it.
fn misclassify(mut error: AdapterError) -> AdapterError {
    let message = error.message.as_str();
    let wrong =
        (cfg!(feature = "fault_rate-limited") && message.starts_with("provider answered HTTP 429"))
            .then_some(ErrorCode::Retryable)
            .or((cfg!(feature = "fault_server-error")
                && message.starts_with("provider answered HTTP 5"))
            .then_some(ErrorCode::Permanent))
            .or((cfg!(feature = "fault_unauthorized")
                && message.starts_with("provider answered HTTP 401"))
            .then_some(ErrorCode::Permanent))
            .or((cfg!(feature = "fault_reset-after-processing")
                && message.starts_with("HTTP connection failed"))
            .then_some(ErrorCode::Permanent))
            .or((cfg!(feature = "fault_slow-response")
                && message.starts_with("HTTP request timed out"))
            .then_some(ErrorCode::Permanent));
    if let Some(code) = wrong {
        error.code = code;
    }
    error
}

/// Whether a create failed where the provider may have done the work: the connection broke
/// or the answer did not come in time (the SDK's messages for both).
fn may_have_been_processed(error: &AdapterError) -> bool {
    error.message.starts_with("HTTP connection failed")
        || error.message.starts_with("HTTP request timed out")
}

/// The bug of `fault_fresh-key-per-retry`: after a create that may have reached the
/// provider, try again at once with a *new* client token, so the provider cannot tell the
/// retry from a new request and makes a second database. Only the provider's resource count
/// shows it: the call succeeds, and a later create with the same key finds the first.
fn retry_with_a_fresh_key(
    config: &Config,
    params: &Params,
    key: Option<&str>,
) -> Result<ProvisionResult> {
    let endpoint = config.require_str("endpoint")?.trim_end_matches('/');
    let token = secrets::get(
        config
            .optional_str("tokenSecret")?
            .unwrap_or("fakecloud-token"),
    )?;
    let stable = airlock_sdk::invocation::client_token()
        .or_else(|| key.map(str::to_owned))
        .unwrap_or_default();
    let body = json!({
        "name": params.require_str("name")?,
        "plan": config.optional_str("plan")?.unwrap_or("small"),
        "clientToken": format!("{stable}-retry"),
    });
    let response = Request::new(Method::Post, format!("{endpoint}/v1/databases"))
        .header("accept", "application/json")
        .secret_header("authorization", "Bearer {secret}", &token)
        .json(&body)
        .send()?;
    if let Some(error) = response.error() {
        return Err(error);
    }
    let db: Value = response.json()?;
    let text = |name: &str| db[name].as_str().unwrap_or_default().to_owned();
    let connection = Connection::new()
        .with(
            "host",
            db["endpoint"]["host"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
        .with("port", db["endpoint"]["port"].as_u64().unwrap_or_default())
        .with("database", text("name"));
    Ok(ProvisionResult::created(text("id"), connection).with_idempotency_key(key))
}

/// With `credentials_no-secret`, the provider token revealed and written into the error's
/// message, a field the checker must name (`/message`).
fn with_revealed_token(mut error: AdapterError) -> AdapterError {
    if cfg!(feature = "credentials_no-secret")
        && let Ok(token) = secrets::get("fakecloud-token")
        && let Ok(value) = secrets::reveal(&token)
    {
        error.message = format!("{} (sent with token {value})", error.message);
    }
    error
}

impl Adapter for Broken {
    fn validate_config(config: &Config) -> Result<()> {
        FakeCloud::validate_config(config)
    }

    fn create(config: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        if cfg!(feature = "credentials_no-secret") {
            let token = secrets::get("fakecloud-token")?;
            log::info(&format!("creating with token {}", secrets::reveal(&token)?));
        }
        match FakeCloud::create(config, params, key) {
            Err(error)
                if cfg!(feature = "fault_fresh-key-per-retry")
                    && may_have_been_processed(&error) =>
            {
                log::warn(&format!(
                    "{}; retrying with a new client token",
                    error.message
                ));
                retry_with_a_fresh_key(config, params, key)
            }
            result => result.map_err(misclassify).map_err(with_revealed_token),
        }
    }

    fn status(config: &Config, instance_id: &str) -> Result<StatusDetail> {
        FakeCloud::status(config, instance_id).map_err(misclassify)
    }

    fn destroy(config: &Config, instance_id: &str) -> Result<()> {
        FakeCloud::destroy(config, instance_id).map_err(misclassify)
    }

    fn credentials(config: &Config, instance_id: &str) -> Result<Credentials> {
        FakeCloud::credentials(config, instance_id).map_err(misclassify)
    }
}

airlock_sdk::export!(Broken);
