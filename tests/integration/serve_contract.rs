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

fn runtime_on(data_dir: &Path, database: Option<&str>) -> Runtime {
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
