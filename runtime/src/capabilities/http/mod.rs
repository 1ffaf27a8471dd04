//! The `http` capability. Outbound requests go only to destinations the adapter's policy
//! allows; this runtime version allows none yet, so every request is denied (an empty
//! allow-list means deny all) with a typed error naming what would grant it. The guest
//! sees `request-error.denied`; the SDK turns it into `AUTH`.

use wasmtime::component::ResourceTable;

use crate::bindings::airlock::adapter::http::{Host, Request, RequestError, Response};

/// One adapter's outbound HTTP policy.
pub(crate) struct OutboundHttp {
    adapter: String,
    pub(crate) requests: u32,
}

impl OutboundHttp {
    /// A policy that allows nothing.
    pub(crate) fn deny_all(adapter: &str) -> Self {
        OutboundHttp {
            adapter: adapter.to_owned(),
            requests: 0,
        }
    }
}

/// What the `http` host functions see of a call.
pub(crate) struct HttpView<'a> {
    pub(crate) http: &'a mut OutboundHttp,
    #[allow(dead_code)] // resolves secret handles once secrets can be granted
    pub(crate) table: &'a mut ResourceTable,
}

impl Host for HttpView<'_> {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, RequestError>> {
        self.http.requests = self.http.requests.saturating_add(1);
        tracing::info!(target: "airlock::http", adapter = %self.http.adapter, url = %request.url, "request denied");
        Ok(Err(RequestError::Denied(format!(
            "{:?} {} denied: the policy of adapter {:?} allows no HTTP destinations (an empty allow-list denies all)",
            request.method, request.url, self.http.adapter
        ))))
    }
}
