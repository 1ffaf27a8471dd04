//! Several Airlock nodes on one PostgreSQL, as separate processes, against fakecloud as a
//! process of its own: a thousand creates over fifty keys split between two nodes under
//! injected 503s and 429s; a node SIGKILLed while it holds a claim, finished by the other
//! within one lease; a node SIGSTOPped past its lease and resumed after the other finished,
//! whose late write the fence refuses. Each test gets a PostgreSQL database of its own.
//!
//! The PostgreSQL server comes from `AIRLOCK_TEST_POSTGRES_URL` (`.ci/run` sets it); without
//! it these tests print one SKIPPED line each, and fail under `CI=true`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::{DatabaseUrl, Output, Runtime, RuntimeConfig};
use serde_json::{Value, json};

use crate::common::*;
use crate::idempotency::{CloudProcess, create_command, policy_file, spawn_keyed_creates};

/// A PostgreSQL database of this test's own, dropped afterwards.
pub struct TestDatabase {
    admin: String,
    name: String,
    /// The URL of the database.
    pub url: String,
}

impl TestDatabase {
    /// A fresh database, or `None` (with the SKIPPED line) where there is no server.
    pub fn create(test: &str) -> Option<TestDatabase> {
        let admin = std::env::var("AIRLOCK_TEST_POSTGRES_URL").ok();
        if !present_or_skip(
            "AIRLOCK_TEST_POSTGRES_URL (a PostgreSQL server; .ci/run provides one)",
            admin.is_some(),
            test,
        ) {
            return None;
        }
        let admin = admin.unwrap();
        let name = format!(
            "airlock_it_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        sql(&admin, &format!("CREATE DATABASE {name}"));
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("AIRLOCK_TEST_POSTGRES_URL has no database part: {admin}"),
        };
        Some(TestDatabase { admin, name, url })
    }

    /// Rows of a query on this database, each as text columns.
    pub fn query(&self, query: &str) -> Vec<Vec<Option<String>>> {
        sql(&self.url, query)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Run `query` on `url` (simple query protocol) on a thread of its own; the rows as text.
fn sql(url: &str, query: &str) -> Vec<Vec<Option<String>>> {
    let (url, query) = (url.to_owned(), query.to_owned());
    std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
            tokio::spawn(connection);
            let mut rows = Vec::new();
            for message in client
                .simple_query(&query)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"))
            {
                if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                    rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    );
                }
            }
            rows
        })
    })
    .join()
    .unwrap()
}

/// What a node process is asked to do (in `AIRLOCK_TEST_NODE`, as JSON).
fn node_spec(
    db: &TestDatabase,
    node: &str,
    cloud: &CloudProcess,
    policy: &str,
    calls: std::ops::Range<usize>,
) -> Value {
    json!({
        "database": db.url,
        "node": node,
        "endpoint": cloud.base,
        "policy": policy,
        "from": calls.start,
        "to": calls.end,
    })
}

/// Start this test binary again as a node process running `spec`.
fn start_node(spec: &Value) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["nodes::node_process", "--exact", "--ignored", "--nocapture"])
        .env("AIRLOCK_TEST_NODE", spec.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting a node process")
}

/// A node: its own runtime and data directory on the shared database, running creates
/// `from..to` (key `key-{i % 50}`) at once, with retries, and printing one
/// `NODE-RESULT {json}` line per call. Run only by [`start_node`].
#[test]
#[ignore = "a node process of the two-node tests; they start it"]
fn node_process() {
    let Ok(spec) = std::env::var("AIRLOCK_TEST_NODE") else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            database: Some(DatabaseUrl::parse(spec["database"].as_str().unwrap()).unwrap()),
            node_id: Some(spec["node"].as_str().unwrap().to_owned()),
            claim_lease: Duration::from_secs(2),
            pool_size: 32,
            ..RuntimeConfig::with_data_dir(dir.path())
        })
        .expect("a node's runtime on PostgreSQL");
        let policy = std::fs::read_to_string(spec["policy"].as_str().unwrap()).unwrap();
        let adapter = load(&runtime, FAKECLOUD_ADAPTER, &policy).await;
        let config = json!({ "endpoint": spec["endpoint"] });
        let from = spec["from"].as_u64().unwrap();
        let calls = spawn_keyed_creates(&adapter, &config, from..spec["to"].as_u64().unwrap());
        for call in calls {
            let (key, invocation) = call.await.unwrap();
            let line = match invocation.result {
                Ok(Output::Provisioned(result)) => json!({
                    "key": key, "instanceId": result.instance_id, "created": result.created,
                    "attempts": invocation.receipt.attempts,
                }),
                Ok(other) => {
                    json!({ "key": key, "error": format!("not a provision result: {other:?}") })
                }
                Err(error) => json!({ "key": key, "error": error.to_string() }),
            };
            println!("NODE-RESULT {line}");
        }
    });
}

