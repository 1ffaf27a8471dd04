//! # fakecloud: a fake cloud database API for testing Airlock adapters
//!
//! A real HTTP/1.1 server on `127.0.0.1` (never any other address) that behaves like a small
//! managed-database API: bearer-token auth, idempotent creates through a client token,
//! provisioning that takes time and reports progress, deletes, short-lived credentials, a
//! per-second rate limit, and faults a test can inject. State lives in memory and is lost
//! when the server stops.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fakecloud::{FakeCloud, FakeCloudConfig, Fault};
//!
//! let cloud = FakeCloud::start(FakeCloudConfig { step_millis: 50, ..Default::default() }).await?;
//! println!("provider at {}", cloud.base_url());
//! cloud.inject_fault(Fault::Status { status: 503, count: 2 }); // the next two /v1 calls fail
//! assert_eq!(cloud.resource_count(), 0);
//! cloud.shutdown();
//! # Ok(()) }
//! ```
//!
//! ## HTTP API
//!
//! Bodies are JSON with camelCase names. Every `/v1` request needs
//! `Authorization: Bearer <token>`.
//!
//! | request | answers |
//! |---|---|
//! | `POST /v1/databases` `{"name", "plan"?, "clientToken"?}` | 201 resource; 200 the same resource when a live one has that `clientToken`; 400 `invalid_request` naming the `field` |
//! | `GET /v1/databases` | 200 `{"databases": [resource, …]}` (live ones, by id) |
//! | `GET /v1/databases/{id}` | 200 resource; 404 `not_found` |
//! | `DELETE /v1/databases/{id}` | 202 `{"id", "state": "DELETING"}` (gone at once); 404 `not_found` |
//! | `POST /v1/databases/{id}/credentials` | 201 `{"username", "password", "expiresAtMs"}`; 409 `not_ready` while `CREATING`; 404 `not_found` |
//! | `POST /_admin/faults` `{"status", "count"?}` or `{"delayMillis", "count"?}` | 200 `{"pendingFaults": n}`; 400 `invalid_request` |
//! | `GET /_admin/stats` | 200 `{"resources", "requests"}`: live resources, `/v1` requests counted; 404 with [`FakeCloudConfig::admin_stats`] off |
//!
//! A resource:
//! `{"id": "db-000001", "name", "plan", "clientToken", "state": "CREATING"|"AVAILABLE",
//! "progress": {"current", "total"}, "endpoint": {"host": "db-000001.fakecloud.internal",
//! "port": 5432}, "createdAtMs"}`. Its state follows from the time since creation: `CREATING`
//! with `current = elapsed / step_millis` until all `steps` are done, then `AVAILABLE` with
//! `total/total`.
//!
//! Errors are `{"error": code, "message": text}`: `unauthorized` (401), `invalid_request`
//! (400, with `field` when one field is at fault), `not_found` (404), `not_ready` (409),
//! `rate_limited` (429, `Retry-After: 1`), `injected` (an injected fault's status; a 429 also
//! carries `Retry-After: 2`).
//!
//! A `/v1` request goes through, in order: the request counter, the next injected fault, the
//! bearer-token check, the rate limit, then its handler. The admin routes need no token and
//! are neither counted, faulted nor rate limited; they exist because this is a test double.

#[cfg(feature = "cli")]
mod serve;
#[cfg(feature = "cli")]
pub use serve::{ServeArgs, serve};

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The plans a database can have.
const PLANS: &[&str] = &["small", "medium", "large"];
/// The port every database endpoint reports.
const DATABASE_PORT: u16 = 5432;
/// The longest `clientToken` accepted, in bytes (Airlock's idempotency keys are 1 to 256).
const MAX_CLIENT_TOKEN_BYTES: usize = 256;
/// The length of a generated password.
const PASSWORD_LEN: usize = 24;

