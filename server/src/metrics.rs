//! The service's metrics, served as Prometheus text at `GET /metrics`.
//!
//! One `metrics-exporter-prometheus` recorder is installed per process (`handle`, behind
//! a `OnceLock`: tests build several routers in one process). The runtime records its own
//! metrics (instances in use, pool wait, breaker transitions) through the `metrics` facade;
//! this recorder collects those too. Histograms have explicit buckets, so they render as
//! Prometheus histograms (`_bucket{le=…}`), not summaries.
//!
//! What the other parts of the service call:
//! - [`record_call`] after every adapter call, with its receipt;
//! - [`record_admission_refusal`] when admission refuses an upload;
//! - `track_http` is the router's middleware (every request, by matched route template);
//! - the quotas ([`crate::quotas`]) keep `airlock_calls_in_flight` and
//!   `airlock_quota_refusals_total` themselves.
//!
//! **Labels and cardinality.** Counters carry `tenant` (tenants are created by the operator,
//! so their number is bounded by the operator) and the call counter `adapter` (a tenant's
//! adapter names, each a stored upload). Histograms carry only `operation` (nine values),
//! so their series — one per bucket — do not multiply with tenants and adapters; per-call
//! detail is in each call's receipt. Every other label takes a fixed set of values.
//! docs/service.md ("Quotas and metrics") lists every metric.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The content type of Prometheus' text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of durations in seconds: 10 µs to 60 s (an adapter call's deadline is at most
/// minutes; a trivial call is ~15 µs).
const SECONDS_BUCKETS: [f64; 20] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Buckets of fuel: a trivial call burns ~2,400 units; policies allow billions.
const FUEL_BUCKETS: [f64; 15] = [
    1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10,
];

/// Buckets of linear memory in bytes: one 64 KiB page to 4 GiB.
const MEMORY_BUCKETS: [f64; 9] = [
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// The process's Prometheus recorder, installed on first use.
pub(crate) fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("airlock_call_fuel".into()), &FUEL_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("airlock_call_memory_peak_bytes".into()),
                        &MEMORY_BUCKETS,
                    )
                })
                .expect("the bucket lists are not empty")
        };
        let handle = match builder().install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                // The embedder installed a recorder of its own: `/metrics` then renders an
                // empty recorder, and the embedder's collects the metrics.
                tracing::warn!(target: "airlock::serve", %error, "another metrics recorder is installed; GET /metrics will be empty");
                builder().build_recorder().handle()
            }
        };
        describe();
        // Histograms keep raw samples until they are rendered or upkept; without a scrape
        // they would grow for ever.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("airlock-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(target: "airlock::serve", %error, "cannot start the metrics upkeep thread");
        }
        handle
    })
}

/// The HELP lines.
fn describe() {
    describe_counter!(
        "airlock_calls_total",
        "Adapter calls by tenant, adapter, operation and outcome (ok or the error code)."
    );
    describe_histogram!(
        "airlock_call_duration_seconds",
        Unit::Seconds,
        "Wall time of an adapter call (its receipt's wall_time_us), by operation."
    );
    describe_histogram!(
        "airlock_call_fuel",
        "Fuel an adapter call burned, by operation."
    );
    describe_histogram!(
        "airlock_call_memory_peak_bytes",
        Unit::Bytes,
        "Highest linear memory of an adapter call's instance, by operation."
    );
    describe_counter!(
        "airlock_limit_hits_total",
        "Adapter calls stopped by a limit, by kind (fuel, memory, table, deadline, pool)."
    );
    describe_counter!(
        "airlock_redactions_total",
        "Secret values the leak guard replaced in, or found in, adapter output."
    );
    describe_counter!(
        "airlock_idempotency_total",
        "Keyed creates by what the idempotency layer did: claimed, resumed (lease takeover), replayed, fenced."
    );
    describe_counter!(
        "airlock_admission_refusals_total",
        "Uploaded versions refused by admission, by rule."
    );
    describe_counter!(
        "airlock_quota_refusals_total",
        "Calls refused 429 by a tenant's quota on this node, by tenant and quota."
    );
    describe_gauge!(
        "airlock_calls_in_flight",
        "Adapter calls admitted by the quotas and not yet finished, on this node."
    );
    describe_counter!(
        "airlock_http_requests_total",
        "HTTP requests by matched route template, method and status."
    );
    describe_histogram!(
        "airlock_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request duration until the answer's head, by matched route template."
    );
    describe_gauge!(
        "airlock_instances_in_use",
        "Adapter instances holding a slot of the runtime's pool."
    );
    describe_histogram!(
        "airlock_pool_wait_seconds",
        Unit::Seconds,
        "Time a call waited for a slot of the instance pool."
    );
    describe_counter!(
        "airlock_breaker_transitions_total",
        "Circuit breaker state changes, by the state entered (open, half_open, closed)."
    );
    describe_gauge!(
        "airlock_breaker_open",
        "Adapters whose circuit breaker is not closed (open or half-open)."
    );
}