/// The `NODE-RESULT` lines of a finished node.
fn node_results(child: Child) -> Vec<Value> {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "a node process failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("NODE-RESULT "))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect()
}

#[test]
fn two_nodes_on_one_postgres_make_one_resource_per_key_under_injected_faults() {
    let Some(db) = TestDatabase::create(
        "two_nodes_on_one_postgres_make_one_resource_per_key_under_injected_faults",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudProcess::start(0);
    let policy = policy_file(dir.path(), &cloud, 10_000);
    cloud.fault(json!({ "status": 503, "count": 40 }));
    cloud.fault(json!({ "status": 429, "count": 20 }));
    // Both nodes call every key: node A makes calls 0..500, node B 500..1000.
    let a = start_node(&node_spec(&db, "node-a", &cloud, &policy, 0..500));
    let b = start_node(&node_spec(&db, "node-b", &cloud, &policy, 500..1000));
    let results: Vec<Value> = [a, b].into_iter().flat_map(node_results).collect();
    assert_eq!(results.len(), 1000);

    let mut by_key: std::collections::HashMap<String, (String, usize)> = Default::default();
    let mut retried = 0;
    for result in &results {
        let key = result["key"].as_str().unwrap();
        assert!(result["error"].is_null(), "{result}");
        retried += usize::from(result["attempts"].as_u64().unwrap() > 1);
        let id = result["instanceId"].as_str().unwrap();
        let entry = by_key.entry(key.to_owned()).or_insert((id.to_owned(), 0));
        assert_eq!(
            entry.0, id,
            "every caller of {key}, on either node, holds the same instance"
        );
        entry.1 += usize::from(result["created"] == true);
    }
    assert_eq!(by_key.len(), 50);
    for (key, (_, created)) in &by_key {
        assert_eq!(
            *created, 1,
            "{key}: created = true exactly once across both nodes"
        );
    }
    let databases = cloud.databases();
    assert_eq!(
        databases.len(),
        50,
        "exactly one resource per key at the provider"
    );
    for (key, (id, _)) in &by_key {
        assert!(
            databases.iter().any(|d| d["id"] == id.as_str()),
            "{key} → {id}"
        );
    }
    assert!(retried > 0, "the injected faults made some callers retry");
    // Both nodes wrote records: the claims carry their owners' node ids while running, and
    // the table holds one done record per key.
    let done = db.query("SELECT count(*) FROM idempotency WHERE state = 'done'");
    assert_eq!(done[0][0].as_deref(), Some("50"));
}

/// `airlock … invoke` of the fakecloud adapter's create on node `node` of `db`, with a
/// claim lease of `lease`.
fn node_create(
    dir: &std::path::Path,
    db: &TestDatabase,
    node: &str,
    lease: &str,
    cloud: &CloudProcess,
    policy: &str,
    key: &str,
) -> Command {
    let mut command = create_command(dir, cloud, policy, key);
    command
        .env("AIRLOCK_DATABASE_URL", &db.url)
        .env("AIRLOCK_NODE_ID", node)
        .env("AIRLOCK_CLAIM_LEASE", lease)
        .arg("--receipt");
    command
}

/// Wait until a child's stderr prints a line containing `text`; the reader, to keep.
fn wait_for_line(child: &mut Child, text: &str) -> BufReader<std::process::ChildStderr> {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(text) {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the process exited before printing {text:?}"
        );
    }
    stderr
}