/// How a [`FakeCloud`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCloudConfig {
    /// The bearer token every `/v1` request must carry (`Authorization: Bearer <token>`).
    pub token: String,
    /// How long each provisioning step takes, in milliseconds (default 200). With 0 a
    /// database is `AVAILABLE` as soon as it is created.
    pub step_millis: u64,
    /// How many steps provisioning takes (default 4): the `total` of `progress`.
    pub steps: u64,
    /// At most this many `/v1` requests per one-second window; the rest are answered 429.
    /// `None` (the default) means unlimited.
    pub rate_limit_per_second: Option<u32>,
    /// How long issued credentials live, in seconds (default 900).
    pub credential_ttl_secs: u64,
    /// Serve `GET /_admin/stats` (default true). Off, it answers 404 like any unknown
    /// route: a provider whose resources cannot be counted, as most real ones are to
    /// `airlock check`.
    pub admin_stats: bool,
}

impl Default for FakeCloudConfig {
    fn default() -> Self {
        FakeCloudConfig {
            token: "fakecloud-test-token".to_owned(),
            step_millis: 200,
            steps: 4,
            rate_limit_per_second: None,
            credential_ttl_secs: 900,
            admin_stats: true,
        }
    }
}

/// A fault to inject into the next `/v1` requests (test support). Faults queue up: each
/// applies to the next `count` requests after the faults injected before it are used up. A
/// fault with `count` 0 does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer the next `count` requests with `status` and `{"error":"injected"}` without
    /// handling them (a 429 also carries `Retry-After: 2`). A `status` that is not a valid
    /// HTTP status code (100 to 999) is answered as 500.
    Status {
        /// The HTTP status to answer with, normally 400 to 599.
        status: u16,
        /// How many requests it applies to.
        count: u32,
    },
    /// Hold each of the next `count` requests for `millis` milliseconds, then handle it
    /// normally (auth, rate limit and all).
    Delay {
        /// How long to hold each request.
        millis: u64,
        /// How many requests it applies to.
        count: u32,
    },
}

impl Fault {
    fn count(&self) -> u32 {
        match self {
            Fault::Status { count, .. } | Fault::Delay { count, .. } => *count,
        }
    }

    fn count_mut(&mut self) -> &mut u32 {
        match self {
            Fault::Status { count, .. } | Fault::Delay { count, .. } => count,
        }
    }
}

/// A running fake cloud server. Dropping it (or calling [`FakeCloud::shutdown`]) stops it:
/// it accepts no more connections and closes the open ones once their current request is
/// answered.
///
/// The server runs on a task of the tokio runtime that started it, so that runtime must
/// outlive the server's use.
#[derive(Debug)]
pub struct FakeCloud {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeCloud {
    /// Start a server on `127.0.0.1` on a free port, serving on a tokio task. Must be called
    /// inside a tokio runtime.
    pub async fn start(config: FakeCloudConfig) -> std::io::Result<FakeCloud> {
        Self::start_on(config, 0).await
    }

    /// Start a server on `127.0.0.1:port` (0 picks a free port), serving on a tokio task.
    /// Fails if the port is taken. Must be called inside a tokio runtime.
    pub async fn start_on(config: FakeCloudConfig, port: u16) -> std::io::Result<FakeCloud> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                // Either a send or the sender's drop means stop.
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "fakecloud server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fakecloud listening");
        Ok(FakeCloud {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    /// The address the server listens on (always `127.0.0.1`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, `http://127.0.0.1:PORT`, with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &FakeCloudConfig {
        &self.shared.config
    }

    /// How many databases exist (created and not deleted).
    pub fn resource_count(&self) -> usize {
        self.shared.lock().resources.len()
    }

    /// How many `/v1` requests the server has received, including the ones it refused
    /// (401, 429, injected faults). Admin requests are not counted.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Queue a fault for the next `/v1` requests; see [`Fault`].
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.inject(fault);
    }

