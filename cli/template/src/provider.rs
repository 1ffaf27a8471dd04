//! The provider's API client: the one place that knows its URLs, JSON shapes and status
//! codes. Replace this file with a client for your provider's API; `lib.rs` maps what it
//! returns onto the Airlock contract.
//!
//! The placeholder provider is the database API that `airlock fakecloud` serves, and that
//! `airlock check` stands up in place of the endpoint when it checks this adapter:
//!
//! | request | answers |
//! |---|---|
//! | `POST /v1/databases` `{"name", "plan", "clientToken"}` | 201 a new database; 200 the database already made for that `clientToken` |
//! | `GET /v1/databases/{id}` | 200 the database; 404 |
//! | `DELETE /v1/databases/{id}` | 202; 404 |
//! | `POST /v1/databases/{id}/credentials` | 201 `{"username", "password", "expiresAtMs"}`; 409 while creating; 404 |
//!
//! Every request carries `Authorization: Bearer <token>`. Failures are
//! `{"error": code, "message": text}`: 400, 401, 404, 409, 429 (with `Retry-After`), 5xx.

use airlock_sdk::http::{Method, Request, Response};
use airlock_sdk::secrets::{self, Secret};
use airlock_sdk::{AdapterError, Result, json};
use serde::Deserialize;

/// The name `policy.toml` grants the API token under (`[secrets.provider-token]`).
pub const TOKEN_SECRET: &str = "provider-token";

/// Longer instance ids cannot be the provider's (`db-000001`).
const MAX_ID_LEN: usize = 128;

/// A database as the provider describes it (only the fields this adapter reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    /// The provider's id, such as `db-000001`: the contract's instance id.
    pub id: String,
    /// The name the caller chose.
    pub name: String,
    /// The size plan.
    pub plan: String,
    /// `CREATING` or `AVAILABLE`.
    pub state: String,
    /// Provisioning steps done and in all.
    pub progress: StepProgress,
    /// Where clients connect.
    pub endpoint: Endpoint,
}

/// Provisioning progress.
#[derive(Debug, Deserialize)]
pub struct StepProgress {
    /// Steps done.
    pub current: u64,
    /// Steps in all.
    pub total: u64,
}

/// A network endpoint.
#[derive(Debug, Deserialize)]
pub struct Endpoint {
    /// Host name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Short-lived database credentials, as the provider issues them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCredentials {
    /// Database user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// When they stop working, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// A client for one provider endpoint, authorised with the granted token.
pub struct Client {
    /// Base URL without a trailing slash.
    base: String,
    /// A handle to the token: the value never enters the sandbox.
    token: Secret,
}

impl Client {
    /// A client for `endpoint` (a base URL). `AUTH` if the policy grants no token.
    pub fn new(endpoint: &str) -> Result<Client> {
        Ok(Client {
            base: endpoint.trim_end_matches('/').to_owned(),
            token: secrets::get(TOKEN_SECRET)?,
        })
    }

    /// Create a database. `client_token` makes the call idempotent at the provider: a
    /// repeat with the same token returns the first database. Returns the database and
    /// whether this call created it.
    pub fn create_database(
        &self,
        name: &str,
        plan: &str,
        client_token: Option<&str>,
    ) -> Result<(Database, bool)> {
        let body = json!({ "name": name, "plan": plan, "clientToken": client_token });
        let response = self.send(Method::Post, "/v1/databases", Some(&body))?;
        match response.status {
            201 => Ok((response.json()?, true)),
            200 => Ok((response.json()?, false)),
            _ => Err(failure(&response)),
        }
    }

    /// The database `id`, or `None` if the provider has no such database.
    pub fn get_database(&self, id: &str) -> Result<Option<Database>> {
        if !plausible_id(id) {
            return Ok(None);
        }
        let response = self.send(Method::Get, &format!("/v1/databases/{id}"), None)?;
        match response.status {
            200 => Ok(Some(response.json()?)),
            404 => Ok(None),
            _ => Err(failure(&response)),
        }
    }

    /// Delete the database `id`. `false` if it did not exist (already deleted).
    pub fn delete_database(&self, id: &str) -> Result<bool> {
        if !plausible_id(id) {
            return Ok(false);
        }
        let response = self.send(Method::Delete, &format!("/v1/databases/{id}"), None)?;
        match response.status {
            200 | 202 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(failure(&response)),
        }
    }

    /// Issue short-lived credentials for the database `id`; `None` if it does not exist.
    pub fn issue_credentials(&self, id: &str) -> Result<Option<IssuedCredentials>> {
        if !plausible_id(id) {
            return Ok(None);
        }
        let path = format!("/v1/databases/{id}/credentials");
        let response = self.send(Method::Post, &path, None)?;
        match response.status {
            201 => Ok(Some(response.json()?)),
            404 => Ok(None),
            409 => Err(AdapterError::retryable(format!(
                "database {id:?} is still being created; credentials come once it is available"
            ))),
            _ => Err(failure(&response)),
        }
    }

    /// Send one request with the bearer token. The host refuses destinations the policy
    /// does not allow; `?` turns that into `AUTH`, and a timeout or a failed connection
    /// into `RETRYABLE`.
    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response> {
        let mut request = Request::new(method, format!("{}{path}", self.base))
            .header("accept", "application/json")
            .secret_header("authorization", "Bearer {secret}", &self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(request.send()?)
    }
}

/// The contract's error for a provider answer the operation did not expect. The caller
/// (the orchestrator) decides from the code whether to retry, back off, or stop.
pub fn failure(response: &Response) -> AdapterError {
    let detail: String = String::from_utf8_lossy(&response.body)
        .chars()
        .take(300)
        .collect();
    let message = format!("provider answered HTTP {}: {detail}", response.status);
    let mut raw = json!({ "providerStatus": response.status });
    let error = match response.status {
        // Rate limited: try again later, after Retry-After if the provider sent one.
        429 => {
            if let Some(after) = response.header("retry-after") {
                raw["retryAfter"] = json!(after);
            }
            AdapterError::limit(message)
        }
        // The token is wrong, expired or lacks a permission.
        401 | 403 => AdapterError::auth(message),
        // The caller's request is wrong: fixing the input fixes it.
        400 | 422 => AdapterError::validation(message),
        // Other refusals (gone, conflict, quota): retrying the same call will not help.
        402..=499 => AdapterError::permanent(message),
        // The provider's own trouble: retry with backoff.
        500..=599 => AdapterError::retryable(message),
        // A status this API never gives here.
        _ => AdapterError::internal(format!("unexpected answer: {message}")),
    };
    error.with_raw(raw)
}

/// Provider ids are `[A-Za-z0-9_-]`; anything else cannot be one and must not reach a URL
/// path (`..`, `/`, `?`), so it is answered as "no such database" without a request.
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
