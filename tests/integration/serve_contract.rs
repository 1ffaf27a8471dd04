//! The contract's operations through a real `airlock serve` process, on SQLite and on
//! PostgreSQL: every operation of the example adapter, idempotent create through the
//! header, the instance registry, adapter errors and their statuses (with
//! `Airlock-Error-Source: adapter`), the service's own refusals, and another tenant's
//! adapter and instances answering 404 on every endpoint.

use std::path::Path;
use std::time::{Duration, Instant};

use airlock::storage::service::{NewVersion, ServiceStore};
use airlock::{DatabaseUrl, Runtime, RuntimeConfig};
use serde_json::{Value, json};
use sha2::Digest;

use crate::common::{EXAMPLE_ADAPTER, HOSTILE_PANIC, HOSTILE_SPIN_LOOP, example_config};
use crate::nodes::TestDatabase;
use crate::serve::{Answer, Server, refused_as, send, tenant_key};

/// Store `path` as `tenant`'s `adapter` version 1 and make it active, as the registry does
/// after admission.
pub(crate) async fn publish(
    store: &dyn ServiceStore,
    tenant: &str,
    adapter: &str,
    path: &str,
    policy: &str,
) {
    let component = std::fs::read(path).unwrap();
    store
        .version_put(&NewVersion {
            tenant: tenant.into(),
            adapter: adapter.into(),
            version: "1".into(),
            sha256: hex::encode(sha2::Sha256::digest(&component)),
            component,
            policy: policy.into(),
            recording: None,
            admission: "{}".into(),
            admitted: true,
        })
        .await
        .unwrap();
    assert!(store.set_active(tenant, adapter, "1").await.unwrap());
}

/// A client of one tenant.
pub(crate) struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Client {
    pub(crate) fn new(url: &str, key: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            key: format!("Bearer {key}"),
        }
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", &self.key)
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        send(self.request(reqwest::Method::GET, path)).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Answer {
        send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Answer {
        send(self.request(reqwest::Method::DELETE, path)).await
    }
}

/// An adapter's error: its status, the adapter's source header and the seed's body.
fn adapter_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.source.as_deref(), Some("adapter"), "{}", answer.body);
    assert_eq!(answer.body["errorCode"], code, "{}", answer.body);
    assert!(answer.body["message"].is_string(), "{}", answer.body);
    assert!(
        answer.body.get("error").is_none(),
        "an adapter's error is not the service's body: {}",
        answer.body
    );
}

pub(crate) fn runtime_on(data_dir: &Path, database: Option<&str>) -> Runtime {
    Runtime::new(RuntimeConfig {
        database: database.map(|url| DatabaseUrl::parse(url).unwrap()),
        ..RuntimeConfig::with_data_dir(data_dir)
    })
    .unwrap()
}