    /// Stop the server. The same happens on drop.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// What the handlers share.
#[derive(Debug)]
struct Shared {
    config: FakeCloudConfig,
    requests: AtomicU64,
    random: RandomState,
    inner: Mutex<Inner>,
}

/// The mutable state, behind the mutex (never held across an await).
#[derive(Debug)]
struct Inner {
    next_id: u64,
    /// Live databases by id; ids are zero-padded, so this is creation order.
    resources: BTreeMap<String, Database>,
    faults: VecDeque<Fault>,
    /// The current rate-limit window: when it started and how many requests it has seen.
    window: Option<(Instant, u32)>,
    /// Counter mixed into generated passwords.
    passwords_issued: u64,
}

#[derive(Debug, Clone)]
struct Database {
    id: String,
    name: String,
    plan: String,
    client_token: Option<String>,
    created: Instant,
    created_at_ms: u64,
}

/// A database on the wire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DatabaseView<'a> {
    id: &'a str,
    name: &'a str,
    plan: &'a str,
    client_token: Option<&'a str>,
    state: &'static str,
    progress: ProgressView,
    endpoint: EndpointView,
    created_at_ms: u64,
}

#[derive(Serialize)]
struct ProgressView {
    current: u64,
    total: u64,
}

#[derive(Serialize)]
struct EndpointView {
    host: String,
    port: u16,
}

impl Shared {
    fn new(config: FakeCloudConfig) -> Self {
        Shared {
            config,
            requests: AtomicU64::new(0),
            random: RandomState::new(),
            inner: Mutex::new(Inner {
                next_id: 1,
                resources: BTreeMap::new(),
                faults: VecDeque::new(),
                window: None,
                passwords_issued: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent; carry on.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inject(&self, fault: Fault) {
        if fault.count() > 0 {
            tracing::debug!(?fault, "fault injected");
            self.lock().faults.push_back(fault);
        }
    }

    /// Use up one request's worth of the first queued fault.
    fn take_fault(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let front = inner.faults.front_mut()?;
        let taken = *front;
        *front.count_mut() -= 1;
        if front.count() == 0 {
            inner.faults.pop_front();
        }
        Some(taken)
    }

    /// Count this request in the current one-second window; true if it is over the limit.
    fn rate_limited(&self) -> bool {
        let Some(limit) = self.config.rate_limit_per_second else {
            return false;
        };
        let now = Instant::now();
        let mut inner = self.lock();
        let window = match inner.window {
            Some((start, seen)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, seen.saturating_add(1))
            }
            _ => (now, 1),
        };
        inner.window = Some(window);
        window.1 > limit
    }

    /// Where provisioning of `db` is at `now`: (state, steps done).
    fn progress(&self, db: &Database, now: Instant) -> (&'static str, u64) {
        let steps = self.config.steps;
        let elapsed = u64::try_from(now.saturating_duration_since(db.created).as_millis())
            .unwrap_or(u64::MAX);
        // With no step time, provisioning is instant.
        let done = elapsed
            .checked_div(self.config.step_millis)
            .unwrap_or(steps)
            .min(steps);
        if done >= steps {
            ("AVAILABLE", steps)
        } else {
            ("CREATING", done)
        }
    }

    fn view<'a>(&self, db: &'a Database, now: Instant) -> DatabaseView<'a> {
        let (state, current) = self.progress(db, now);
        DatabaseView {
            id: &db.id,
            name: &db.name,
            plan: &db.plan,
            client_token: db.client_token.as_deref(),
            state,
            progress: ProgressView {
                current,
                total: self.config.steps,
            },
            endpoint: EndpointView {
                host: format!("{}.fakecloud.internal", db.id),
                port: DATABASE_PORT,
            },
            created_at_ms: db.created_at_ms,
        }
    }

    /// A 24-character alphanumeric password; unpredictable enough for a test double.
    fn password(&self, inner: &mut Inner) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        inner.passwords_issued += 1;
        let mut out = String::with_capacity(PASSWORD_LEN);
        let mut word = 0u64;
        for i in 0..PASSWORD_LEN {
            if i % 8 == 0 {
                let mut hasher = self.random.build_hasher();
                hasher.write_u64(inner.passwords_issued);
                hasher.write_usize(i);
                hasher.write_u128(now_ms_u128());
                word = hasher.finish();
            }
            let index = usize::try_from(word % ALPHABET.len() as u64).unwrap_or(0);
            out.push(char::from(ALPHABET[index]));
            word /= ALPHABET.len() as u64;
        }
        out
    }
}

