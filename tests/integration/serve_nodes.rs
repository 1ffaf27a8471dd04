//! `airlock serve` as several processes and through its stop: two nodes on one
//! PostgreSQL database answer for each other's instances and streams, and a node stopped
//! with calls in flight finishes them, ends its streams and exits.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{EXAMPLE_ADAPTER, example_config};
use crate::nodes::TestDatabase;
use crate::serve::{Server, send, tenant_key};
use crate::serve_contract::{Client, SseReader, publish, runtime_on};

/// A slow create (four steps of 300 ms) with `key`, through `client`.
fn slow_create(client: &Client, key: &str) -> reqwest::RequestBuilder {
    client
        .request(reqwest::Method::POST, "/v1/adapters/example/instances")
        .header("idempotency-key", key)
        .json(&json!({ "config": example_config(300), "params": { "name": "slow", "wait": true } }))
}

#[test]
fn two_nodes_on_one_postgres_answer_for_each_others_instances_and_streams() {
    let Some(database) =
        TestDatabase::create("two_nodes_on_one_postgres_answer_for_each_others_instances")
    else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = Some(database.url.as_str());
    let key = tenant_key(dir_a.path(), url, "create", "acme");
    let runtime = runtime_on(dir_a.path(), url);
    let store = runtime.service_store();
    let (a, b) = (
        Server::start(dir_a.path(), url),
        Server::start(dir_b.path(), url),
    );
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        publish(store.as_ref(), "acme", "example", EXAMPLE_ADAPTER, "").await;
        let (on_a, on_b) = (Client::new(&a.url, &key), Client::new(&b.url, &key));
        assert_ne!(a.url, b.url, "two processes");

        // B follows the create's stream while A runs the create: progress crosses nodes
        // (LISTEN/NOTIFY) before the create answers.
        let mut on_b_stream = SseReader::open(on_b.request(
            reqwest::Method::GET,
            "/v1/adapters/example/creates/two-nodes/events",
        ))
        .await;
        let create = tokio::spawn(send(slow_create(&on_a, "two-nodes")));
        let first = on_b_stream
            .next(Duration::from_secs(10))
            .await
            .expect("progress on B");
        assert_eq!(first.kind, "progress");
        assert!(
            !create.is_finished(),
            "progress reached B only after A answered"
        );
        let created = create.await.unwrap();
        assert_eq!(created.status, 201, "{}", created.body);
        let id = created.body["instanceId"].as_str().unwrap().to_owned();
        let instance = format!("/v1/adapters/example/instances/{id}");

        // A's instance is B's too: status, its stream, the call record of A's create.
        let status = on_b.get(&instance).await;
        assert_eq!(
            (status.status, &status.body["status"]),
            (200, &json!("SUCCESS")),
            "{}",
            status.body
        );
        // A writes a call's record after answering it: B sees it once A's batch is
        // committed, milliseconds later.
        let record_path = format!("/v1/calls/{}", created.call_id);
        let patience = tokio::time::Instant::now() + Duration::from_secs(5);
        let record = loop {
            let record = on_b.get(&record_path).await;
            if record.status != 404 || tokio::time::Instant::now() > patience {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(record.status, 200, "{}", record.body);
        let mut on_a_stream = SseReader::open(
            on_a.request(reqwest::Method::GET, &format!("{instance}/events"))
                .header("last-event-id", "0"),
        )
        .await;
        let mut kinds = Vec::new();
        while let Some(event) = on_a_stream.next(Duration::from_secs(5)).await {
            kinds.push(event.kind);
            if kinds.len() == 8 {
                break;
            }
        }
        // The create's progress, log and receipt; then B's status call: status, receipt.
        assert_eq!(
            kinds,
            [
                "progress", "progress", "progress", "progress", "log", "receipt", "status",
                "receipt"
            ]
        );
        // Destroyed through B, live on A's open stream, recorded for A's listing.
        let destroyed = on_b.delete(&instance).await;
        assert_eq!(destroyed.status, 200, "{}", destroyed.body);
        let mut kinds = Vec::new();
        while let Some(event) = on_a_stream.next(Duration::from_secs(10)).await {
            assert_eq!(event.data["operation"], "destroy", "{event:?}");
            kinds.push(event.kind);
            if kinds.last().is_some_and(|k| k == "receipt") {
                break;
            }
        }
        assert_eq!(kinds, ["log", "receipt"], "B's destroy on A's stream");
        let listed = on_a.get("/v1/instances").await;
        assert!(
            listed.body["instances"][0]["destroyedMs"].is_i64(),
            "{}",
            listed.body
        );
    });
}

fn stops_with_calls_in_flight(data_dir: &Path) {
    let key = tenant_key(data_dir, None, "create", "acme");
    let runtime = runtime_on(data_dir, None);
    let store = runtime.service_store();
    let mut server = Server::start(data_dir, None);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        publish(store.as_ref(), "acme", "example", EXAMPLE_ADAPTER, "").await;
        let client = Client::new(&server.url, &key);
        let mut stream = SseReader::open(client.request(
            reqwest::Method::GET,
            "/v1/adapters/example/creates/stop-1/events",
        ))
        .await;
        let create = tokio::spawn(send(slow_create(&client, "stop-1")));
        let first = stream
            .next(Duration::from_secs(10))
            .await
            .expect("progress");
        assert_eq!(first.kind, "progress");

        // SIGTERM while the create runs (its first step of four is done).
        let pid = server.child.id().to_string();
        let stopped_at = Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let created = create.await.unwrap();
        assert_eq!(
            created.status, 201,
            "the call in flight finished: {}",
            created.body
        );
        assert_eq!(created.body["created"], true);
        // The open stream ended (after whatever it had), rather than holding the stop.
        while stream.next(Duration::from_secs(10)).await.is_some() {}
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "the stream outlived the stop"
        );
    });
    let status = server.stop();
    assert!(status.success(), "airlock serve exited with {status:?}");
    // It no longer accepts.
    let refused = tokio.block_on(
        reqwest::Client::new()
            .get(format!("{}/healthz", server.url))
            .send(),
    );
    assert!(refused.is_err(), "a stopped service answered");
    // What the cut-short stop left is whole: the instance is registered.
    let all = airlock::storage::service::InstanceFilter {
        limit: 100,
        ..Default::default()
    };
    let instances = tokio.block_on(store.instances("acme", &all)).unwrap();
    assert_eq!(instances.len(), 1, "{instances:?}");
}

#[test]
fn serve_stops_after_finishing_the_calls_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    stops_with_calls_in_flight(dir.path());
}