fn contract_on(data_dir: &Path, database: Option<&str>) {
    let acme_key = tenant_key(data_dir, database, "create", "acme");
    let globex_key = tenant_key(data_dir, database, "create", "globex");
    let runtime = runtime_on(data_dir, database);
    let store = runtime.service_store();
    let server = Server::start(data_dir, database);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        publish(store.as_ref(), "acme", "example", EXAMPLE_ADAPTER, "").await;
        let acme = Client::new(&server.url, &acme_key);
        let globex = Client::new(&server.url, &globex_key);
        let config = example_config(0);

        // validate-config
        let valid = acme
            .post("/v1/adapters/example/validate-config", json!({ "config": config }))
            .await;
        assert_eq!((valid.status, &valid.body), (200, &json!({ "valid": true })));
        let invalid = acme
            .post(
                "/v1/adapters/example/validate-config",
                json!({ "config": { "region": "mars-1" } }),
            )
            .await;
        adapter_error(&invalid, 422, "VALIDATION");
        assert!(
            invalid.body["message"].as_str().unwrap().contains("region"),
            "{}",
            invalid.body
        );

        // create, idempotent through the header
        let create = |key: &'static str| {
            acme.request(reqwest::Method::POST, "/v1/adapters/example/instances")
                .header("idempotency-key", key)
                .json(&json!({ "config": config, "params": { "name": "db1" } }))
        };
        let created = send(create("order-42")).await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.body["created"], true);
        assert_eq!(created.body["idempotencyKey"], "order-42");
        let id = created.body["instanceId"].as_str().unwrap().to_owned();
        let again = send(create("order-42")).await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(
            (&again.body["instanceId"], &again.body["created"]),
            (&json!(id), &json!(false))
        );
        assert_ne!(created.call_id, again.call_id);
        // The key in the body works the same; a body and a header that differ are refused.
        let by_body = acme
            .post(
                "/v1/adapters/example/instances",
                json!({ "config": config, "params": { "name": "db1" }, "idempotencyKey": "order-42" }),
            )
            .await;
        assert_eq!((by_body.status, &by_body.body["instanceId"]), (200, &json!(id)));
        let both = send(
            acme.request(reqwest::Method::POST, "/v1/adapters/example/instances")
                .header("idempotency-key", "a")
                .json(&json!({ "config": config, "params": {}, "idempotencyKey": "b" })),
        )
        .await;
        refused_as(&both, 400, "bad_request");
        // A create the adapter refuses: its VALIDATION, nothing registered.
        let no_name = acme
            .post("/v1/adapters/example/instances", json!({ "config": config, "params": {} }))
            .await;
        adapter_error(&no_name, 422, "VALIDATION");

        // Every operation on the instance, with the config the service kept.
        let instance = format!("/v1/adapters/example/instances/{id}");
        let status = acme.get(&instance).await;
        assert_eq!((status.status, &status.body["status"]), (200, &json!("SUCCESS")), "{}", status.body);
        let credentials = acme.post(&format!("{instance}/credentials"), json!({})).await;
        assert_eq!(credentials.status, 200, "{}", credentials.body);
        assert_eq!(credentials.body["type"], "ephemeral", "{}", credentials.body);
        let paused = acme.post(&format!("{instance}/pause"), json!({})).await;
        assert_eq!(paused.status, 200, "{}", paused.body);
        let resumed = acme.post(&format!("{instance}/resume"), json!({})).await;
        assert_eq!((resumed.status, &resumed.body["status"]), (200, &json!("SUCCESS")), "{}", resumed.body);
        let rotated = acme.post(&format!("{instance}/rotate-credentials"), json!({})).await;
        assert_eq!(rotated.status, 200, "{}", rotated.body);
        assert_ne!(rotated.body["values"], credentials.body["values"], "{}", rotated.body);
        let costs = acme.get(&format!("{instance}/costs")).await;
        assert_eq!(costs.status, 200, "{}", costs.body);
        assert!(costs.body["hourly"].is_string(), "{}", costs.body);

        // The registry: the instance with its version, config and last status.
        let listed = acme.get("/v1/instances?adapter=example").await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        let instances = listed.body["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 1, "{}", listed.body);
        assert_eq!(instances[0]["instanceId"], json!(id));
        assert_eq!(instances[0]["version"], "1");
        assert_eq!(instances[0]["config"], config);
        assert_eq!(instances[0]["status"], "SUCCESS");
        assert!(instances[0]["destroyedMs"].is_null());
        let by_status = acme.get("/v1/instances?status=PENDING").await;
        assert_eq!(by_status.body["instances"], json!([]), "{}", by_status.body);

        // Another tenant: every endpoint answers 404, as for a name that does not exist.
        for answer in [
            globex.post("/v1/adapters/example/validate-config", json!({ "config": config })).await,
            globex.post("/v1/adapters/example/instances", json!({ "config": config, "params": { "name": "x" } })).await,
            globex.get(&instance).await,
            globex.post(&format!("{instance}/credentials"), json!({})).await,
            globex.post(&format!("{instance}/pause"), json!({})).await,
            globex.post(&format!("{instance}/resume"), json!({})).await,
            globex.post(&format!("{instance}/rotate-credentials"), json!({})).await,
            globex.get(&format!("{instance}/costs")).await,
            globex.delete(&instance).await,
        ] {
            refused_as(&answer, 404, "not_found");
        }
        assert_eq!(globex.get("/v1/instances").await.body["instances"], json!([]));
        // globex's own adapter of the same name is its own, with no instance of acme's.
        publish(store.as_ref(), "globex", "example", EXAMPLE_ADAPTER, "").await;
        refused_as(&globex.get(&instance).await, 404, "not_found");
        // ... and the instance survived globex's attempts.
        assert_eq!(acme.get(&instance).await.status, 200);

        // destroy, twice; status afterwards; the registry records it.
        let destroyed = acme.delete(&instance).await;
        assert_eq!(destroyed.status, 200, "{}", destroyed.body);
        assert_eq!(destroyed.body, json!({ "destroyed": true, "instanceId": id }));
        assert_eq!(acme.delete(&instance).await.status, 200);
        let after = acme.get(&instance).await;
        assert_eq!((after.status, &after.body["status"]), (200, &json!("CANCELLED")), "{}", after.body);
        let listed = acme.get("/v1/instances").await;
        assert!(listed.body["instances"][0]["destroyedMs"].is_i64(), "{}", listed.body);
        assert_eq!(listed.body["instances"][0]["status"], "CANCELLED");

        // The service's own refusals.
        refused_as(&acme.get("/v1/adapters/nope/instances/x").await, 404, "not_found");
        refused_as(&acme.get("/v1/adapters/example/instances/never-made").await, 404, "not_found");
        let malformed = send(
            acme.request(reqwest::Method::POST, "/v1/adapters/example/validate-config")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
        refused_as(&malformed, 400, "bad_request");
        store.version_put(&NewVersion {
            tenant: "acme".into(),
            adapter: "inactive".into(),
            version: "1".into(),
            sha256: "00".repeat(32),
            component: vec![0; 4],
            policy: String::new(),
            recording: None,
            admission: "{}".into(),
            admitted: true,
        }).await.unwrap();
        refused_as(
            &acme.post("/v1/adapters/inactive/validate-config", json!({ "config": {} })).await,
            409,
            "conflict",
        );
        let huge = send(
            // Its own connection: the service answers before reading the whole body and closes it.
            Client::new(&server.url, &acme_key).request(reqwest::Method::POST, "/v1/adapters/example/validate-config")
                .header("content-type", "application/json")
                .body(format!("{{\"config\": \"{}\"}}", "x".repeat(3 << 20))),
        )
        .await;
        refused_as(&huge, 413, "payload_too_large");
    });
}

