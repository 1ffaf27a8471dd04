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
//! - **Bounds**: requests per call, URL length, header count and bytes (secret headers
//!   counted with the secret in place, computed before any is built), request and response
//!   body size, a per-request timeout that never outlasts the call's deadline; `Host`,
//!   hop-by-hop and length headers are the host's alone.
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
        address::explain(ip, why)
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

/// The method as policies spell it, and as the client sends it.
fn method_name(method: Method) -> (&'static str, reqwest::Method) {
    match method {
        Method::Get => ("GET", reqwest::Method::GET),
        Method::Head => ("HEAD", reqwest::Method::HEAD),
        Method::Post => ("POST", reqwest::Method::POST),
        Method::Put => ("PUT", reqwest::Method::PUT),
        Method::Patch => ("PATCH", reqwest::Method::PATCH),
        Method::Delete => ("DELETE", reqwest::Method::DELETE),
        Method::Options => ("OPTIONS", reqwest::Method::OPTIONS),
    }
}

/// The placeholder a secret header's template holds for the value.
const SECRET_PLACEHOLDER: &str = "{secret}";

/// The length of `template` with every `{secret}` replaced by a value of `secret_len`
/// bytes, computed without building it: a template that repeats the placeholder a million
/// times must be refused by its size, not discovered to be too large after allocating it.
fn filled_len(template: &str, secret_len: usize) -> u64 {
    let placeholders = template.matches(SECRET_PLACEHOLDER).count() as u64;
    let fixed = template.len() as u64 - placeholders * SECRET_PLACEHOLDER.len() as u64;
    fixed.saturating_add(placeholders.saturating_mul(secret_len as u64))
}

/// Build a header name from the guest's text, lower-cased; host-owned names are refused.
fn header_name(name: &str) -> Result<HeaderName, RequestError> {
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(RequestError::Invalid(format!(
            "header `{lower}` is set by the host, not the adapter"
        )));
    }
    HeaderName::from_bytes(lower.as_bytes())
        .map_err(|_| RequestError::Invalid(format!("{name:?} is not a valid header name")))
}

/// Add a header. The count was bounded by `http.max_request_headers` before any header was
/// built, far below the 32,768 entries where `HeaderMap::append` would panic; `try_append`
/// keeps even a wrong bound from aborting the process.
fn append(
    headers: &mut reqwest::header::HeaderMap,
    name: HeaderName,
    value: HeaderValue,
    max: u32,
) -> Result<(), RequestError> {
    headers.try_append(name, value).map(drop).map_err(|_| {
        RequestError::LimitExceeded(format!(
            "the request has more headers than the host can hold; the limit is {max} (http.max_request_headers)"
        ))
    })
}

