//! The `http` capability: outbound requests to the destinations the adapter's policy
//! allows, and nothing else.
//!
//! - **Allow-list** ([`policy`]): scheme, host (exact or `*.suffix`), port, optional methods
//!   and path prefix, per `[[http.allow]]` entry. An empty list denies everything. A
//!   denial is `request-error.denied` with the policy line that would grant the request.
//! - **Addresses** ([`address`]): the host resolves names itself and connects only to an
//!   address it checked (each allow entry has its own client whose resolver filters
//!   addresses, so there is no window for DNS rebinding). Non-public addresses are refused
//!   unless the entry grants their range (`addresses = ["127.0.0.1/32"]`).
//! - **No redirects** are followed; a guest may follow one itself, as a new checked request.
//!   No proxy from the environment is ever used.
//! - **Bounds**: requests per call, request and response body size, a per-request timeout
//!   that never outlasts the call's deadline; `Host`, hop-by-hop and length headers are the
//!   host's alone.
//! - **Secrets** go into headers only here, only toward a destination bound to the secret.
//! - The last provider failure of the call is kept so the runtime can reclassify a guest's
//!   error (429 → `LIMIT`, 401/403 → `AUTH`, 5xx and connection failures → `RETRYABLE`).

pub(crate) use airlock_core::http::{address, pattern, policy};
pub mod intercept;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use reqwest::header::{HeaderName, HeaderValue};
use url::{Host, Url};
use wasmtime::component::ResourceTable;

use crate::bindings::airlock::adapter::http::{
    Host as HttpHost, Method, Request, RequestError, Response,
};
use crate::capabilities::secrets::{SecretBroker, SecretHandle};
use intercept::{Exchange, HttpInterceptor, InjectedFailure, InterceptedRequest, Interception};
use policy::HttpPolicy;

/// Headers only the host sets.
const FORBIDDEN_HEADERS: [&str; 12] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

/// An address a resolver refused; found again in reqwest's error chain.
#[derive(Debug)]
struct AddressDenied(String);

impl std::fmt::Display for AddressDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressDenied {}