#[test]
fn serve_runs_the_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    contract_on(dir.path(), None);
}

#[test]
fn serve_runs_the_contract_on_postgres() {
    let Some(database) = TestDatabase::create("serve_runs_the_contract_on_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    contract_on(dir.path(), Some(&database.url));
}

/// A guest that traps is INTERNAL (500) and one that burns its fuel LIMIT (429 with
/// Retry-After), both as the adapter's errors, with what stopped them in
/// `Airlock-Error-Origin`; while one tenant's adapter spins, another tenant's honest calls
/// are answered.
#[test]
fn serve_answers_guest_failures_as_the_adapters_and_keeps_serving_others() {
    let dir = tempfile::tempdir().unwrap();
    let acme_key = tenant_key(dir.path(), None, "create", "acme");
    let globex_key = tenant_key(dir.path(), None, "create", "globex");
    let runtime = runtime_on(dir.path(), None);
    let store = runtime.service_store();
    let server = Server::start(dir.path(), None);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        publish(store.as_ref(), "acme", "panic", HOSTILE_PANIC, "").await;
        publish(store.as_ref(), "acme", "spin", HOSTILE_SPIN_LOOP, "").await;
        publish(store.as_ref(), "globex", "example", EXAMPLE_ADAPTER, "").await;
        let acme = Client::new(&server.url, &acme_key);
        let globex = Client::new(&server.url, &globex_key);
        let body = json!({ "config": {} });

        let response = acme
            .request(reqwest::Method::POST, "/v1/adapters/panic/validate-config")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["airlock-error-source"], "adapter");
        assert_eq!(response.headers()["airlock-error-origin"], "trap");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["errorCode"], "INTERNAL", "{error}");

        let response = acme
            .request(reqwest::Method::POST, "/v1/adapters/spin/validate-config")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["airlock-error-source"], "adapter");
        assert_eq!(response.headers()["airlock-error-origin"], "limit");
        assert_eq!(response.headers()["retry-after"], "1");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["errorCode"], "LIMIT", "{error}");

        // Eight spinning calls of acme's beside globex's honest ones: globex's are all
        // answered, each well within the spinning calls' own run time (documented in
        // docs/service.md; the measured figures are in docs/benchmarks.md).
        let spinning: Vec<_> = (0..8)
            .map(|_| {
                let request = acme
                    .request(reqwest::Method::POST, "/v1/adapters/spin/validate-config")
                    .json(&body);
                tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        let config = json!({ "config": example_config(0) });
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = Instant::now();
            let answer = globex
                .post("/v1/adapters/example/validate-config", config.clone())
                .await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
        for call in spinning {
            assert_eq!(call.await.unwrap().unwrap(), 429);
        }
        assert!(
            slowest < Duration::from_secs(5),
            "an honest call took {slowest:?} beside a spinning tenant"
        );
    });
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) data: Value,
}

