//! The fake cloud's HTTP API, against a real server on 127.0.0.1.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fakecloud::{FakeCloud, FakeCloudConfig, Fault};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "fakecloud-test-token";

async fn start(config: FakeCloudConfig) -> (FakeCloud, Api) {
    let cloud = FakeCloud::start(config).await.expect("starting fakecloud");
    assert_eq!(cloud.addr().ip().to_string(), "127.0.0.1");
    assert_eq!(cloud.base_url(), format!("http://{}", cloud.addr()));
    let api = Api {
        base: cloud.base_url(),
        client: Client::new(),
    };
    (cloud, api)
}

/// A little client that returns (status, retry-after, body) for every call.
struct Api {
    base: String,
    client: Client,
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply {
            status,
            retry_after,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(TOKEN), None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(TOKEN), Some(body)).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(TOKEN), None).await
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Poll a database until it is AVAILABLE; returns every body seen.
async fn wait_available(api: &Api, id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let reply = api.get(&format!("/v1/databases/{id}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let done = reply.body["state"] == "AVAILABLE";
        seen.push(reply.body);
        if done {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "never became AVAILABLE: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn requests_without_the_right_bearer_token_are_401() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;
    let expected = json!({"error": "unauthorized", "message": "missing or invalid bearer token"});

    let missing = api.call(Method::GET, "/v1/databases", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body, expected);

    let wrong = api
        .call(Method::GET, "/v1/databases", Some("not-the-token"), None)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, expected);

    let basic = api
        .client
        .get(format!("{}/v1/databases", api.base))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let unauthorised_create = api
        .call(
            Method::POST,
            "/v1/databases",
            Some("wrong"),
            Some(json!({"name": "db1"})),
        )
        .await;
    assert_eq!(unauthorised_create.status, StatusCode::UNAUTHORIZED);
    assert_eq!(cloud.resource_count(), 0);

    let ok = api.get("/v1/databases").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, json!({"databases": []}));
    assert_eq!(cloud.request_count(), 5);
}

#[tokio::test]
async fn create_is_idempotent_on_client_token() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;

    let first = api
        .post(
            "/v1/databases",
            json!({"name": "orders", "plan": "medium", "clientToken": "order-42"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let body = &first.body;
    assert_eq!(body["id"], "db-000001");
    assert_eq!(body["name"], "orders");
    assert_eq!(body["plan"], "medium");
    assert_eq!(body["clientToken"], "order-42");
    assert_eq!(body["state"], "CREATING");
    assert_eq!(body["progress"], json!({"current": 0, "total": 4}));
    assert_eq!(
        body["endpoint"],
        json!({"host": "db-000001.fakecloud.internal", "port": 5432})
    );
    let created_at = body["createdAtMs"].as_u64().unwrap();
    assert!(created_at <= now_ms() && created_at + 10_000 > now_ms());

    let again = api
        .post(
            "/v1/databases",
            json!({"name": "orders", "plan": "medium", "clientToken": "order-42"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], "db-000001");
    assert_eq!(again.body["createdAtMs"], body["createdAtMs"]);
    assert_eq!(cloud.resource_count(), 1);

    // Another token, or none, is another database; the plan defaults to small.
    let other = api
        .post(
            "/v1/databases",
            json!({"name": "orders", "clientToken": "order-43"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_eq!(other.body["id"], "db-000002");
    assert_eq!(other.body["plan"], "small");
    let untokened = api.post("/v1/databases", json!({"name": "orders"})).await;
    assert_eq!(untokened.status, StatusCode::CREATED);
    assert_eq!(untokened.body["id"], "db-000003");
    assert_eq!(untokened.body["clientToken"], Value::Null);
    assert_eq!(cloud.resource_count(), 3);

    let list = api.get("/v1/databases").await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list.body["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|db| db["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["db-000001", "db-000002", "db-000003"]);

    // Once the database with that token is deleted, the token makes a new one.
    assert_eq!(
        api.delete("/v1/databases/db-000001").await.status,
        StatusCode::ACCEPTED
    );
    let reborn = api
        .post(
            "/v1/databases",
            json!({"name": "orders", "clientToken": "order-42"}),
        )
        .await;
    assert_eq!(reborn.status, StatusCode::CREATED);
    assert_eq!(reborn.body["id"], "db-000004");
}

#[tokio::test]
async fn bad_create_bodies_are_400_naming_the_field() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;
    let cases = [
        (json!({}), "name", "name is required"),
        (json!({"name": 7}), "name", "name must be a string"),
        (
            json!({"name": ""}),
            "name",
            "name must be 1 to 63 characters long",
        ),
        (
            json!({"name": "a".repeat(64)}),
            "name",
            "name must be 1 to 63 characters long",
        ),
        (
            json!({"name": "Orders_1"}),
            "name",
            "name may contain only lower-case letters, digits and '-'",
        ),
        (
            json!({"name": "db1", "plan": "huge"}),
            "plan",
            "plan must be one of small, medium, large; got \"huge\"",
        ),
        (
            json!({"name": "db1", "clientToken": ""}),
            "clientToken",
            "clientToken must be 1 to 256 bytes long",
        ),
        (
            json!({"name": "db1", "clientToken": ["x"]}),
            "clientToken",
            "clientToken must be a string",
        ),
    ];
    for (body, field, message) in cases {
        let reply = api.post("/v1/databases", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            reply.body,
            json!({"error": "invalid_request", "message": message, "field": field}),
            "{body}"
        );
    }
    let not_json = api
        .client
        .post(format!("{}/v1/databases", api.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let body: Value = not_json.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("request body: not valid JSON")
    );
    let array = api.post("/v1/databases", json!(["db1"])).await;
    assert_eq!(array.status, StatusCode::BAD_REQUEST);
    assert_eq!(array.body["message"], "request body: must be a JSON object");
    assert_eq!(cloud.resource_count(), 0);
}

#[tokio::test]
async fn progress_moves_from_creating_to_available() {
    let (_cloud, api) = start(FakeCloudConfig {
        step_millis: 50,
        ..Default::default()
    })
    .await;
    let created = api.post("/v1/databases", json!({"name": "db1"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["state"], "CREATING");
    assert_eq!(created.body["progress"], json!({"current": 0, "total": 4}));

    let started = Instant::now();
    let seen = wait_available(&api, "db-000001").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut last = 0;
    for body in &seen {
        let current = body["progress"]["current"].as_u64().unwrap();
        assert_eq!(body["progress"]["total"], 4);
        assert!(current >= last, "progress went backwards: {seen:?}");
        last = current;
        if body["state"] == "CREATING" {
            assert!(current < 4, "{body}");
        } else {
            assert_eq!(body["state"], "AVAILABLE");
            assert_eq!(current, 4);
        }
    }
    let last = seen.last().unwrap();
    assert_eq!(last["state"], "AVAILABLE");
    assert_eq!(last["progress"], json!({"current": 4, "total": 4}));
}

#[tokio::test]
async fn zero_step_time_is_available_at_once() {
    let (_cloud, api) = start(FakeCloudConfig {
        step_millis: 0,
        ..Default::default()
    })
    .await;
    let created = api.post("/v1/databases", json!({"name": "db1"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["state"], "AVAILABLE");
    assert_eq!(created.body["progress"], json!({"current": 4, "total": 4}));
}

#[tokio::test]
async fn delete_removes_at_once_and_then_404() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;
    let created = api.post("/v1/databases", json!({"name": "db1"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(cloud.resource_count(), 1);

    let deleted = api.delete("/v1/databases/db-000001").await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    assert_eq!(
        deleted.body,
        json!({"id": "db-000001", "state": "DELETING"})
    );
    assert_eq!(cloud.resource_count(), 0);

    let expected = json!({"error": "not_found", "message": "database \"db-000001\" not found"});
    let gone = api.get("/v1/databases/db-000001").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body, expected);
    let again = api.delete("/v1/databases/db-000001").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body, expected);
    let credentials = api
        .post("/v1/databases/db-000001/credentials", json!({}))
        .await;
    assert_eq!(credentials.status, StatusCode::NOT_FOUND);
    let list = api.get("/v1/databases").await;
    assert_eq!(list.body, json!({"databases": []}));
    let never = api.get("/v1/databases/db-999999").await;
    assert_eq!(never.status, StatusCode::NOT_FOUND);
    assert_eq!(never.body["error"], "not_found");
}

#[tokio::test]
async fn credentials_are_409_while_creating_then_201() {
    let (_cloud, api) = start(FakeCloudConfig {
        step_millis: 100,
        steps: 2,
        credential_ttl_secs: 600,
        ..Default::default()
    })
    .await;
    let created = api.post("/v1/databases", json!({"name": "db1"})).await;
    assert_eq!(created.status, StatusCode::CREATED);

    let early = api
        .call(
            Method::POST,
            "/v1/databases/db-000001/credentials",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(early.body["error"], "not_ready");
    assert!(
        early.body["message"]
            .as_str()
            .unwrap()
            .contains("still being created")
    );

    wait_available(&api, "db-000001").await;
    let before = now_ms();
    let issued = api
        .call(
            Method::POST,
            "/v1/databases/db-000001/credentials",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    let body = issued.body.as_object().unwrap();
    assert_eq!(body.len(), 3, "{body:?}");
    assert_eq!(body["username"], "u_db-000001");
    let password = body["password"].as_str().unwrap();
    assert_eq!(password.len(), 24);
    assert!(
        password.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{password}"
    );
    let expires = body["expiresAtMs"].as_u64().unwrap();
    assert!(expires >= before + 600_000, "{expires} vs {before}");
    assert!(expires <= now_ms() + 600_000);

    let second = api
        .post("/v1/databases/db-000001/credentials", json!({}))
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_ne!(second.body["password"], body["password"]);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let (cloud, api) = start(FakeCloudConfig {
        rate_limit_per_second: Some(3),
        ..Default::default()
    })
    .await;
    // A burst that straddles a window boundary is retried, a bounded number of times.
    for attempt in 0..5 {
        let started = Instant::now();
        let mut statuses = Vec::new();
        let mut limited = None;
        for _ in 0..4 {
            let reply = api.get("/v1/databases").await;
            statuses.push(reply.status);
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                limited = Some(reply);
            }
        }
        if started.elapsed() >= Duration::from_millis(900) {
            assert!(attempt < 4, "every burst took a second or more");
            tokio::time::sleep(Duration::from_millis(1100)).await;
            continue;
        }
        // Every burst starts a fresh window (the sleep above outlasts the last one).
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        let limited = limited.expect("a request over the limit");
        assert_eq!(limited.retry_after.as_deref(), Some("1"));
        assert_eq!(limited.body["error"], "rate_limited");
        break;
    }
    // The next window lets requests through again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.get("/v1/databases").await.status, StatusCode::OK);
    assert!(cloud.request_count() >= 5);
}

#[tokio::test]
async fn injected_status_faults_honour_their_count() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;
    cloud.inject_fault(Fault::Status {
        status: 503,
        count: 2,
    });
    cloud.inject_fault(Fault::Status {
        status: 429,
        count: 1,
    });
    for _ in 0..2 {
        let reply = api.post("/v1/databases", json!({"name": "db1"})).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.body["error"], "injected");
        assert_eq!(reply.retry_after, None);
    }
    let throttled = api.get("/v1/databases").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.body["error"], "injected");
    assert_eq!(throttled.retry_after.as_deref(), Some("2"));
    // Faulted requests were not handled.
    assert_eq!(cloud.resource_count(), 0);
    let ok = api.post("/v1/databases", json!({"name": "db1"})).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(ok.body["id"], "db-000001");
    assert_eq!(cloud.request_count(), 4);
}

#[tokio::test]
async fn injected_delays_hold_requests_then_handle_them() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;
    cloud.inject_fault(Fault::Delay {
        millis: 300,
        count: 1,
    });
    let started = Instant::now();
    let slow = api.get("/v1/databases").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.status, StatusCode::OK);
    // A delayed request is still checked for its token.
    cloud.inject_fault(Fault::Delay {
        millis: 10,
        count: 1,
    });
    let unauthorised = api.call(Method::GET, "/v1/databases", None, None).await;
    assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/v1/databases").await.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_routes_inject_faults_and_report_stats() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;

    let stats = api.call(Method::GET, "/_admin/stats", None, None).await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body, json!({"resources": 0, "requests": 0}));

    let queued = api
        .call(
            Method::POST,
            "/_admin/faults",
            None,
            Some(json!({"status": 503, "count": 2})),
        )
        .await;
    assert_eq!(queued.status, StatusCode::OK);
    assert_eq!(queued.body, json!({"pendingFaults": 1}));
    let delayed = api
        .call(
            Method::POST,
            "/_admin/faults",
            None,
            Some(json!({"delayMillis": 200, "count": 1})),
        )
        .await;
    assert_eq!(delayed.status, StatusCode::OK);
    assert_eq!(delayed.body, json!({"pendingFaults": 2}));

    for _ in 0..2 {
        let reply = api.post("/v1/databases", json!({"name": "db1"})).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.body["error"], "injected");
    }
    let started = Instant::now();
    let created = api.post("/v1/databases", json!({"name": "db1"})).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(created.status, StatusCode::CREATED);
    api.post("/v1/databases", json!({"name": "db2"})).await;

    let stats = api.call(Method::GET, "/_admin/stats", None, None).await;
    assert_eq!(stats.body, json!({"resources": 2, "requests": 4}));
    assert_eq!(cloud.request_count(), 4);
    assert_eq!(cloud.resource_count(), 2);

    for (body, field) in [
        (json!({"count": 1}), "status"),
        (json!({"status": 200}), "status"),
        (json!({"status": 503, "delayMillis": 5}), "status"),
        (json!({"delayMillis": -1}), "delayMillis"),
        (json!({"status": 503, "count": "two"}), "count"),
    ] {
        let reply = api
            .call(Method::POST, "/_admin/faults", None, Some(body.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.body["error"], "invalid_request", "{body}");
        assert_eq!(reply.body["field"], field, "{body}");
    }
}

#[tokio::test]
async fn unknown_routes_are_json_404_and_shutdown_stops_the_server() {
    let (cloud, api) = start(FakeCloudConfig::default()).await;
    let unknown = api.get("/v1/clusters").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error"], "not_found");
    let wrong_method = api
        .call(Method::PUT, "/v1/databases", Some(TOKEN), None)
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);

    let base = api.base.clone();
    cloud.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert!(
        fresh
            .get(format!("{base}/_admin/stats"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn the_binary_prints_one_line_and_serves() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// Kills the server even if an assertion fails first.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_fakecloud"))
            .args([
                "--port",
                "0",
                "--token",
                "t0ken",
                "--step-millis",
                "0",
                "--rate-limit",
                "100",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning fakecloud"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        let api = Api {
            base: url,
            client: Client::new(),
        };
        let created = api
            .call(
                Method::POST,
                "/v1/databases",
                Some("t0ken"),
                Some(json!({"name": "db1"})),
            )
            .await;
        let stats = api.call(Method::GET, "/_admin/stats", None, None).await;
        (created, stats)
    });
    drop(server);
    let (created, stats) = result;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["state"], "AVAILABLE");
    assert_eq!(stats.body, json!({"resources": 1, "requests": 1}));
}