/// Resolves names for one allow entry, keeping only the addresses it may reach.
struct CheckedResolver {
    grants: Vec<IpNet>,
    location: String,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let grants = self.grants.clone();
        let location = self.location.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match address::check(a.ip(), &grants) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert((a.ip(), why));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let message = match refused {
                    Some((ip, why)) => address_denial(&host, ip, why, &location),
                    None => format!("{host} did not resolve to any address"),
                };
                return Err(
                    Box::new(AddressDenied(message)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn address_denial(
    host: &str,
    ip: std::net::IpAddr,
    why: address::Restricted,
    location: &str,
) -> String {
    let range = match address::canonical(ip) {
        std::net::IpAddr::V4(v4) => format!("{v4}/32"),
        std::net::IpAddr::V6(v6) => format!("{v6}/128"),
    };
    format!(
        "{host} is {ip}, {}; `addresses = [\"{range}\"]` in the [[http.allow]] entry on {location} would allow it",
        why.describe()
    )
}

/// An allow rule and the client that serves it.
pub(crate) struct Route {
    client: reqwest::Client,
}

/// One adapter's outbound HTTP, compiled at load: the policy and a client per allow entry.
pub(crate) struct HttpGrant {
    pub(crate) policy: HttpPolicy,
    routes: Vec<Route>,
    interceptor: Option<Arc<dyn HttpInterceptor>>,
}

impl HttpGrant {
    pub(crate) fn new(
        policy: HttpPolicy,
        interceptor: Option<Arc<dyn HttpInterceptor>>,
    ) -> Result<HttpGrant, String> {
        let routes = policy
            .rules
            .iter()
            .map(|rule| {
                let resolver = CheckedResolver {
                    grants: rule.addresses.clone(),
                    location: rule.location.clone(),
                };
                reqwest::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(Arc::new(resolver))
                    .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build()
                    .map(|client| Route { client })
                    .map_err(|e| format!("{}: cannot build an HTTP client: {e}", rule.location))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpGrant {
            policy,
            routes,
            interceptor,
        })
    }
}

/// What a provider said last in this call, when it was a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProviderFailure {
    /// An HTTP status of 400 or more, with Retry-After if there was one.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// No answer: connect failure, reset or timeout.
    Unreachable,
}

/// One call's outbound HTTP.
pub(crate) struct OutboundHttp {
    adapter: String,
    grant: Arc<HttpGrant>,
    deadline: Instant,
    pub(crate) requests: u32,
    pub(crate) last_failure: Option<ProviderFailure>,
}

impl OutboundHttp {
    pub(crate) fn new(adapter: &str, grant: Arc<HttpGrant>, deadline: Instant) -> Self {
        OutboundHttp {
            adapter: adapter.to_owned(),
            grant,
            deadline,
            requests: 0,
            last_failure: None,
        }
    }
}

/// What the `http` host functions see of a call.
pub(crate) struct HttpView<'a> {
    pub(crate) http: &'a mut OutboundHttp,
    pub(crate) secrets: &'a SecretBroker,
    pub(crate) table: &'a mut ResourceTable,
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
    }
}

impl HttpView<'_> {
    /// Everything up to sending: parse, decide, build headers. Errors are the guest's.
    fn prepare(
        &mut self,
        request: Request,
    ) -> Result<(usize, reqwest::Request, Duration), RequestError> {
        let http = &mut *self.http;
        let policy = &http.grant.policy;
        if http.requests >= policy.max_requests_per_call {
            return Err(RequestError::LimitExceeded(format!(
                "more than {} HTTP requests in one call (http.max_requests_per_call)",
                policy.max_requests_per_call
            )));
        }
        http.requests += 1;
        let method = method_name(request.method);
        let url = Url::parse(&request.url).map_err(|e| {
            RequestError::Invalid(format!("{:?} is not a valid URL: {e}", request.url))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(RequestError::Invalid(format!(
                "{url}: only http and https are supported"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RequestError::Invalid(format!(
                "{url}: credentials in the URL are not allowed; use a secret header"
            )));
        }
        let rule_index = {
            let rule = policy.decide(method, &url).map_err(RequestError::Denied)?;
            if let Some(Host::Ipv4(_) | Host::Ipv6(_)) = url.host() {
                let ip = match url.host() {
                    Some(Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
                    Some(Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
                    _ => unreachable!(),
                };
                address::check(ip, &rule.addresses).map_err(|why| {
                    RequestError::Denied(format!(
                        "{method} {url} denied: {}",
                        address_denial(&ip.to_string(), ip, why, &rule.location)
                    ))
                })?;
            }
            policy
                .rules
                .iter()
                .position(|r| std::ptr::eq(r, rule))
                .expect("rule from this policy")
        };

        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in request.headers {
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
                return Err(RequestError::Invalid(format!(
                    "header `{lower}` is set by the host, not the adapter"
                )));
            }
            let header = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                RequestError::Invalid(format!("{name:?} is not a valid header name"))
            })?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                RequestError::Invalid(format!(
                    "the value of header `{lower}` is not a valid header value"
                ))
            })?;
            headers.append(header, value);
        }
        for secret_header in request.secret_headers {
            let handle: &SecretHandle = self.table.get(&secret_header.secret).map_err(|_| {
                RequestError::Invalid(
                    "a secret header names a secret handle that does not exist".into(),
                )
            })?;
            let name = handle.name().to_owned();
            let grant = &self.secrets.grants.grants[&name];
            if !grant.destinations.iter().any(|d| d.matches(&url)) {
                let bound: Vec<String> =
                    grant.destinations.iter().map(ToString::to_string).collect();
                return Err(RequestError::Denied(format!(
                    "{method} {url} denied: secret {name:?} is bound to {bound:?}, not to this destination; \
                     adding \"{}\" to `destinations` in its policy table ({}) would allow it",
                    exact_destination(&url),
                    grant.location
                )));
            }
            let lower = secret_header.name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
                return Err(RequestError::Invalid(format!(
                    "header `{lower}` is set by the host, not the adapter"
                )));
            }
            if !secret_header.template.contains("{secret}") {
                return Err(RequestError::Invalid(format!(
                    "the template of secret header `{lower}` has no {{secret}} placeholder"
                )));
            }
            let header = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                RequestError::Invalid(format!(
                    "{:?} is not a valid header name",
                    secret_header.name
                ))
            })?;
            let mut value = HeaderValue::from_str(
                &secret_header
                    .template
                    .replace("{secret}", grant.value.expose()),
            )
            .map_err(|_| {
                RequestError::Invalid(format!(
                    "secret header `{lower}` does not make a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            headers.append(header, value);
        }
        let body = request.body.unwrap_or_default();
        if body.len() as u64 > policy.max_request_body_bytes {
            return Err(RequestError::LimitExceeded(format!(
                "request body of {} bytes is over the limit of {} (http.max_request_body_bytes)",
                body.len(),
                policy.max_request_body_bytes
            )));
        }
        let remaining = http.deadline.saturating_duration_since(Instant::now());
        let timeout = [
            Duration::from_millis(policy.request_timeout_ms),
            request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms)))
                .unwrap_or(Duration::MAX),
            remaining,
        ]
        .into_iter()
        .min()
        .unwrap_or_default();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("known method");
        let mut built = reqwest::Request::new(method, url);
        *built.headers_mut() = headers;
        *built.timeout_mut() = Some(timeout);
        if !body.is_empty() {
            *built.body_mut() = Some(body.into());
        }
        Ok((rule_index, built, timeout))
    }
}

