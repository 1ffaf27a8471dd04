//! Shared helpers: the built components, a runtime in a temporary directory, and the
//! honest call every hostile test makes afterwards.

#![allow(dead_code)]

use airlock::{Adapter, Output, Policy, Runtime, RuntimeConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// A runtime whose data directory lives as long as it does.
pub struct TestRuntime {
    pub runtime: Runtime,
    pub dir: TempDir,
}

pub fn runtime() -> TestRuntime {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime_in(dir.path());
    TestRuntime { runtime, dir }
}

pub fn runtime_in(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        pool_size: 32,
        ..RuntimeConfig::with_data_dir(dir)
    })
    .expect("runtime")
}

pub async fn load(runtime: &Runtime, path: &str, policy: &str) -> Adapter {
    let policy = Policy::from_toml(policy, "test policy").expect("policy parses");
    runtime
        .load_file(path, policy)
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// The example adapter's config: provisioning completes at once unless `step_millis` says
/// otherwise.
pub fn example_config(step_millis: u64) -> Value {
    json!({ "region": "eu-west-1", "plan": "small", "stepMillis": step_millis })
}

/// An honest create and status on the example adapter, on `runtime`: both must succeed.
pub async fn assert_honest_call_succeeds(runtime: &Runtime) {
    let example = load(runtime, EXAMPLE_ADAPTER, "").await;
    let config = example_config(0);
    let created = example
        .create(&config, &json!({ "name": "honest" }), None)
        .await
        .expect("an honest create after a hostile call succeeds");
    let status = example
        .status(&config, &created.instance_id)
        .await
        .expect("honest status");
    assert_eq!(status.status, airlock::Status::Success);
}

/// The output of a successful invocation, or a panic with the error.
pub fn ok(result: Result<Output, airlock::AdapterError>) -> Output {
    result.unwrap_or_else(|e| panic!("expected success, got {e}"))
}

/// A plain HTTP server on 127.0.0.1 that records what reaches it: every accepted
/// connection, and the head (request line and headers) of every request, answering each
/// `200 ok`. Security tests use it to prove from the provider's side that a refused request
/// never left the host.
pub struct RecordingListener {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RecordingListener {
    pub async fn start() -> RecordingListener {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 1 << 20 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        RecordingListener {
            port,
            connections,
            heads,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The heads of the requests received so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Whether a test may go on without `what` (a tool or a server it needs): under `CI=true`
/// a missing one fails the test, since CI installs everything the suite needs and a skip
/// there would pass what was not run; elsewhere it prints one line saying what is skipped
/// and why, and returns false.
pub fn present_or_skip(what: &str, present: bool, skipped: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing, and CI=true: CI must install it ({skipped} would be skipped)");
    }
    eprintln!("SKIPPED {skipped}: {what} is missing (under CI=true this fails)");
    false
}
