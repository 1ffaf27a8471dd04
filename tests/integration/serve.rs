//! `airlock serve` as a process of its own, over real HTTP on 127.0.0.1, on SQLite and on
//! PostgreSQL: every answer carries a call id; `/v1/` refuses a missing, malformed, unknown
//! or rotated key with the service's own error body; a tenant sees its own adapters and
//! never another's (404, as for a name that does not exist); SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::storage::service::NewVersion;
use airlock::{DatabaseUrl, Runtime, RuntimeConfig};
use serde_json::Value;

use crate::nodes::TestDatabase;

pub(crate) const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

/// A running `airlock serve`, stopped with SIGTERM when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

pub(crate) fn global_args(data_dir: &Path, database: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
    if let Some(url) = database {
        args.extend(["--database".to_owned(), url.to_owned()]);
    }
    args
}

impl Server {
    pub(crate) fn start(data_dir: &Path, database: Option<&str>) -> Server {
        let mut child = Command::new(AIRLOCK)
            .args(global_args(data_dir, database))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting airlock serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("airlock serve printed {line:?}"))
            .to_owned();
        Server { child, url }
    }

    /// SIGTERM, then the exit status (within 10 s).
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "airlock serve did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn tenant_key(
    data_dir: &Path,
    database: Option<&str>,
    verb: &str,
    name: &str,
) -> String {
    let output = Command::new(AIRLOCK)
        .args(global_args(data_dir, database))
        .args(["tenant", verb, name])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value["apiKey"].as_str().unwrap().to_owned()
}

/// What one request got: status, the headers the tests look at, the body as JSON.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) call_id: String,
    pub(crate) source: Option<String>,
    pub(crate) body: Value,
}

/// `GET url`, with `key` as the whole `Authorization` header.
pub(crate) async fn get(url: &str, key: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.header("authorization", key);
    }
    send(request).await
}

/// Send `request`; its answer (the body must be JSON).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, call_id, source) = (
        response.status().as_u16(),
        header("airlock-call-id").expect("every answer has Airlock-Call-Id"),
        header("airlock-error-source"),
    );
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    Answer {
        status,
        call_id,
        source,
        body,
    }
}

pub(crate) fn refused_as(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.source.as_deref(), Some("airlock"));
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.body);
}

fn serve_on(data_dir: &Path, database: Option<&str>) {
    let acme = format!(
        "Bearer {}",
        tenant_key(data_dir, database, "create", "acme")
    );
    let globex = format!(
        "Bearer {}",
        tenant_key(data_dir, database, "create", "globex")
    );
    // An adapter of acme's, stored as the registry stores an upload.
    let runtime = Runtime::new(RuntimeConfig {
        database: database.map(|url| DatabaseUrl::parse(url).unwrap()),
        ..RuntimeConfig::with_data_dir(data_dir)
    })
    .unwrap();
    let store = runtime.service_store();
    let mut server = Server::start(data_dir, database);
    let url = server.url.clone();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        store
            .version_put(&NewVersion {
                tenant: "acme".into(),
                adapter: "example".into(),
                version: "1.0.0".into(),
                sha256: "ab".repeat(32),
                component: vec![0; 10],
                policy: String::new(),
                recording: None,
                admission: "{}".into(),
                admitted: true,
            })
            .await
            .unwrap();
        assert!(store.set_active("acme", "example", "1.0.0").await.unwrap());

        let health = get(&format!("{url}/healthz"), None).await;
        assert_eq!(
            (health.status, &health.body["status"]),
            (200, &Value::from("ok"))
        );
        let ready = get(&format!("{url}/readyz"), None).await;
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert_eq!(ready.body["database"], runtime.database());
        assert_ne!(health.call_id, ready.call_id);
        assert!(health.call_id.starts_with("call_") && health.call_id.len() == 29);

        let adapters = format!("{url}/v1/adapters");
        refused_as(&get(&adapters, None).await, 401, "unauthorized");
        refused_as(
            &get(&adapters, Some("Basic YWNtZTp4")).await,
            401,
            "unauthorized",
        );
        refused_as(
            &get(&adapters, Some("Bearer alk_nope")).await,
            401,
            "unauthorized",
        );

        let mine = get(&adapters, Some(&acme)).await;
        assert_eq!(mine.status, 200, "{}", mine.body);
        assert_eq!(mine.source, None);
        let listed = &mine.body["adapters"];
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0]["name"], "example");
        assert_eq!(listed[0]["active"], "1.0.0");
        assert_eq!(listed[0]["versions"][0]["size"], 10);
        let one = get(&format!("{adapters}/example"), Some(&acme)).await;
        assert_eq!(one.body["versions"][0]["sha256"], "ab".repeat(32));

        // Another tenant: nothing listed, and the name answers as one that does not exist.
        let theirs = get(&adapters, Some(&globex)).await;
        assert_eq!(theirs.body["adapters"], serde_json::json!([]));
        let hidden = get(&format!("{adapters}/example"), Some(&globex)).await;
        let absent = get(&format!("{adapters}/nothing"), Some(&globex)).await;
        refused_as(&hidden, 404, "not_found");
        refused_as(&absent, 404, "not_found");
        refused_as(
            &get(&format!("{url}/v2/whatever"), Some(&acme)).await,
            404,
            "not_found",
        );
    });

    // A rotated key stops working at once, on the running service.
    let rotated = format!(
        "Bearer {}",
        tenant_key(data_dir, database, "rotate-key", "acme")
    );
    tokio.block_on(async {
        let adapters = format!("{url}/v1/adapters");
        refused_as(&get(&adapters, Some(&acme)).await, 401, "unauthorized");
        assert_eq!(get(&adapters, Some(&rotated)).await.status, 200);
    });
    let status = server.stop();
    assert!(
        status.success(),
        "airlock serve exited with {status:?} on SIGTERM"
    );
}

#[test]
fn serve_authenticates_and_isolates_tenants_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    serve_on(dir.path(), None);
}

#[test]
fn serve_authenticates_and_isolates_tenants_on_postgres() {
    let Some(database) =
        TestDatabase::create("serve_authenticates_and_isolates_tenants_on_postgres")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    serve_on(dir.path(), Some(&database.url));
}