/// This node's metrics, in Prometheus' text format.
///
/// Without a key, like `/healthz`: the text names tenants and adapters, so the operator
/// exposes it to its own network only.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The node's metrics, in Prometheus' text exposition format (docs/service.md lists them)",
        body = String, content_type = "text/plain")))]
pub(crate) async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], handle().render()).into_response()
}

/// An error code as a `'static` label without allocating, for the known ones.
fn outcome_label(code: &str) -> metrics::SharedString {
    if code == "ok" {
        return "ok".into();
    }
    match airlock::ErrorCode::ALL.iter().find(|c| c.as_str() == code) {
        Some(known) => known.as_str().into(),
        None => code.to_owned().into(),
    }
}

/// An operation's name as a `'static` label (the receipt's own, else a known name).
fn operation_label(operation: &str) -> metrics::SharedString {
    match airlock::OPERATION_NAMES
        .iter()
        .find(|name| **name == operation)
    {
        Some(known) => (*known).into(),
        None => operation.to_owned().into(),
    }
}

/// Record one finished adapter call of `tenant`'s adapter `adapter`: its outcome
/// (`outcome_code`: `ok`, or the error code, `VALIDATION` … `INTERNAL`) and what its
/// receipt measured (duration, fuel, memory, the limit that stopped it, redactions, what
/// the idempotency layer did). Call it once per call, also for calls the runtime refused.
pub fn record_call(
    tenant: &str,
    adapter: &str,
    operation: &str,
    receipt: &airlock::Receipt,
    outcome_code: &str,
) {
    let operation = operation_label(operation);
    counter!(
        "airlock_calls_total",
        "tenant" => tenant.to_owned(),
        "adapter" => adapter.to_owned(),
        "operation" => operation.clone(),
        "outcome" => outcome_label(outcome_code),
    )
    .increment(1);
    histogram!("airlock_call_duration_seconds", "operation" => operation.clone())
        .record(receipt.wall_time_us as f64 / 1e6);
    histogram!("airlock_call_fuel", "operation" => operation.clone())
        .record(receipt.fuel_consumed as f64);
    histogram!("airlock_call_memory_peak_bytes", "operation" => operation)
        .record(receipt.memory_peak_bytes as f64);
    if let Some(kind) = receipt.limit_hit {
        counter!("airlock_limit_hits_total", "kind" => kind.as_str()).increment(1);
    }
    if receipt.redactions > 0 {
        counter!("airlock_redactions_total").increment(u64::from(receipt.redactions));
    }
    if let Some(outcome) = receipt.idempotency {
        counter!("airlock_idempotency_total", "outcome" => outcome).increment(1);
    }
}

/// Record that admission refused an uploaded version by `rule` (a fixed name of the
/// refusing check, e.g. `ceiling` or `policy`: never a value from the upload, which would
/// make the label unbounded).
pub fn record_admission_refusal(rule: &str) {
    counter!("airlock_admission_refusals_total", "rule" => rule.to_owned()).increment(1);
}

/// A tenant's call refused by its `quota` (`concurrent_calls`, `calls_per_second`).
pub(crate) fn record_quota_refusal(tenant: &str, quota: &'static str) {
    counter!("airlock_quota_refusals_total", "tenant" => tenant.to_owned(), "quota" => quota)
        .increment(1);
}

/// A call was admitted by the quotas ([`crate::quotas::CallPermit`] made).
pub(crate) fn call_started() {
    gauge!("airlock_calls_in_flight").increment(1.0);
}

/// An admitted call finished (its permit dropped).
pub(crate) fn call_finished() {
    gauge!("airlock_calls_in_flight").decrement(1.0);
}

/// A method as a `'static` label for the usual ones.
fn method_label(method: &Method) -> metrics::SharedString {
    match *method {
        Method::GET => "GET".into(),
        Method::POST => "POST".into(),
        Method::PUT => "PUT".into(),
        Method::DELETE => "DELETE".into(),
        Method::PATCH => "PATCH".into(),
        Method::HEAD => "HEAD".into(),
        Method::OPTIONS => "OPTIONS".into(),
        // Any other method has no route: one label for all, so a client cannot make series.
        _ => "other".into(),
    }
}