#[test]
fn a_node_killed_while_it_holds_a_claim_is_finished_by_the_other_within_one_lease() {
    let Some(db) = TestDatabase::create(
        "a_node_killed_while_it_holds_a_claim_is_finished_by_the_other_within_one_lease",
    ) else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cloud = CloudProcess::start(0);
    let policy = policy_file(dir_a.path(), &cloud, 10_000);
    let lease = Duration::from_secs(2);
    warm_cache(dir_b.path());

    let mut a = node_create(
        dir_a.path(),
        &db,
        "node-a",
        "2s",
        &cloud,
        &policy,
        "kill-key",
    );
    a.env("AIRLOCK_CRASH_POINT", "after-claim")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut a = a.spawn().unwrap();
    let _stderr = wait_for_line(&mut a, "reached crash point");
    a.kill().unwrap(); // SIGKILL, with the claim held and heartbeating until now
    a.wait().unwrap();
    let killed = Instant::now();

    // Node B is another node: it cannot see node A's process, so only the lease frees the
    // key, at most one lease after A's last heartbeat (which was before the kill).
    let b = node_create(
        dir_b.path(),
        &db,
        "node-b",
        "2s",
        &cloud,
        &policy,
        "kill-key",
    )
    .output()
    .unwrap();
    let took = killed.elapsed();
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let result: Value = serde_json::from_slice(&b.stdout).unwrap();
    let receipt = receipt_of(&b.stderr);
    assert_eq!(receipt["idempotency"], "resumed", "{receipt}");
    // One lease, plus the other node's start and its create (fakecloud answers at once),
    // plus the claim's polling interval.
    assert!(
        took < lease + Duration::from_secs(3),
        "node B finished {took:?} after the kill; the bound is the lease ({lease:?}) and 3 s"
    );
    let databases = cloud.databases();
    assert_eq!(databases.len(), 1, "{databases:?}");
    assert_eq!(result["instanceId"], databases[0]["id"]);
    let rows = db.query("SELECT epoch, state FROM idempotency WHERE key = 'kill-key'");
    assert_eq!(
        rows,
        vec![vec![Some("2".to_owned()), Some("done".to_owned())]]
    );
}

/// The receipt `--receipt` printed on stderr (its last JSON line).
fn receipt_of(stderr: &[u8]) -> Value {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find_map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(|v| v.is_object())
        })
        .expect("a receipt on stderr")
}

#[test]
fn an_owner_stopped_past_its_lease_is_fenced_when_it_resumes() {
    let Some(db) =
        TestDatabase::create("an_owner_stopped_past_its_lease_is_fenced_when_it_resumes")
    else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cloud = CloudProcess::start(0);
    // A long deadline: the stopped owner's call must still be alive when it resumes.
    let policy = policy_file(dir_a.path(), &cloud, 60_000);
    warm_cache(dir_b.path());
    // The first provider request (node A's) is held 3 s, so A is mid-create when stopped.
    cloud.fault(json!({ "delayMillis": 3000, "count": 1 }));
    let before = cloud.requests();
    let a = node_create(
        dir_a.path(),
        &db,
        "node-a",
        "1s",
        &cloud,
        &policy,
        "stop-key",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let waiting = Instant::now();
    while cloud.requests() == before {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "node A never reached fakecloud"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&a, "STOP");

    // Node B waits out A's lease, takes the key over and finishes it.
    let b = node_create(
        dir_b.path(),
        &db,
        "node-b",
        "1s",
        &cloud,
        &policy,
        "stop-key",
    )
    .output()
    .unwrap();
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(receipt_of(&b.stderr)["idempotency"], "resumed");
    let b_result: Value = serde_json::from_slice(&b.stdout).unwrap();
    let recorded_by_b = db.query("SELECT epoch, result FROM idempotency WHERE key = 'stop-key'");

    // Node A resumes: its guest finishes, and its write is refused by the fence. Its caller
    // gets the record B wrote (the same instance: the provider deduplicated the token).
    signal(&a, "CONT");
    let a = a.wait_with_output().unwrap();
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    let a_receipt = receipt_of(&a.stderr);
    assert_eq!(a_receipt["idempotency"], "fenced", "{a_receipt}");
    let a_result: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(a_result["instanceId"], b_result["instanceId"]);
    assert_eq!(a_result["created"], false);

    let rows = db.query("SELECT epoch, result FROM idempotency WHERE key = 'stop-key'");
    assert_eq!(
        rows, recorded_by_b,
        "the record keeps the new owner's outcome"
    );
    assert_eq!(rows[0][0].as_deref(), Some("2"));
    let databases = cloud.databases();
    assert_eq!(databases.len(), 1, "{databases:?}");
    assert_eq!(b_result["instanceId"], databases[0]["id"]);
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Compile the fakecloud adapter into `dir`'s artifact cache, so a timed node starts fast.
fn warm_cache(dir: &std::path::Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(dir)
        .args(["inspect", FAKECLOUD_ADAPTER])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}