fn now_ms_u128() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    u64::try_from(now_ms_u128()).unwrap_or(u64::MAX)
}

fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/v1/databases", post(create_database).get(list_databases))
        .route(
            "/v1/databases/{id}",
            get(get_database).delete(delete_database),
        )
        .route("/v1/databases/{id}/credentials", post(issue_credentials))
        .route("/_admin/faults", post(admin_fault));
    if shared.config.admin_stats {
        router = router.route("/_admin/stats", get(admin_stats));
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// An error answer: `{"error": code, "message": message}`, with `field` when one field of
/// the request is at fault, and `Retry-After` when the client should wait.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
    retry_after: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: &'static str) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }
}

/// A 400 that names the field at fault.
fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        field: Some(field),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("database {id:?} not found"),
    )
}

fn json_response(status: StatusCode, body: impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Counting, faults, auth and the rate limit for `/v1`; a debug log line for every request.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = if path == "/v1" || path.starts_with("/v1/") {
        guarded(&shared, request, next).await
    } else {
        next.run(request).await
    };
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

async fn guarded(shared: &Shared, request: Request, next: Next) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    match shared.take_fault() {
        Some(Fault::Status { status, .. }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut error = ApiError::new(status, "injected", "fault injected by the test");
            if status == StatusCode::TOO_MANY_REQUESTS {
                error = error.retry_after("2");
            }
            return error.into_response();
        }
        Some(Fault::Delay { millis, .. }) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        None => {}
    }
    if !authorized(request.headers(), &shared.config.token) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
        .into_response();
    }
    if shared.rate_limited() {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests in one second",
                shared.config.rate_limit_per_second.unwrap_or(0)
            ),
        )
        .retry_after("1")
        .into_response();
    }
    next.run(request).await
}

/// `Authorization: Bearer <token>` (the scheme in any case) with exactly the configured token.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    let presented = presented.trim();
    scheme.eq_ignore_ascii_case("bearer") && !presented.is_empty() && presented == token
}

/// Parse a request body as a JSON object, or answer 400.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let invalid_body = |message: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("request body: {message}"),
        )
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid_body("must be a JSON object".into())),
        Err(e) => Err(invalid_body(format!("not valid JSON: {e}"))),
    }
}

/// The optional string field `name`: absent or null is `None`.
fn optional_str<'a>(
    body: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, format!("{name} must be a string"))),
    }
}

/// The optional non-negative integer field `name`: absent or null is `None`.
fn optional_u64(body: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(name, format!("{name} must be a non-negative integer"))),
    }
}

/// The validated body of a create: name, plan, client token.
fn create_fields(body: &Map<String, Value>) -> Result<(&str, &str, Option<&str>), ApiError> {
    let name = optional_str(body, "name")?.ok_or_else(|| invalid("name", "name is required"))?;
    if name.is_empty() || name.len() > 63 {
        return Err(invalid("name", "name must be 1 to 63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "name",
            "name may contain only lower-case letters, digits and '-'",
        ));
    }
    let plan = optional_str(body, "plan")?.unwrap_or("small");
    if !PLANS.contains(&plan) {
        return Err(invalid(
            "plan",
            format!("plan must be one of small, medium, large; got {plan:?}"),
        ));
    }
    let client_token = optional_str(body, "clientToken")?;
    if let Some(token) = client_token
        && (token.is_empty() || token.len() > MAX_CLIENT_TOKEN_BYTES)
    {
        return Err(invalid(
            "clientToken",
            format!("clientToken must be 1 to {MAX_CLIENT_TOKEN_BYTES} bytes long"),
        ));
    }
    Ok((name, plan, client_token))
}