/// A server-sent-event stream read from a response body.
pub(crate) struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub(crate) async fn open(request: reqwest::RequestBuilder) -> SseReader {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), or `None` when the stream ended or
    /// nothing came within `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                if let (Some(id), Some(kind), Some(data)) = (id, kind, data) {
                    return Some(SseEvent { id, kind, data });
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// A slow create (the example's `wait`: four steps of 300 ms) followed on its key's
/// stream: its progress arrives while the create is still running; afterwards the
/// instance's stream holds the progress, logs and receipt, a stream resumed with
/// `Last-Event-ID` continues after that event exactly, and the call's record is there.
fn events_on(data_dir: &Path, database: Option<&str>) {
    let key = tenant_key(data_dir, database, "create", "acme");
    let runtime = runtime_on(data_dir, database);
    let store = runtime.service_store();
    let server = Server::start(data_dir, database);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        publish(store.as_ref(), "acme", "example", EXAMPLE_ADAPTER, "").await;
        let acme = Client::new(&server.url, &key);
        let mut live = SseReader::open(
            acme.request(reqwest::Method::GET, "/v1/adapters/example/creates/slow-1/events"),
        )
        .await;
        let create = acme
            .request(reqwest::Method::POST, "/v1/adapters/example/instances")
            .header("idempotency-key", "slow-1")
            .json(&json!({ "config": example_config(300), "params": { "name": "slow", "wait": true } }));
        let started = Instant::now();
        let create = tokio::spawn(async move { send(create).await });

        let first = live.next(Duration::from_secs(10)).await.expect("a progress event");
        assert_eq!(first.kind, "progress", "{first:?}");
        assert_eq!((&first.data["current"], &first.data["total"]), (&json!(1), &json!(4)));
        assert!(
            !create.is_finished(),
            "the first progress event came after the create had answered"
        );
        let mut kinds = vec![first.kind.clone()];
        while let Some(event) = live.next(Duration::from_secs(10)).await {
            kinds.push(event.kind.clone());
            if event.kind == "receipt" {
                assert_eq!(event.data["operation"], "create");
                break;
            }
        }
        assert_eq!(
            kinds,
            ["progress", "progress", "progress", "progress", "log", "receipt"],
            "the create's stream"
        );
        let created = create.await.unwrap();
        assert_eq!(created.status, 201, "{}", created.body);
        assert!(started.elapsed() >= Duration::from_millis(1200));
        let id = created.body["instanceId"].as_str().unwrap().to_owned();

        // The instance's stream from the start, then resumed after its second event.
        let events = format!("/v1/adapters/example/instances/{id}/events");
        let mut all = SseReader::open(acme.request(reqwest::Method::GET, &events)).await;
        let mut stored = Vec::new();
        while let Some(event) = all.next(Duration::from_secs(3)).await {
            stored.push(event);
            if stored.len() == 6 {
                break;
            }
        }
        let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["progress", "progress", "progress", "progress", "log", "receipt"]);
        assert!(stored.windows(2).all(|w| w[0].id < w[1].id), "{stored:?}");
        let mut resumed = SseReader::open(
            acme.request(reqwest::Method::GET, &events)
                .header("last-event-id", stored[1].id.to_string()),
        )
        .await;
        let next = resumed.next(Duration::from_secs(3)).await.unwrap();
        assert_eq!(next.id, stored[2].id, "resumed right after the event it named");

        // A status call appears live on the open stream: its status change and receipt.
        let status = acme.get(&format!("/v1/adapters/example/instances/{id}")).await;
        assert_eq!(status.status, 200, "{}", status.body);
        let mut live_kinds = Vec::new();
        while let Some(event) = all.next(Duration::from_secs(10)).await {
            live_kinds.push(event.kind.clone());
            if event.kind == "receipt" {
                assert_eq!(event.data["callId"], json!(status.call_id));
                break;
            }
        }
        assert_eq!(live_kinds, ["status", "receipt"]);

        // The create's record: its receipt and its (redacted) logs.
        let record = acme.get(&format!("/v1/calls/{}", created.call_id)).await;
        assert_eq!(record.status, 200, "{}", record.body);
        assert_eq!(record.body["operation"], "create");
        assert_eq!(record.body["receipt"]["operation"], "create");
        assert!(record.body["logs"][0]["message"].as_str().unwrap().contains(&id), "{}", record.body);
    });
}