/// The narrowest destination pattern that covers `url`: its origin and path, no query.
fn exact_destination(url: &Url) -> String {
    let mut exact = url.clone();
    exact.set_query(None);
    exact.set_fragment(None);
    exact.to_string()
}

fn find_denial(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(denied) = e.downcast_ref::<AddressDenied>() {
            return Some(denied.0.clone());
        }
        source = e.source();
    }
    None
}

impl HttpHost for HttpView<'_> {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, RequestError>> {
        let (route, built, timeout) = match self.prepare(request) {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::info!(target: "airlock::http", adapter = %self.http.adapter, ?error, "request refused");
                return Ok(Err(error));
            }
        };
        let label = format!("{} {}", built.method(), built.url());
        let client = self.http.grant.routes[route].client.clone();
        let max_body = self.http.grant.policy.max_response_body_bytes;
        let result = match self.http.grant.interceptor.clone() {
            None => {
                let task = spawn_exchange(client, built, max_body, label.clone());
                finish_exchange(task, &label, timeout).await
            }
            Some(interceptor) => {
                let adapter = self.http.adapter.clone();
                intercepted_boxed(
                    interceptor,
                    adapter,
                    client,
                    built,
                    max_body,
                    &label,
                    timeout,
                )
                .await
            }
        };
        self.http.last_failure = match &result {
            Ok(response) if response.status >= 400 => Some(ProviderFailure::Status {
                status: response.status,
                retry_after: response
                    .headers
                    .iter()
                    .find(|(k, _)| k == "retry-after")
                    .map(|(_, v)| v.clone()),
            }),
            Ok(_) => None,
            Err(RequestError::Timeout(_) | RequestError::ConnectionFailed(_)) => {
                Some(ProviderFailure::Unreachable)
            }
            Err(_) => self.http.last_failure.take(),
        };
        tracing::debug!(target: "airlock::http", adapter = %self.http.adapter, request = %label,
            status = result.as_ref().ok().map(|r| r.status), "request done");
        Ok(result)
    }
}

/// Send `request` and read the answer within the response-body bound.
///
/// The exchange runs as a task of its own, not inside the guest's fiber: polling hyper's
/// connection setup is deep, and every stack page it touches stays resident in the fiber's
/// stack while the call waits on the provider (measured: 30 KiB per in-flight call; see the
/// README's benchmark). The guard aborts the task if the call is dropped (deadline), so no
/// request outlives its call.
async fn exchange(
    client: &reqwest::Client,
    request: reqwest::Request,
    max_body: u64,
    label: &str,
    timeout: Duration,
) -> Result<Response, RequestError> {
    let task = spawn_exchange(client.clone(), request, max_body, label.to_owned());
    finish_exchange(task, label, timeout).await
}

type ExchangeTask = AbortOnDrop<Result<Result<Response, RequestError>, reqwest::Error>>;

