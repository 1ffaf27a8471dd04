//! Host-owned idempotency against fakecloud running as a separate process: replays,
//! reused keys, 1,000 concurrent creates over 50 keys with injected faults, and the
//! `airlock` process killed (SIGKILL) at each point of a create, then rerun.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::{ErrorCode, Operation, Output, RetryPolicy, Runtime, RuntimeConfig};
use serde_json::{Value, json};

use crate::common::*;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");
const TOKEN: &str = "idempotency-test-token-0123456789";

/// `airlock fakecloud` in a process of its own; killed on drop.
pub struct CloudProcess {
    child: Child,
    pub base: String,
}

impl CloudProcess {
    pub fn start(step_millis: u64) -> CloudProcess {
        let mut child = Command::new(AIRLOCK)
            .args([
                "fakecloud",
                "--port",
                "0",
                "--token",
                TOKEN,
                "--step-millis",
                &step_millis.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting airlock fakecloud");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .expect("the listening line")
            .to_owned();
        CloudProcess { child, base }
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A raw HTTP/1.1 exchange with the server: (status, JSON body).
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port())).unwrap();
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let json = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    }

    pub fn databases(&self) -> Vec<Value> {
        self.http("GET", "/v1/databases", None).1["databases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn requests(&self) -> u64 {
        self.http("GET", "/_admin/stats", None).1["requests"]
            .as_u64()
            .unwrap()
    }

    pub fn fault(&self, fault: Value) {
        assert_eq!(self.http("POST", "/_admin/faults", Some(&fault)).0, 200);
    }
}

impl Drop for CloudProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn policy_file(dir: &std::path::Path, cloud: &CloudProcess, deadline_ms: u64) -> String {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "name = \"fakecloud\"\n[limits]\ndeadline_ms = {deadline_ms}\n\n[[http.allow]]\nurl = \"{base}/v1/\"\naddresses = [\"127.0.0.1/32\"]\n\n[secrets.fakecloud-token]\nsource = \"file:{}\"\ndestinations = [\"{base}/v1/\"]\n",
            token.display(),
            base = cloud.base
        ),
    )
    .unwrap();
    policy.display().to_string()
}

pub fn create_command(
    dir: &std::path::Path,
    cloud: &CloudProcess,
    policy: &str,
    key: &str,
) -> Command {
    let mut command = Command::new(AIRLOCK);
    command.arg("--data-dir").arg(dir).args([
        "invoke",
        FAKECLOUD_ADAPTER,
        "create",
        "--config",
        &json!({ "endpoint": cloud.base }).to_string(),
        "--params",
        r#"{"name":"crash-db"}"#,
        "--idempotency-key",
        key,
        "--policy",
        policy,
    ]);
    command
}