impl HttpView<'_> {
    /// Everything up to sending: bound, parse, decide, build headers. Errors are the
    /// guest's. Every bound on the guest's input is checked before anything is built from
    /// it, so the host's work and memory per request follow the policy, not the guest.
    fn prepare(
        &mut self,
        request: Request,
    ) -> Result<(reqwest::Client, reqwest::Request, Duration), RequestError> {
        let http = &mut *self.http;
        let policy = &http.grant.policy;
        if http.requests >= policy.max_requests_per_call {
            return Err(RequestError::LimitExceeded(format!(
                "more than {} HTTP requests in one call (http.max_requests_per_call)",
                policy.max_requests_per_call
            )));
        }
        http.requests += 1;
        let (method, client_method) = method_name(request.method);

        if request.url.len() as u64 > policy.max_url_bytes {
            return Err(RequestError::LimitExceeded(format!(
                "the URL is {} bytes; the limit is {} (http.max_url_bytes)",
                request.url.len(),
                policy.max_url_bytes
            )));
        }
        let count = request.headers.len() + request.secret_headers.len();
        if count > policy.max_request_headers as usize {
            return Err(RequestError::LimitExceeded(format!(
                "the request has {count} headers (secret headers included); the limit is {} (http.max_request_headers)",
                policy.max_request_headers
            )));
        }
        // Each secret header's grant, found once: its value's length counts toward the
        // header bytes, and its destinations are checked below.
        let mut grants = Vec::with_capacity(request.secret_headers.len());
        for secret_header in &request.secret_headers {
            let handle: &SecretHandle = self.table.get(&secret_header.secret).map_err(|_| {
                RequestError::Invalid(
                    "a secret header names a secret handle that does not exist".into(),
                )
            })?;
            let grant = self.secrets.grants.grants.get(handle.name()).ok_or_else(|| {
                RequestError::Invalid(format!(
                    "a secret header names the secret {:?}, which is not granted to this adapter",
                    handle.name()
                ))
            })?;
            grants.push((handle.name(), grant));
        }
        let bytes = request
            .headers
            .iter()
            .map(|(name, value)| (name.len() + value.len()) as u64)
            .chain(
                request
                    .secret_headers
                    .iter()
                    .zip(&grants)
                    .map(|(header, (_, grant))| {
                        (header.name.len() as u64).saturating_add(filled_len(
                            &header.template,
                            grant.value.expose().len(),
                        ))
                    }),
            )
            .fold(0u64, u64::saturating_add);
        if bytes > policy.max_request_header_bytes {
            return Err(RequestError::LimitExceeded(format!(
                "the request's headers are {bytes} bytes (names and values, secret headers with the secret in place); the limit is {} (http.max_request_header_bytes)",
                policy.max_request_header_bytes
            )));
        }

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
        let rule = policy.decide(method, &url).map_err(RequestError::Denied)?;
        let literal = match url.host() {
            Some(Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
            Some(Host::Domain(_)) | None => None,
        };
        if let Some(ip) = literal {
            address::check(ip, &rule.addresses).map_err(|why| {
                RequestError::Denied(format!(
                    "{method} {url} denied: {}",
                    address_denial(&ip.to_string(), ip, why, &rule.location)
                ))
            })?;
        }
        // The client compiled for this rule (one per rule, in policy order).
        let client = policy
            .rules
            .iter()
            .zip(&http.grant.routes)
            .find(|(r, _)| std::ptr::eq(*r, rule))
            .map(|(_, route)| route.client.clone())
            .ok_or_else(|| {
                RequestError::Invalid(format!(
                    "{method} {url}: no client for the [[http.allow]] entry on {} (a bug in Airlock)",
                    rule.location
                ))
            })?;

        let max = policy.max_request_headers;
        let mut headers = reqwest::header::HeaderMap::with_capacity(count);
        for (name, value) in &request.headers {
            let header = header_name(name)?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                RequestError::Invalid(format!(
                    "the value of header `{header}` is not a valid header value"
                ))
            })?;
            append(&mut headers, header, value, max)?;
        }
        for (secret_header, (name, grant)) in request.secret_headers.iter().zip(grants) {
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
            let header = header_name(&secret_header.name)?;
            if !secret_header.template.contains(SECRET_PLACEHOLDER) {
                return Err(RequestError::Invalid(format!(
                    "the template of secret header `{header}` has no {{secret}} placeholder"
                )));
            }
            // Bounded: `filled_len` of this template was counted in the header bytes.
            let mut value = HeaderValue::from_str(
                &secret_header
                    .template
                    .replace(SECRET_PLACEHOLDER, grant.value.expose()),
            )
            .map_err(|_| {
                RequestError::Invalid(format!(
                    "secret header `{header}` does not make a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            append(&mut headers, header, value, max)?;
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
        let mut built = reqwest::Request::new(client_method, url);
        *built.headers_mut() = headers;
        *built.timeout_mut() = Some(timeout);
        if !body.is_empty() {
            *built.body_mut() = Some(body.into());
        }
        Ok((client, built, timeout))
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
        let (client, built, timeout) = match self.prepare(request) {
            Ok(prepared) => prepared,
            Err(error) => {
                // The refusal quotes the guest's URL, where a guest that may reveal a
                // secret could have put it: the host's own log gets it redacted.
                let mut logged = format!("{error:?}");
                self.secrets.grants.guard.redact(&mut logged);
                tracing::info!(target: "airlock::http", adapter = %self.http.adapter, error = %logged, "request refused");
                return Ok(Err(error));
            }
        };
        let label = format!("{} {}", built.method(), built.url());
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
        if tracing::enabled!(target: "airlock::http", tracing::Level::DEBUG) {
            let mut request = label;
            self.secrets.grants.guard.redact(&mut request);
            tracing::debug!(target: "airlock::http", adapter = %self.http.adapter, %request,
                status = result.as_ref().ok().map(|r| r.status), "request done");
        }
        Ok(result)
    }
}

/// Send `request` and read the answer within the response-body bound.
///
/// The exchange runs as a task of its own, not inside the guest's fiber: polling hyper's
/// connection setup is deep, and every stack page it touches stays resident in the fiber's
/// stack while the call waits on the provider (measured: 30 KiB per in-flight call; see the
/// benchmark in docs/benchmarks.md). The guard aborts the task if the call is dropped
/// (deadline), so no request outlives its call.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_template_is_measured_without_being_built() {
        assert_eq!(filled_len("Bearer {secret}", 30), 37);
        assert_eq!(filled_len("{secret}:{secret}", 8), 17);
        assert_eq!(filled_len("no placeholder", 30), 14);
        // A million placeholders around a 30-byte secret: 30 MB, counted, not allocated.
        let template = SECRET_PLACEHOLDER.repeat(1_000_000);
        assert_eq!(filled_len(&template, 30), 30_000_000);
        assert_eq!(filled_len(&template, usize::MAX), u64::MAX);
    }

    #[test]
    fn host_owned_headers_are_refused_by_name_in_any_case() {
        for name in [
            "Connection",
            "UPGRADE",
            "expect",
            "Host",
            "Proxy-Authorization",
        ] {
            let Err(RequestError::Invalid(message)) = header_name(name) else {
                panic!("{name} is the host's")
            };
            assert_eq!(
                message,
                format!(
                    "header `{}` is set by the host, not the adapter",
                    name.to_ascii_lowercase()
                )
            );
        }
        assert_eq!(
            header_name("X-Request-Id").unwrap().as_str(),
            "x-request-id"
        );
        assert!(
            matches!(header_name("bad name"), Err(RequestError::Invalid(m)) if m == "\"bad name\" is not a valid header name")
        );
    }
}
