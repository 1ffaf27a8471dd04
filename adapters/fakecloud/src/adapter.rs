//! An adapter for the fakecloud database API (`fakecloud/` in the host workspace), on the
//! Airlock SDK. Unlike the example adapter it keeps nothing in `state`: the provider owns the
//! resources, idempotency rides on the provider's `clientToken`, and every call is an HTTP
//! request through the `http` capability, authorised with a bearer token the adapter never
//! sees (a `secrets` handle placed into the header by the host).

use std::time::{Duration, UNIX_EPOCH};

use airlock_sdk::http::{Method, Request, Response};
use airlock_sdk::secrets::{self, Secret};
use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, Credentials, Params, ProvisionResult, Result,
    Status, StatusDetail, json, log,
};
use serde::Deserialize;

const PLANS: &[&str] = &["small", "medium", "large"];
const DEFAULT_TOKEN_SECRET: &str = "fakecloud-token";
/// The provider's database names: 1 to 63 of `[a-z0-9-]`.
const MAX_NAME_LEN: usize = 63;
/// Longer instance ids cannot be the provider's (`db-000001`).
const MAX_INSTANCE_ID_LEN: usize = 128;

/// The adapter. Every operation is an associated function: each call is a fresh instance.
pub struct FakeCloud;

/// The validated provider config.
struct Settings {
    /// Base URL without a trailing slash.
    endpoint: String,
    token_secret: String,
    plan: String,
}

impl Settings {
    fn from_config(config: &Config) -> Result<Settings> {
        let endpoint = config.require_str("endpoint")?;
        let rest = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .ok_or_else(|| {
                AdapterError::validation(format!(
                    "config.endpoint: must start with http:// or https://, got {endpoint:?}"
                ))
            })?;
        if rest.trim_end_matches('/').is_empty() {
            return Err(AdapterError::validation(format!(
                "config.endpoint: no host in {endpoint:?}"
            )));
        }
        if endpoint
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(AdapterError::validation(format!(
                "config.endpoint: must be a base URL without spaces, query or fragment, got {endpoint:?}"
            )));
        }
        let token_secret = config
            .optional_str("tokenSecret")?
            .unwrap_or(DEFAULT_TOKEN_SECRET);
        if token_secret.trim().is_empty() {
            return Err(AdapterError::validation(
                "config.tokenSecret: must not be empty",
            ));
        }
        let plan = config.optional_str("plan")?.unwrap_or("small");
        if !PLANS.contains(&plan) {
            return Err(AdapterError::validation(format!(
                "config.plan: unknown plan {plan:?}; expected one of {PLANS:?}"
            )));
        }
        Ok(Settings {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token_secret: token_secret.to_owned(),
            plan: plan.to_owned(),
        })
    }

    /// The handle of the provider token; `AUTH` if the policy grants none.
    fn token(&self) -> Result<Secret> {
        Ok(secrets::get(&self.token_secret)?)
    }

    fn databases_url(&self) -> String {
        format!("{}/v1/databases", self.endpoint)
    }

    fn database_url(&self, id: &str) -> String {
        format!("{}/v1/databases/{id}", self.endpoint)
    }
}

/// Send a request to the provider with the bearer token; an HTTP failure is the SDK's error
/// (`AUTH` for a denial, `RETRYABLE` for a timeout or a refused connection, …).
fn send(
    method: Method,
    url: String,
    token: &Secret,
    body: Option<&serde_json::Value>,
) -> Result<Response> {
    let mut request = Request::new(method, url)
        .header("accept", "application/json")
        .secret_header("authorization", "Bearer {secret}", token);
    if let Some(body) = body {
        request = request.json(body);
    }
    Ok(request.send()?)
}

/// The contract's error for an answer the operation did not expect: the SDK's mapping for a
/// non-2xx status, `INTERNAL` for a 2xx the API never gives there.
fn unexpected(response: &Response) -> AdapterError {
    response.error().unwrap_or_else(|| {
        AdapterError::internal(format!(
            "provider answered HTTP {} where the API has no such answer",
            response.status
        ))
    })
}

fn not_found(instance_id: &str) -> AdapterError {
    AdapterError::permanent(format!("instance {instance_id:?} not found"))
}

/// Provider ids are `db-` and digits; anything outside `[A-Za-z0-9_-]` cannot be one, and
/// must not reach a URL path (`..`, `/`, `?`).
fn plausible_id(instance_id: &str) -> bool {
    !instance_id.is_empty()
        && instance_id.len() <= MAX_INSTANCE_ID_LEN
        && instance_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A database as the provider describes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Database {
    id: String,
    name: String,
    plan: String,
    state: String,
    progress: ProviderProgress,
    endpoint: Endpoint,
}

#[derive(Deserialize)]
struct ProviderProgress {
    current: u64,
    total: u64,
}

#[derive(Deserialize)]
struct Endpoint {
    host: String,
    port: u16,
}

/// Credentials as the provider issues them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssuedCredentials {
    username: String,
    password: String,
    expires_at_ms: u64,
}

impl Database {
    fn connection(&self) -> Connection {
        Connection::new()
            .with("host", self.endpoint.host.clone())
            .with("port", self.endpoint.port)
            .with("database", self.name.clone())
    }