/// Start a create that stops at `crash_point` (or, with `None`, one whose provider request
/// is held in flight by a delay fault), SIGKILL it there, then rerun the same create.
fn kill_during_create_then_rerun(crash_point: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudProcess::start(0);
    let policy = policy_file(dir.path(), &cloud, 1500);
    let mut first = create_command(dir.path(), &cloud, &policy, "crash-key");
    first
        .env("AIRLOCK_CLAIM_LEASE", "30s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match crash_point {
        Some(point) => {
            first.env("AIRLOCK_CRASH_POINT", point);
        }
        None => cloud.fault(json!({ "delayMillis": 4000, "count": 1 })),
    }
    let before = cloud.requests();
    let mut child = first.spawn().unwrap();
    match crash_point {
        Some(point) => {
            let mut stderr = BufReader::new(child.stderr.take().unwrap());
            let mut line = String::new();
            while !line.contains("reached crash point") {
                line.clear();
                assert!(
                    stderr.read_line(&mut line).unwrap() > 0,
                    "airlock exited before the crash point {point}"
                );
            }
        }
        None => {
            let waiting = Instant::now();
            while cloud.requests() == before {
                assert!(
                    waiting.elapsed() < Duration::from_secs(20),
                    "the create never reached fakecloud"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The rerun sees that the claim's process is gone (same node, its pid no longer runs)
    // and takes the claim over at once: no wait for a 30-second lease.
    let killed = Instant::now();
    let rerun = create_command(dir.path(), &cloud, &policy, "crash-key")
        .env("AIRLOCK_CLAIM_LEASE", "30s")
        .arg("--receipt")
        .output()
        .unwrap();
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the rerun took {took:?}: it waited for the lease instead of taking over a dead process's claim"
    );
    assert!(
        String::from_utf8_lossy(&rerun.stderr).contains("\"idempotency\":\"resumed\""),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(
        rerun.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let result: Value = serde_json::from_slice(&rerun.stdout).unwrap();
    // A delayed request from the killed process may still land; give it time to.
    if crash_point.is_none() {
        std::thread::sleep(Duration::from_millis(4500));
    }
    let databases = cloud.databases();
    assert_eq!(
        databases.len(),
        1,
        "exactly one resource after a crash at {crash_point:?}: {databases:?}"
    );
    assert_eq!(result["instanceId"], databases[0]["id"]);
    // And a third call is answered from the record.
    let third: Value = serde_json::from_slice(
        &create_command(dir.path(), &cloud, &policy, "crash-key")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        (third["instanceId"].clone(), third["created"].clone()),
        (databases[0]["id"].clone(), json!(false))
    );
    assert_eq!(cloud.databases().len(), 1);
}

#[test]
fn a_create_killed_before_the_guest_runs_is_resumed_to_one_resource() {
    kill_during_create_then_rerun(Some("after-claim"));
}

#[test]
fn a_create_killed_while_its_provider_request_is_in_flight_is_resumed_to_one_resource() {
    kill_during_create_then_rerun(None);
}

#[test]
fn a_create_killed_after_the_provider_answered_is_resumed_to_one_resource() {
    kill_during_create_then_rerun(Some("after-guest"));
}

#[test]
fn concurrent_creates_from_separate_processes_share_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudProcess::start(0);
    let policy = policy_file(dir.path(), &cloud, 5000);
    // Hold the first provider request a while, so the other processes find the key busy.
    cloud.fault(json!({ "delayMillis": 300, "count": 1 }));
    let children: Vec<Child> = (0..6)
        .map(|_| {
            create_command(dir.path(), &cloud, &policy, "shared-key")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<Value> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert_eq!(output.status.code(), Some(0));
            serde_json::from_slice(&output.stdout).unwrap()
        })
        .collect();
    let databases = cloud.databases();
    assert_eq!(databases.len(), 1, "{databases:?}");
    assert!(
        results
            .iter()
            .all(|r| r["instanceId"] == databases[0]["id"]),
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| r["created"] == true).count(),
        1,
        "{results:?}"
    );
}

/// Creates `range` at once, each with retries: call `i` creates `db-{i % 50}` with key
/// `key-{i % 50}`. Each task returns its key and invocation.
pub fn spawn_keyed_creates(
    adapter: &airlock::Adapter,
    config: &Value,
    range: std::ops::Range<u64>,
) -> Vec<tokio::task::JoinHandle<(String, airlock::Invocation)>> {
    let retry = RetryPolicy {
        max_attempts: 20,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(400),
        max_elapsed: Duration::from_secs(120),
    };
    range
        .map(|i| {
            let (adapter, config, retry) = (adapter.clone(), config.clone(), retry.clone());
            tokio::spawn(async move {
                let key = format!("key-{}", i % 50);
                let op = Operation::Create {
                    params: json!({ "name": format!("db-{}", i % 50) }),
                    idempotency_key: Some(key.clone()),
                };
                (key, adapter.invoke_with_retry(&config, op, &retry).await)
            })
        })
        .collect()
}

async fn fakecloud_adapter(
    runtime: &Runtime,
    dir: &std::path::Path,
    cloud: &CloudProcess,
) -> airlock::Adapter {
    let policy = std::fs::read_to_string(policy_file(dir, cloud, 10_000)).unwrap();
    load(runtime, FAKECLOUD_ADAPTER, &policy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_creates_over_fifty_keys_make_fifty_resources() {
    let t = runtime();
    let cloud = CloudProcess::start(0);
    let adapter = fakecloud_adapter(&t.runtime, t.dir.path(), &cloud).await;
    cloud.fault(json!({ "status": 503, "count": 40 }));
    cloud.fault(json!({ "status": 429, "count": 20 }));
    let calls = spawn_keyed_creates(&adapter, &json!({ "endpoint": cloud.base }), 0..1000);
    let mut by_key: std::collections::HashMap<String, (String, usize)> = Default::default();
    let mut retried = 0;
    for call in calls {
        let (key, invocation) = call.await.unwrap();
        retried += usize::from(invocation.receipt.attempts > 1);
        let Output::Provisioned(result) =
            invocation.result.unwrap_or_else(|e| panic!("{key}: {e}"))
        else {
            unreachable!()
        };
        let entry = by_key
            .entry(key.clone())
            .or_insert((result.instance_id.clone(), 0));
        assert_eq!(
            entry.0, result.instance_id,
            "every caller of {key} gets the same instance"
        );
        entry.1 += usize::from(result.created);
    }
    let databases = cloud.databases();
    assert_eq!(databases.len(), 50, "exactly one resource per key");
    assert_eq!(by_key.len(), 50);
    for (key, (id, created)) in &by_key {
        assert_eq!(*created, 1, "{key}: created = true exactly once");
        let name = format!("db-{}", key.trim_start_matches("key-"));
        assert!(
            databases
                .iter()
                .any(|d| d["id"] == id.as_str() && d["name"] == name.as_str()),
            "{key} → {id}"
        );
    }
    assert!(retried > 0, "the injected faults made some callers retry");
}

#[tokio::test]
async fn repeats_are_answered_from_the_record_and_reused_keys_refused() {
    let t = runtime();
    let cloud = CloudProcess::start(0);
    let adapter = fakecloud_adapter(&t.runtime, t.dir.path(), &cloud).await;
    let config = json!({ "endpoint": cloud.base });
    let create = |name: &str| Operation::Create {
        params: json!({ "name": name }),
        idempotency_key: Some("k1".into()),
    };

    let first = adapter.invoke(&config, create("one")).await;
    assert_eq!(first.receipt.idempotency, Some("claimed"));
    let Output::Provisioned(first) = ok(first.result) else {
        unreachable!()
    };
    let again = adapter.invoke(&config, create("one")).await;
    assert_eq!(
        (
            again.receipt.idempotency,
            again.receipt.instantiated,
            again.receipt.http_requests
        ),
        (Some("replayed"), false, 0)
    );
    let Output::Provisioned(again) = ok(again.result) else {
        unreachable!()
    };
    assert_eq!(
        (
            again.instance_id.as_str(),
            again.created,
            again.idempotency_key.as_deref()
        ),
        (first.instance_id.as_str(), false, Some("k1"))
    );

    let reused = adapter
        .invoke(&config, create("two"))
        .await
        .result
        .unwrap_err();
    assert_eq!(reused.error_code, ErrorCode::Validation);
    assert_eq!(
        reused.message,
        "idempotency key \"k1\" was already used with a different config or params (key reused with different input)"
    );
    assert_eq!(cloud.databases().len(), 1);

    // Destroy is durable too: the second one is answered from the record.
    adapter.destroy(&config, &first.instance_id).await.unwrap();
    let second = adapter
        .invoke(
            &config,
            Operation::Destroy {
                instance_id: first.instance_id.clone(),
            },
        )
        .await;
    assert!(second.result.is_ok());
    assert_eq!(
        (second.receipt.idempotency, second.receipt.instantiated),
        (Some("replayed"), false)
    );
}

#[tokio::test]
async fn records_expire_after_the_window_and_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        pool_size: 8,
        idempotency_window: Duration::from_millis(300),
        ..RuntimeConfig::with_data_dir(dir.path())
    })
    .unwrap();
    let cloud = CloudProcess::start(0);
    let adapter = fakecloud_adapter(&runtime, dir.path(), &cloud).await;
    let config = json!({ "endpoint": cloud.base });
    for i in 0..20 {
        let op = Operation::Create {
            params: json!({ "name": format!("e{i}") }),
            idempotency_key: Some(format!("e{i}")),
        };
        ok(adapter.invoke(&config, op).await.result);
    }
    assert_eq!(runtime.idempotency_records().await.unwrap(), 20);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(runtime.purge_expired().await.unwrap(), 20);
    assert_eq!(
        runtime.idempotency_records().await.unwrap(),
        0,
        "the table does not grow without bound"
    );
    // The key is gone: the guest runs again, and the client token still keeps the
    // provider at one resource for it.
    let again = adapter
        .invoke(
            &config,
            Operation::Create {
                params: json!({ "name": "e0" }),
                idempotency_key: Some("e0".into()),
            },
        )
        .await;
    assert_eq!(again.receipt.idempotency, Some("claimed"));
    assert_eq!(cloud.databases().len(), 20);
}

#[tokio::test]
async fn the_circuit_breaker_opens_after_repeated_auth_failures_and_recovers() {
    let t = runtime();
    let cloud = CloudProcess::start(0);
    let policy = format!(
        "[limits]\nbreaker_failures = 3\nbreaker_cooldown_ms = 1500\n\n[[http.allow]]\nurl = \"{}/\"\naddresses = [\"127.0.0.1/32\"]\n",
        cloud.base
    );
    let probe = load(&t.runtime, HOSTILE_HTTP_PROBE, &policy).await;
    // No token: fakecloud answers 401, the probe gives up, the host makes it AUTH.
    let config = json!({ "url": format!("{}/v1/databases", cloud.base) });
    for _ in 0..3 {
        assert_eq!(
            probe.status(&config, "i").await.unwrap_err().error_code,
            ErrorCode::Auth
        );
    }
    let requests = cloud.requests();
    let refused = probe
        .invoke(
            &config,
            Operation::Status {
                instance_id: "i".into(),
            },
        )
        .await;
    let error = refused.result.unwrap_err();
    assert_eq!(error.error_code, ErrorCode::Retryable);
    assert!(
        error.message.starts_with("circuit open for adapter \"hostile_http_probe\" after 3 consecutive RETRYABLE or AUTH failures; calls resume in "),
        "{}",
        error.message
    );
    assert!(!refused.receipt.instantiated);
    assert_eq!(
        cloud.requests(),
        requests,
        "an open circuit sends nothing to the provider"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        probe.status(&config, "i").await.unwrap_err().error_code,
        ErrorCode::Auth,
        "half-open: one call goes through"
    );
    assert_eq!(cloud.requests(), requests + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_adapters_concurrency_limit_wait_their_turn() {
    let t = runtime();
    let cloud = CloudProcess::start(0);
    let policy = format!(
        "[limits]\nmax_concurrent_calls = 1\n\n[[http.allow]]\nurl = \"{}/\"\naddresses = [\"127.0.0.1/32\"]\n",
        cloud.base
    );
    let probe = load(&t.runtime, HOSTILE_HTTP_PROBE, &policy).await;
    cloud.fault(json!({ "delayMillis": 300, "count": 2 }));
    let url = format!("{}/v1/databases", cloud.base);
    let started = Instant::now();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (probe, url) = (probe.clone(), url.clone());
            tokio::spawn(async move {
                let op = Operation::Create {
                    params: json!({ "requests": [{ "url": url }] }),
                    idempotency_key: None,
                };
                probe.invoke(&json!({}), op).await.result.is_ok()
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap());
    }
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the two calls ran one after the other: {:?}",
        started.elapsed()
    );
}

/// The http-probe adapter under a breaker that opens after 2 failures for `cooldown_ms`.
async fn probe_with_breaker(
    runtime: &Runtime,
    cloud: &CloudProcess,
    cooldown_ms: u64,
) -> airlock::Adapter {
    let policy = format!(
        "[limits]\nbreaker_failures = 2\nbreaker_cooldown_ms = {cooldown_ms}\n\n[[http.allow]]\nurl = \"{}/\"\naddresses = [\"127.0.0.1/32\"]\n",
        cloud.base
    );
    load(runtime, HOSTILE_HTTP_PROBE, &policy).await
}

fn status_op() -> Operation {
    Operation::Status {
        instance_id: "i".into(),
    }
}

/// Open the circuit with two AUTH failures (no token: fakecloud answers 401), then wait
/// out the cool-down.
async fn open_then_cool_down(probe: &airlock::Adapter, failing: &Value, cooldown_ms: u64) {
    for _ in 0..2 {
        assert_eq!(
            probe.status(failing, "i").await.unwrap_err().error_code,
            ErrorCode::Auth
        );
    }
    assert!(probe.invoke(failing, status_op()).await.result.is_err());
    tokio::time::sleep(Duration::from_millis(cooldown_ms + 100)).await;
}

/// Wait until fakecloud has received more than `before` `/v1` requests.
async fn until_requests_exceed(cloud: &CloudProcess, before: u64) {
    let waiting = Instant::now();
    while cloud.requests() == before {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the probe never reached fakecloud"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const HALF_OPEN: &str = "circuit half-open for adapter \"hostile_http_probe\": one probe call is testing the provider, and other calls are refused until it ends";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_lets_exactly_one_probe_through_while_concurrent_callers_are_refused() {
    let t = runtime();
    let cloud = CloudProcess::start(0);
    let probe = probe_with_breaker(&t.runtime, &cloud, 500).await;
    let failing = json!({ "url": format!("{}/v1/databases", cloud.base) });
    open_then_cool_down(&probe, &failing, 500).await;

    // The first call after the cool-down is the probe; fakecloud holds its request 3 s, far
    // longer than starting the other callers takes even on a loaded machine.
    cloud.fault(json!({ "delayMillis": 3000, "count": 1 }));
    let before = cloud.requests();
    let first = {
        let (probe, failing) = (probe.clone(), failing.clone());
        tokio::spawn(async move { probe.invoke(&failing, status_op()).await })
    };
    until_requests_exceed(&cloud, before).await;
    let others: Vec<_> = (0..8)
        .map(|_| {
            let (probe, failing) = (probe.clone(), failing.clone());
            tokio::spawn(async move { probe.invoke(&failing, status_op()).await })
        })
        .collect();
    for other in others {
        let other = other.await.unwrap();
        assert!(!other.receipt.instantiated, "only the probe runs");
        let error = other.result.unwrap_err();
        assert_eq!(
            (error.error_code, error.message.as_str(), error.raw),
            (
                ErrorCode::Retryable,
                HALF_OPEN,
                Some(json!({ "retryAfter": 1 }))
            )
        );
    }
    let first = first.await.unwrap();
    assert!(first.receipt.instantiated);
    assert_eq!(first.result.unwrap_err().error_code, ErrorCode::Auth);
    assert_eq!(
        cloud.requests(),
        before + 1,
        "one request reached the provider while half-open"
    );
    // The probe failed: the circuit is open again for a full cool-down.
    let error = probe
        .invoke(&failing, status_op())
        .await
        .result
        .unwrap_err();
    assert!(
        error.message.starts_with("circuit open for adapter \"hostile_http_probe\" after 2 consecutive RETRYABLE or AUTH failures; calls resume in "),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_probe_does_not_wedge_the_breaker_and_a_good_probe_closes_it() {
    let t = runtime();
    let cloud = CloudProcess::start(0);
    let probe = probe_with_breaker(&t.runtime, &cloud, 300).await;
    let failing = json!({ "url": format!("{}/v1/databases", cloud.base) });
    // fakecloud's stats answer 200 without a token: the guest then gives up PERMANENT,
    // which is an answer from the provider, not a failure the breaker counts.
    let answering = json!({ "url": format!("{}/_admin/stats", cloud.base) });
    open_then_cool_down(&probe, &failing, 300).await;

    // The probe's request is held at the provider, and its caller gives up on it.
    cloud.fault(json!({ "delayMillis": 30_000, "count": 1 }));
    let before = cloud.requests();
    let cancelled = {
        let (probe, failing) = (probe.clone(), failing.clone());
        tokio::spawn(async move { probe.invoke(&failing, status_op()).await })
    };
    until_requests_exceed(&cloud, before).await;
    let refused = probe.invoke(&answering, status_op()).await;
    assert_eq!(refused.result.unwrap_err().message, HALF_OPEN);
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());

    // The next call is the new probe; its answer closes the circuit.
    let next = probe.invoke(&answering, status_op()).await;
    assert!(next.receipt.instantiated, "the next call became the probe");
    let error = next.result.unwrap_err();
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (ErrorCode::Permanent, "gave up after HTTP 200")
    );
    for _ in 0..3 {
        let call = probe.invoke(&answering, status_op()).await;
        assert!(call.receipt.instantiated, "closed: every call runs");
    }
}

/// The database file of a test runtime, opened beside it.
fn database(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("airlock.db")).unwrap()
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Insert `n` already expired rows into each table a purge empties, for adapter `old`.
fn plant_expired(db: &rusqlite::Connection, n: usize) {
    let past = airlock_now_ms() - 60_000;
    for i in 0..n {
        db.execute(
            "INSERT INTO adapter_state VALUES ('default', 'old', ?1, x'00', ?2, ?2)",
            rusqlite::params![format!("s{i}"), past],
        )
        .unwrap();
        db.execute(
            "INSERT INTO idempotency VALUES ('default', 'old', ?1, 'h', 'done', 1, NULL, NULL, NULL, 'i', '{}', ?2, ?2)",
            rusqlite::params![format!("k{i}"), past],
        )
        .unwrap();
        db.execute(
            "INSERT INTO destroyed VALUES ('default', 'old', ?1, ?2, ?2)",
            rusqlite::params![format!("i{i}"), past],
        )
        .unwrap();
    }
}

fn airlock_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Rows of adapter `old` left in (state, idempotency, destroyed).
fn planted_left(db: &rusqlite::Connection) -> (i64, i64, i64) {
    (
        count(
            db,
            "SELECT COUNT(*) FROM adapter_state WHERE namespace = 'old'",
        ),
        count(db, "SELECT COUNT(*) FROM idempotency WHERE adapter = 'old'"),
        count(db, "SELECT COUNT(*) FROM destroyed WHERE adapter = 'old'"),
    )
}

/// Poll (the purge runs off the call path) until `done`, for at most 30 s.
async fn eventually(mut done: impl FnMut() -> bool, what: &str) {
    let waiting = Instant::now();
    while !done() {
        assert!(waiting.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Create the database's schema with a runtime, and wait until that runtime and its
/// start-up purge are gone: SQLite deletes the write-ahead log when its last connection
/// closes. After this, only what the test starts touches the file.
async fn schema_only(dir: &std::path::Path) {
    drop(runtime_in(dir));
    let wal = dir.join("airlock.db-wal");
    eventually(|| !wal.exists(), "the first runtime's connections closed").await;
}

#[tokio::test]
async fn the_start_up_purge_goes_on_past_its_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    schema_only(dir.path()).await;
    let db = database(dir.path());
    // 1,500 expired rows in each table: the first batch removes 1,000 of each (3,000 in
    // all), and the loop must go on for the other 500 of each.
    db.execute_batch("BEGIN").unwrap();
    plant_expired(&db, 1500);
    db.execute_batch("COMMIT").unwrap();
    let _runtime = runtime_in(dir.path());
    eventually(
        || planted_left(&db) == (0, 0, 0),
        "the start-up purge left expired rows",
    )
    .await;
}

#[tokio::test]
async fn expired_records_are_purged_every_512_creates() {
    let dir = tempfile::tempdir().unwrap();
    schema_only(dir.path()).await;
    let db = database(dir.path());
    // One expired row, so the test knows when the start-up purge has run (after it, no
    // table gave a full batch, so it is over).
    plant_expired(&db, 1);
    let runtime = runtime_in(dir.path());
    eventually(|| planted_left(&db) == (0, 0, 0), "the start-up purge").await;
    plant_expired(&db, 50);

    let example = load(&runtime, EXAMPLE_ADAPTER, "").await;
    let config = example_config(0);
    let create = |i: usize| {
        let example = example.clone();
        let config = config.clone();
        async move {
            example
                .create(
                    &config,
                    &json!({ "name": format!("p{i}") }),
                    Some(&format!("p{i}")),
                )
                .await
                .unwrap();
        }
    };
    for i in 0..511 {
        create(i).await;
    }
    assert_eq!(
        planted_left(&db),
        (50, 50, 50),
        "no purge before the 512th create"
    );
    create(511).await;
    eventually(
        || planted_left(&db) == (0, 0, 0),
        "the 512th create purged the expired records",
    )
    .await;
    assert_eq!(
        runtime.idempotency_records().await.unwrap(),
        512,
        "live records stay"
    );
}

/// A runtime on `dir`'s database as node `node`, with one instance slot and short leases.
fn node_runtime(dir: &std::path::Path, node: &str, pool_size: u32) -> Runtime {
    Runtime::new(RuntimeConfig {
        pool_size,
        node_id: Some(node.to_owned()),
        claim_lease: Duration::from_millis(600),
        ..RuntimeConfig::with_data_dir(dir)
    })
    .expect("runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waiting_for_an_instance_longer_than_its_lease_is_kept_by_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudProcess::start(0);
    let policy = std::fs::read_to_string(policy_file(dir.path(), &cloud, 10_000)).unwrap();
    let config = json!({ "endpoint": cloud.base });
    // Node A has one instance slot; a create whose provider request is held 3 s takes it.
    let node_a = node_runtime(dir.path(), "node-a", 1);
    let on_a = load(&node_a, FAKECLOUD_ADAPTER, &policy).await;
    cloud.fault(json!({ "delayMillis": 3000, "count": 1 }));
    let before = cloud.requests();
    let blocker = tokio::spawn({
        let (adapter, config) = (on_a.clone(), config.clone());
        async move {
            adapter
                .create(&config, &json!({ "name": "blocker" }), Some("blocker"))
                .await
        }
    });
    eventually(
        || cloud.requests() > before,
        "the blocker reached fakecloud",
    )
    .await;
    // A create of "waiting" claims its key, then waits for the slot for over 2 s: more than
    // three of its 600 ms leases, which its heartbeat renews meanwhile.
    let create = |name: &'static str| Operation::Create {
        params: json!({ "name": name }),
        idempotency_key: Some("waiting".into()),
    };
    let waiting = tokio::spawn({
        let (adapter, config, op) = (on_a.clone(), config.clone(), create("waiting"));
        async move { adapter.invoke(&config, op).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Node B (another node: it judges A's claim by its lease alone) asks for the same key.
    // It must find the claim live and wait for its record, not take it over.
    let node_b = node_runtime(dir.path(), "node-b", 4);
    let on_b = load(&node_b, FAKECLOUD_ADAPTER, &policy).await;
    let second = on_b.invoke(&config, create("waiting")).await;

    let first = waiting.await.unwrap();
    blocker.await.unwrap().expect("the blocker's create");
    assert_eq!(first.receipt.idempotency, Some("claimed"));
    assert_eq!(
        second.receipt.idempotency,
        Some("replayed"),
        "node B waited for the heartbeating claim and got its record: {:?}",
        second.result
    );
    let id = |invocation: &airlock::Invocation| match &invocation.result {
        Ok(Output::Provisioned(result)) => result.instance_id.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(id(&first), id(&second));
    assert_eq!(
        cloud.databases().len(),
        2,
        "the blocker's and the waiting key's, once"
    );
}