/// Start the exchange on a task of its own (see [`exchange`]).
fn spawn_exchange(
    client: reqwest::Client,
    request: reqwest::Request,
    max_body: u64,
    label: String,
) -> ExchangeTask {
    AbortOnDrop(tokio::spawn(async move {
        let mut response = client.execute(request).await?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if (body.len() + chunk.len()) as u64 > max_body {
                return Ok(Err(RequestError::LimitExceeded(format!(
                    "{label}: response body is over the limit of {max_body} bytes (http.max_response_body_bytes)"
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<_, reqwest::Error>(Ok(Response {
            status,
            headers,
            body,
        }))
    }))
}

/// Wait for a spawned exchange and name its failure.
async fn finish_exchange(
    mut task: ExchangeTask,
    label: &str,
    timeout: Duration,
) -> Result<Response, RequestError> {
    let outcome = match (&mut task.0).await {
        Ok(outcome) => outcome,
        Err(join) => {
            return Err(RequestError::ConnectionFailed(format!(
                "{label}: the request task failed: {join}"
            )));
        }
    };
    match outcome {
        Ok(result) => result,
        Err(error) => Err(if let Some(denied) = find_denial(&error) {
            RequestError::Denied(format!("{label} denied: {denied}"))
        } else if error.is_timeout() {
            RequestError::Timeout(format!(
                "{label}: no answer within {} ms",
                timeout.as_millis()
            ))
        } else {
            RequestError::ConnectionFailed(format!("{label}: {}", root_cause(&error)))
        }),
    }
}

/// [`intercepted`], built on the heap by a function of its own. The guest's fiber stays
/// suspended inside `send` while a request is in flight, so `send`'s stack frame stays
/// resident: built inline, this larger future made that frame one 4 KiB page deeper, which
/// is 40 MiB with 10,000 calls in flight (measured with the benchmark's in-flight part).
#[inline(never)]
fn intercepted_boxed(
    interceptor: Arc<dyn HttpInterceptor>,
    adapter: String,
    client: reqwest::Client,
    request: reqwest::Request,
    max_body: u64,
    label: &str,
    timeout: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, RequestError>> + Send>> {
    let label = label.to_owned();
    Box::pin(async move {
        intercepted(
            &*interceptor,
            &adapter,
            &client,
            request,
            max_body,
            &label,
            timeout,
        )
        .await
    })
}

/// [`exchange`] through the embedder's interceptor.
async fn intercepted(
    interceptor: &dyn HttpInterceptor,
    adapter: &str,
    client: &reqwest::Client,
    mut request: reqwest::Request,
    max_body: u64,
    label: &str,
    timeout: Duration,
) -> Result<Response, RequestError> {
    let seen = InterceptedRequest {
        adapter: adapter.to_owned(),
        method: request.method().as_str().to_owned(),
        url: request.url().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = if value.is_sensitive() {
                    InterceptedRequest::SECRET_PLACEHOLDER.to_owned()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: request
            .body()
            .and_then(|b| b.as_bytes())
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
    };
    let fail = |failure: InjectedFailure| match failure {
        InjectedFailure::ConnectionReset => {
            RequestError::ConnectionFailed(format!("{label}: {failure}"))
        }
        InjectedFailure::Timeout => RequestError::Timeout(format!(
            "{label}: no answer within {} ms ({failure})",
            timeout.as_millis()
        )),
    };
    let started = Instant::now();
    let (origin, failure) = match interceptor.intercept(&seen) {
        Interception::Respond(answer) => {
            if answer.body.len() as u64 > max_body {
                return Err(RequestError::LimitExceeded(format!(
                    "{label}: response body is over the limit of {max_body} bytes (http.max_response_body_bytes)"
                )));
            }
            return Ok(Response {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
            });
        }
        Interception::Fail(failure) => {
            if failure == InjectedFailure::Timeout {
                tokio::time::sleep(timeout).await;
            }
            return Err(fail(failure));
        }
        Interception::Forward { origin } => (origin, None),
        Interception::ForwardThenFail { origin, failure } => (origin, Some(failure)),
    };
    if let Some(origin) = origin {
        *request.url_mut() = intercept::rebase(request.url(), &origin);
    }
    let result = exchange(client, request, max_body, label, timeout).await;
    let record = match &result {
        Ok(response) => Exchange::Answered(intercept::ProviderResponse {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.clone(),
        }),
        Err(error) => Exchange::Failed(format!("{error:?}")),
    };
    interceptor.exchanged(&seen, &record);
    match failure {
        None => result,
        Some(failure) => {
            if failure == InjectedFailure::Timeout {
                tokio::time::sleep(timeout.saturating_sub(started.elapsed())).await;
            }
            Err(fail(failure))
        }
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
