//! A hook between an adapter's *allowed* requests and the network, for the embedder alone.
//!
//! A request reaches an [`HttpInterceptor`] only after the policy allowed it and the host
//! built it (allow-list, address rules, secret headers, bounds): the hook cannot widen what a
//! guest may do. It decides what the provider "does": forward the request (to its own origin
//! or another one), answer it here, or fail it, optionally after the provider processed it.
//! `airlock check` uses it to inject provider faults and to record and replay exchanges; a
//! production runtime sets none ([`crate::RuntimeConfig::http_interceptor`]).

use std::fmt;

use url::Url;

/// An outbound request as the interceptor sees it. Values of headers that carry secrets
/// are replaced by [`InterceptedRequest::SECRET_PLACEHOLDER`], so a recording never holds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptedRequest {
    /// The adapter's name.
    pub adapter: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// The URL the guest asked for, as the policy judged it.
    pub url: String,
    /// Headers, lower-case names, in the order the guest gave them.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

impl InterceptedRequest {
    /// What a secret header's value reads as.
    pub const SECRET_PLACEHOLDER: &'static str = "<secret>";

    /// Whether the method changes something at the provider (anything but GET, HEAD,
    /// OPTIONS).
    pub fn is_mutating(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A failure the guest sees instead of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFailure {
    /// The connection broke: the guest gets `request-error.connection-failed`.
    ConnectionReset,
    /// No answer in time: the host holds the request until its timeout (the policy's
    /// `request_timeout_ms`, or less if the call's deadline is nearer) and the guest gets
    /// `request-error.timeout`.
    Timeout,
}

impl fmt::Display for InjectedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InjectedFailure::ConnectionReset => "connection reset by peer (injected)",
            InjectedFailure::Timeout => "no answer in time (injected)",
        })
    }
}

/// What happens to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interception {
    /// Send it. With `origin`, to that scheme, host and port instead of the URL's own (path
    /// and query kept): a stand-in provider.
    Forward {
        /// Replacement origin, or `None` for the request's own.
        origin: Option<Url>,
    },
    /// Do not send it; this is the provider's answer.
    Respond(ProviderResponse),
    /// Do not send it; the guest sees this failure.
    Fail(InjectedFailure),
    /// Send it, so the provider processes it, then drop the answer and let the guest see
    /// the failure: the case where a retry must not do the work twice.
    ForwardThenFail {
        /// Replacement origin, as for [`Interception::Forward`].
        origin: Option<Url>,
        /// What the guest sees.
        failure: InjectedFailure,
    },
}

/// The outcome of a request the host actually sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// The provider answered.
    Answered(ProviderResponse),
    /// No answer: the connection failed or timed out, with why.
    Failed(String),
}

/// The embedder's hook on allowed outbound requests; see the [module docs](self).
pub trait HttpInterceptor: Send + Sync + fmt::Debug {
    /// Decide what happens to `request`.
    fn intercept(&self, request: &InterceptedRequest) -> Interception;

    /// Called after a request was sent to the network (`Forward` or `ForwardThenFail`), with
    /// what came back, before any injected failure replaces it. The default does nothing.
    fn exchanged(&self, request: &InterceptedRequest, exchange: &Exchange) {
        let _ = (request, exchange);
    }
}

/// `url` with the scheme, host and port of `origin`.
pub(crate) fn rebase(url: &Url, origin: &Url) -> Url {
    let mut moved = origin.clone();
    moved.set_path(url.path());
    moved.set_query(url.query());
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebase_keeps_path_and_query_and_takes_the_origin() {
        let url = Url::parse("https://api.provider.example/v1/databases?x=1").unwrap();
        let origin = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            rebase(&url, &origin).as_str(),
            "http://127.0.0.1:8080/v1/databases?x=1"
        );
    }

    #[test]
    fn mutating_methods() {
        let request = |method: &str| InterceptedRequest {
            adapter: "a".into(),
            method: method.into(),
            url: "http://x/".into(),
            headers: vec![],
            body: vec![],
        };
        assert!(request("POST").is_mutating());
        assert!(request("DELETE").is_mutating());
        assert!(!request("GET").is_mutating());
        assert!(!request("HEAD").is_mutating());
    }
}