#[test]
fn serve_streams_a_slow_creates_events_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    events_on(dir.path(), None);
}

#[test]
fn serve_streams_a_slow_creates_events_on_postgres() {
    let Some(database) = TestDatabase::create("serve_streams_a_slow_creates_events_on_postgres")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    events_on(dir.path(), Some(&database.url));
}

/// A tenant's quotas, from its ceiling: past its calls per second the service refuses with
/// its own 429 (`quota_exceeded`, `Airlock-Error-Source: airlock`), not the adapter's, and
/// another tenant's calls go on.
#[test]
fn serve_enforces_a_tenants_call_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let ceiling = dir.path().join("ceiling.toml");
    std::fs::write(
        &ceiling,
        "[quotas]\ncalls_per_second = 3\nconcurrent_calls = 2\n",
    )
    .unwrap();
    let output = std::process::Command::new(crate::serve::AIRLOCK)
        .args(crate::serve::global_args(dir.path(), None))
        .args(["tenant", "create", "small", "--ceiling"])
        .arg(&ceiling)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let small_key = serde_json::from_slice::<Value>(&output.stdout).unwrap()["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let big_key = tenant_key(dir.path(), None, "create", "big");
    let runtime = runtime_on(dir.path(), None);
    let store = runtime.service_store();
    let server = Server::start(dir.path(), None);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        publish(store.as_ref(), "small", "example", EXAMPLE_ADAPTER, "").await;
        publish(store.as_ref(), "big", "example", EXAMPLE_ADAPTER, "").await;
        let small = Client::new(&server.url, &small_key);
        let big = Client::new(&server.url, &big_key);
        let body = json!({ "config": example_config(0) });
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let answer = small
                .post("/v1/adapters/example/validate-config", body.clone())
                .await;
            if answer.status == 429 {
                refused_as(&answer, 429, "quota_exceeded");
                assert!(
                    answer.body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("calls_per_second"),
                    "{}",
                    answer.body
                );
            }
            statuses.push(answer.status);
        }
        assert!(statuses[..3].iter().all(|s| *s == 200), "{statuses:?}");
        assert!(
            statuses.contains(&429),
            "eight calls at once passed a quota of 3/s: {statuses:?}"
        );
        let other = big
            .post("/v1/adapters/example/validate-config", body.clone())
            .await;
        assert_eq!(other.status, 200, "another tenant's call: {}", other.body);
        // The quota refills: after a second the tenant is served again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = small
            .post("/v1/adapters/example/validate-config", body)
            .await;
        assert_eq!(again.status, 200, "{}", again.body);
    });
}