async fn create_database(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_object(&body)?;
    let (name, plan, client_token) = create_fields(&body)?;

    let now = Instant::now();
    let mut inner = shared.lock();
    if let Some(token) = client_token
        && let Some(existing) = inner
            .resources
            .values()
            .find(|db| db.client_token.as_deref() == Some(token))
    {
        tracing::debug!(id = %existing.id, "create repeated with a known clientToken");
        return Ok(json_response(StatusCode::OK, shared.view(existing, now)));
    }
    let id = format!("db-{:06}", inner.next_id);
    inner.next_id += 1;
    let db = Database {
        id: id.clone(),
        name: name.to_owned(),
        plan: plan.to_owned(),
        client_token: client_token.map(str::to_owned),
        created: now,
        created_at_ms: now_ms(),
    };
    let mut response = json_response(StatusCode::CREATED, shared.view(&db, now));
    inner.resources.insert(id.clone(), db);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/databases/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn list_databases(State(shared): State<Arc<Shared>>) -> Response {
    let now = Instant::now();
    let inner = shared.lock();
    let databases: Vec<DatabaseView<'_>> = inner
        .resources
        .values()
        .map(|db| shared.view(db, now))
        .collect();
    json_response(StatusCode::OK, json!({ "databases": databases }))
}

async fn get_database(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = Instant::now();
    let inner = shared.lock();
    let db = inner.resources.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(json_response(StatusCode::OK, shared.view(db, now)))
}

async fn delete_database(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    shared
        .lock()
        .resources
        .remove(&id)
        .ok_or_else(|| not_found(&id))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({ "id": id, "state": "DELETING" }),
    ))
}

async fn issue_credentials(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = Instant::now();
    let mut inner = shared.lock();
    let db = inner.resources.get(&id).ok_or_else(|| not_found(&id))?;
    let (state, current) = shared.progress(db, now);
    if state != "AVAILABLE" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "database {id:?} is still being created (step {current} of {})",
                shared.config.steps
            ),
        ));
    }
    let username = format!("u_{id}");
    let password = shared.password(&mut inner);
    let ttl_ms = shared.config.credential_ttl_secs.saturating_mul(1000);
    let expires_at_ms = now_ms().saturating_add(ttl_ms);
    Ok(json_response(
        StatusCode::CREATED,
        json!({ "username": username, "password": password, "expiresAtMs": expires_at_ms }),
    ))
}

/// The fault an admin request asks for.
fn admin_fault_from(body: &Map<String, Value>) -> Result<Fault, ApiError> {
    let count = match optional_u64(body, "count")? {
        None => 1,
        Some(n) => u32::try_from(n)
            .map_err(|_| invalid("count", format!("count must be at most {}", u32::MAX)))?,
    };
    match (
        optional_u64(body, "status")?,
        optional_u64(body, "delayMillis")?,
    ) {
        (Some(status), None) => {
            let status = u16::try_from(status)
                .ok()
                .filter(|s| (400..=599).contains(s))
                .ok_or_else(|| invalid("status", "status must be from 400 to 599"))?;
            Ok(Fault::Status { status, count })
        }
        (None, Some(millis)) => Ok(Fault::Delay { millis, count }),
        (Some(_), Some(_)) => Err(invalid(
            "status",
            "give either status or delayMillis, not both",
        )),
        (None, None) => Err(invalid("status", "status or delayMillis is required")),
    }
}

async fn admin_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let fault = admin_fault_from(&parse_object(&body)?)?;
    shared.inject(fault);
    let pending = shared.lock().faults.len();
    Ok(json_response(
        StatusCode::OK,
        json!({ "pendingFaults": pending }),
    ))
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Response {
    let resources = shared.lock().resources.len();
    let requests = shared.requests.load(Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        json!({ "resources": resources, "requests": requests }),
    )
}

async fn no_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}