/// The router's middleware: counts every request and times it by its matched route
/// template (`/v1/adapters/{name}`, never the raw path, whose names would make a series
/// each); a request no route matched is `unmatched`.
pub(crate) async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    counter!(
        "airlock_http_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => response.status().as_str().to_owned(),
    )
    .increment(1);
    histogram!("airlock_http_request_duration_seconds", "route" => route).record(elapsed);
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A served router on 127.0.0.1:0 over a runtime on a temporary directory, with tenant
    /// `tenant` (ceiling text `ceiling`); its base URL and the tenant's key.
    pub(crate) async fn serve(
        tenant: &str,
        ceiling: Option<&str>,
    ) -> (String, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = airlock::Runtime::new(airlock::RuntimeConfig {
            pool_size: 2,
            ..airlock::RuntimeConfig::with_data_dir(dir.path())
        })
        .unwrap();
        let key = crate::Tenants::new(runtime.service_store())
            .create(tenant, None)
            .await
            .unwrap();
        if let Some(text) = ceiling {
            // Straight into the row, as a hand-edited database would have it.
            assert!(
                runtime
                    .service_store()
                    .tenant_set_ceiling(tenant, Some(text))
                    .await
                    .unwrap()
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = crate::http::router(runtime);
        tokio::spawn(async move { axum::serve(listener, router).await });
        (url, key.reveal().to_owned(), dir)
    }

    fn receipt() -> airlock::Receipt {
        airlock::Receipt {
            adapter: "metrics-test".into(),
            operation: "create",
            wall_time_us: 1_500,
            fuel_consumed: 2_400,
            fuel_limit: 1_000_000,
            memory_peak_bytes: 1_114_112,
            memory_limit_bytes: 64 << 20,
            deadline_ms: 10_000,
            limit_hit: Some(airlock::LimitKind::Fuel),
            error_code: Some(airlock::ErrorCode::Limit),
            instantiated: true,
            attempts: 1,
            idempotency: Some("resumed"),
            redactions: 2,
            secrets_revealed: 0,
            state_ops: 0,
            state_writes: 0,
            http_requests: 0,
            log_records: 0,
            logs_dropped: 0,
            progress_dropped: 0,
            stdio_bytes: 0,
            stdio_dropped_bytes: 0,
        }
    }

    #[tokio::test]
    async fn metrics_render_calls_as_histograms_and_requests_by_route_template() {
        let (url, key, _dir) = serve("metrics-acme", None).await;
        let client = reqwest::Client::new();
        let missing = client
            .get(format!("{url}/v1/adapters/no-such-adapter"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let unrouted = client
            .get(format!("{url}/no/such/route"))
            .send()
            .await
            .unwrap();
        assert_eq!(unrouted.status(), 404);
        record_call(
            "metrics-acme",
            "metrics-test",
            "create",
            &receipt(),
            "LIMIT",
        );
        record_admission_refusal("ceiling");

        let answer = client.get(format!("{url}/metrics")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = answer.text().await.unwrap();
        for (name, kind) in [
            ("airlock_calls_total", "counter"),
            ("airlock_call_duration_seconds", "histogram"),
            ("airlock_call_fuel", "histogram"),
            ("airlock_call_memory_peak_bytes", "histogram"),
            ("airlock_limit_hits_total", "counter"),
            ("airlock_redactions_total", "counter"),
            ("airlock_idempotency_total", "counter"),
            ("airlock_admission_refusals_total", "counter"),
            ("airlock_http_requests_total", "counter"),
            ("airlock_http_request_duration_seconds", "histogram"),
        ] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}:\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "no TYPE {kind} for {name}:\n{text}"
            );
        }
        for line in [
            r#"airlock_calls_total{tenant="metrics-acme",adapter="metrics-test",operation="create",outcome="LIMIT"} 1"#,
            r#"airlock_call_duration_seconds_bucket{operation="create",le="0.0025"}"#,
            r#"airlock_call_fuel_bucket{operation="create",le="3000"}"#,
            r#"airlock_call_memory_peak_bytes_bucket{operation="create",le="4194304"}"#,
            r#"airlock_limit_hits_total{kind="fuel"}"#,
            r#"airlock_idempotency_total{outcome="resumed"}"#,
            r#"airlock_admission_refusals_total{rule="ceiling"}"#,
            r#"airlock_http_requests_total{route="/v1/adapters/{name}",method="GET",status="404"}"#,
            r#"airlock_http_requests_total{route="unmatched",method="GET",status="404"}"#,
            r#"airlock_http_request_duration_seconds_bucket{route="/v1/adapters/{name}",le="#,
        ] {
            assert!(text.contains(line), "no {line}:\n{text}");
        }
        assert!(
            !text.contains("no-such-adapter") && !text.contains("/no/such/route"),
            "a raw path became a label:\n{text}"
        );
        // Summaries would have quantiles; every histogram has buckets.
        assert!(!text.contains("quantile="), "{text}");
    }
}