    fn metadata(&self) -> serde_json::Value {
        json!({ "plan": self.plan, "state": self.state })
    }

    fn status(&self) -> Result<StatusDetail> {
        let ProviderProgress { current, total } = self.progress;
        let (status, message) = match self.state.as_str() {
            "CREATING" if current == 0 => (Status::Pending, "queued".to_owned()),
            "CREATING" => (
                Status::Running,
                format!("provisioning step {current} of {total}"),
            ),
            "AVAILABLE" => (Status::Success, "available".to_owned()),
            "DELETING" => (Status::Cancelled, "being deleted".to_owned()),
            other => {
                return Err(AdapterError::internal(format!(
                    "provider reported an unknown state {other:?} for {:?}",
                    self.id
                )));
            }
        };
        Ok(StatusDetail::new(status)
            .with_progress(current, total)
            .with_message(message)
            .with_raw(json!({ "state": self.state })))
    }
}

/// A database name the provider accepts; checked here so the error names the parameter.
fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(AdapterError::validation(format!(
            "params.name: at most {MAX_NAME_LEN} characters, got {}",
            name.len()
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(AdapterError::validation(format!(
            "params.name: only lower-case letters, digits and '-' are allowed, got {name:?}"
        )));
    }
    Ok(())
}

impl Adapter for FakeCloud {
    fn validate_config(config: &Config) -> Result<()> {
        Settings::from_config(config).map(|_| ())
    }

    fn create(config: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let settings = Settings::from_config(config)?;
        let name = params.require_str("name")?;
        check_name(name)?;
        let token = settings.token()?;
        // The host's client token is stable across retries and host crashes; the provider
        // deduplicates on it, so a repeated create never makes a second database.
        let client_token =
            airlock_sdk::invocation::client_token().or_else(|| key.map(str::to_owned));
        let body = json!({ "name": name, "plan": settings.plan, "clientToken": client_token });
        let response = send(Method::Post, settings.databases_url(), &token, Some(&body))?;
        let created = match response.status {
            201 => true,
            200 => false,
            _ => return Err(unexpected(&response)),
        };
        let db: Database = response.json()?;
        log::info(&format!(
            "{} {} ({}, plan {})",
            if created {
                "created"
            } else {
                "client token seen before: returning"
            },
            db.id,
            db.state,
            db.plan
        ));
        let result = if created {
            ProvisionResult::created(db.id.clone(), db.connection())
        } else {
            ProvisionResult::existing(db.id.clone(), db.connection())
        };
        Ok(result
            .with_metadata(db.metadata())
            .with_idempotency_key(key))
    }

    fn status(config: &Config, instance_id: &str) -> Result<StatusDetail> {
        let settings = Settings::from_config(config)?;
        if !plausible_id(instance_id) {
            return Err(not_found(instance_id));
        }
        let token = settings.token()?;
        let response = send(
            Method::Get,
            settings.database_url(instance_id),
            &token,
            None,
        )?;
        match response.status {
            200 => {
                let detail = response.json::<Database>()?.status()?;
                log::info(&format!(
                    "status of {instance_id}: {:?} {}",
                    detail.status,
                    detail.message.as_deref().unwrap_or("")
                ));
                Ok(detail)
            }
            404 => Err(not_found(instance_id)),
            _ => Err(unexpected(&response)),
        }
    }

    fn destroy(config: &Config, instance_id: &str) -> Result<()> {
        let settings = Settings::from_config(config)?;
        if !plausible_id(instance_id) {
            log::info(&format!(
                "{instance_id:?} cannot be a provider id; nothing to destroy"
            ));
            return Ok(());
        }
        let token = settings.token()?;
        let response = send(
            Method::Delete,
            settings.database_url(instance_id),
            &token,
            None,
        )?;
        match response.status {
            202 | 200 | 204 => {
                log::info(&format!("deleting {instance_id}"));
                Ok(())
            }
            404 => {
                log::info(&format!("{instance_id} already gone; nothing to do"));
                Ok(())
            }
            _ => Err(unexpected(&response)),
        }
    }

    fn credentials(config: &Config, instance_id: &str) -> Result<Credentials> {
        let settings = Settings::from_config(config)?;
        if !plausible_id(instance_id) {
            return Err(not_found(instance_id));
        }
        let token = settings.token()?;
        let response = send(
            Method::Post,
            format!("{}/credentials", settings.database_url(instance_id)),
            &token,
            None,
        )?;
        match response.status {
            201 => {
                let issued: IssuedCredentials = response.json()?;
                log::info(&format!(
                    "issued credentials for {instance_id} (user {})",
                    issued.username
                ));
                Ok(Credentials::Ephemeral {
                    values: json!({ "username": issued.username, "password": issued.password }),
                    expires_at: UNIX_EPOCH + Duration::from_millis(issued.expires_at_ms),
                })
            }
            409 => Err(AdapterError::retryable(format!(
                "instance {instance_id:?} is not ready yet; credentials come when it is available"
            ))),
            404 => Err(not_found(instance_id)),
            _ => Err(unexpected(&response)),
        }
    }
}
