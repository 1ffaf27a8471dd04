//! Hostile adapters that attack the contract checks and the sandbox's capabilities:
//! lying output, ambient authority (files, environment, sockets), denied requests in a
//! loop, slow providers. Each test is named after its adapter (see `foreach_hostile!` in
//! `hostile.rs`).

use std::time::{Duration, Instant};

use airlock::{ErrorCode, ErrorOrigin, Operation, Output};
use fakecloud::{FakeCloud, FakeCloudConfig, Fault};
use serde_json::{Value, json};

use crate::common::*;
use crate::hostile::{DEADLINE_SLACK_MS, assert_deadline_stopped, attack, status};

fn create(key: Option<&str>) -> Operation {
    Operation::Create {
        params: json!({}),
        idempotency_key: key.map(str::to_owned),
    }
}

/// A successful create on the adapter at `path` under `policy`: its metadata.
async fn create_metadata(t: &TestRuntime, path: &str, policy: &str) -> Value {
    let adapter = load(&t.runtime, path, policy).await;
    let invocation = adapter.invoke(&json!({}), create(None)).await;
    let Output::Provisioned(result) = ok(invocation.result) else {
        panic!("create returns a result")
    };
    assert!(invocation.receipt.instantiated);
    Value::Object(result.metadata.expect("metadata"))
}

#[tokio::test]
pub(crate) async fn non_utf8() {
    let t = runtime();
    // The instance id of a create (twice with one key: the failure released the claim, so
    // the guest runs again), then the error message of a status: the host cannot lift the
    // string, so the call fails whole and the bytes go nowhere.
    for operation in [create(Some("k")), create(Some("k")), status()] {
        let (error, receipt) = attack(&t.runtime, HOSTILE_NON_UTF8, "", operation).await;
        assert_eq!(
            (error.error_code, error.message.as_str()),
            (
                ErrorCode::Internal,
                "adapter broke the contract: it returned text that is not valid UTF-8 (invalid utf-8 sequence of 1 bytes from index 0)"
            )
        );
        assert_eq!(error.origin, ErrorOrigin::Contract);
        assert_eq!(error.raw, None);
        assert!(receipt.instantiated);
        assert_eq!(receipt.limit_hit, None);
        assert_eq!(receipt.error_code, Some(ErrorCode::Internal));
    }
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn bad_metadata() {
    let t = runtime();
    for (operation, message) in [
        (
            create(Some("k")),
            "adapter broke the contract: `metadata` must be a JSON object, got an array",
        ),
        (
            status(),
            "adapter broke the contract: `raw` is not valid JSON (expected ident at line 1 column 2)",
        ),
    ] {
        let (error, receipt) = attack(&t.runtime, HOSTILE_BAD_METADATA, "", operation).await;
        assert_eq!(
            (error.error_code, error.message.as_str()),
            (ErrorCode::Internal, message)
        );
        assert_eq!(error.origin, ErrorOrigin::Contract);
        assert!(receipt.instantiated);
    }
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn success_with_error() {
    let t = runtime();
    let (error, receipt) = attack(&t.runtime, HOSTILE_SUCCESS_WITH_ERROR, "", status()).await;
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Internal,
            "adapter broke the contract: status SUCCESS carries an error code; only FAILED or CANCELLED may"
        )
    );
    assert_eq!(error.origin, ErrorOrigin::Contract);
    assert!(receipt.instantiated);
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn vanishing_id() {
    let t = runtime();
    let adapter = load(&t.runtime, HOSTILE_VANISHING_ID, "").await;
    let call = |key: &'static str| {
        let adapter = adapter.clone();
        async move { adapter.invoke(&json!({}), create(Some(key))).await }
    };
    let provisioned = |invocation: &airlock::Invocation| match &invocation.result {
        Ok(Output::Provisioned(result)) => result.clone(),
        other => panic!("create returns a result: {other:?}"),
    };

    let first = call("order-1").await;
    let result = provisioned(&first);
    assert_eq!(
        (result.instance_id.as_str(), result.created),
        ("vanish-1", true)
    );
    assert!(first.receipt.instantiated);
    assert_eq!(first.receipt.idempotency, Some("claimed"));

    // The same key: the recorded id is replayed, the guest (which would say vanish-2)
    // does not run.
    let again = call("order-1").await;
    let result = provisioned(&again);
    assert_eq!(
        (result.instance_id.as_str(), result.created),
        ("vanish-1", false)
    );
    assert_eq!(result.idempotency_key.as_deref(), Some("order-1"));
    assert_eq!(again.receipt.idempotency, Some("replayed"));
    assert!(!again.receipt.instantiated);

    // A new key runs the guest, which has moved on.
    let other = call("order-2").await;
    let result = provisioned(&other);
    assert_eq!(
        (result.instance_id.as_str(), result.created),
        ("vanish-2", true)
    );
    assert!(other.receipt.instantiated);
    assert_honest_call_succeeds(&t.runtime).await;
}

/// A create that finds its key recorded for another instance when it finishes (another call
/// took its claim over and recorded first: a late owner) does not overwrite the record:
/// its caller gets `INTERNAL` naming both ids, and every later caller the recorded one.
#[tokio::test]
async fn a_late_create_does_not_overwrite_the_recorded_instance() {
    let t = runtime();
    let cloud = FakeCloud::start(FakeCloudConfig::default())
        .await
        .expect("fakecloud starts");
    let base = cloud.base_url();
    let token = t.dir.path().join("token");
    std::fs::write(&token, FakeCloudConfig::default().token).unwrap();
    let policy = format!(
        "[[http.allow]]\nurl = \"{base}/v1/\"\naddresses = [\"127.0.0.1/32\"]\n\n[secrets.fakecloud-token]\nsource = \"file:{}\"\ndestinations = [\"{base}/v1/\"]\n",
        token.display()
    );
    let adapter = load(&t.runtime, FAKECLOUD_ADAPTER, &policy).await;
    let config = json!({ "endpoint": base });
    // The provider holds the create long enough for the record to change under it.
    cloud.inject_fault(Fault::Delay {
        millis: 3000,
        count: 1,
    });
    let named = || Operation::Create {
        params: json!({ "name": "late" }),
        idempotency_key: Some("late-key".into()),
    };
    let late = tokio::spawn({
        let (adapter, config, operation) = (adapter.clone(), config.clone(), named());
        async move { adapter.invoke(&config, operation).await }
    });

    // Once the claim is taken, another owner takes the key over (the next epoch) and its
    // outcome lands in the record, as a node that outlived this one's lease would.
    let db = rusqlite::Connection::open(t.dir.path().join("airlock.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let claimed = Instant::now();
    loop {
        let state: Option<String> = db
            .query_row(
                "SELECT state FROM idempotency WHERE key = 'late-key'",
                [],
                |r| r.get(0),
            )
            .ok();
        if state.as_deref() == Some("running") {
            break;
        }
        assert!(claimed.elapsed() < Duration::from_secs(20), "no claim");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recorded = json!({
        "instanceId": "recorded-by-the-other-owner",
        "connection": { "host": "elsewhere" },
        "created": true,
        "idempotencyKey": "late-key",
    });
    let changed = db
        .execute(
            "UPDATE idempotency SET state = 'done', epoch = epoch + 1, owner_node = NULL,
             owner_call = NULL, lease_until = NULL, instance_id = 'recorded-by-the-other-owner',
             result = ?1 WHERE key = 'late-key'",
            [recorded.to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);

    let invocation = late.await.unwrap();
    let error = invocation.result.expect_err("the late create is refused");
    assert_eq!(error.error_code, ErrorCode::Internal);
    assert_eq!(error.origin, ErrorOrigin::Contract);
    let prefix = "adapter broke the contract: idempotency key \"late-key\" is recorded for instance \"recorded-by-the-other-owner\", but the adapter returned \"";
    assert!(
        error.message.starts_with(prefix)
            && error.message.ends_with("\"; the recorded instance stands"),
        "{}",
        error.message
    );
    assert_eq!(invocation.receipt.error_code, Some(ErrorCode::Internal));
    assert_eq!(invocation.receipt.idempotency, Some("fenced"));
    assert_eq!(cloud.resource_count(), 1, "the late guest did make one");

    // The recorded instance stands for the next caller, without a guest.
    let again = adapter.invoke(&config, named()).await;
    match again.result {
        Ok(Output::Provisioned(result)) => assert_eq!(
            (result.instance_id.as_str(), result.created),
            ("recorded-by-the-other-owner", false)
        ),
        other => panic!("the record is replayed: {other:?}"),
    }
    assert!(!again.receipt.instantiated);
}

#[tokio::test]
pub(crate) async fn denied_retry_loop() {
    let t = runtime();
    let (error, receipt) = attack(&t.runtime, HOSTILE_DENIED_RETRY_LOOP, "", status()).await;
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Limit,
            "HTTP limit exceeded: more than 32 HTTP requests in one call (http.max_requests_per_call)"
        )
    );
    // The guest's own error (it returned the budget's refusal with `?`), not a host limit.
    assert_eq!(error.origin, ErrorOrigin::Adapter);
    // 32 denied requests were counted; the 33rd was refused by the budget before it was.
    assert_eq!(receipt.http_requests, 32);
    assert_eq!(receipt.limit_hit, None);
    assert_honest_call_succeeds(&t.runtime).await;
}

/// 40,000 distinct header names used to abort the process (`HeaderMap::append` panics past
/// 32,768 entries); a million `{secret}` in a template, and 100,000 `secrets.get` calls, made
/// the host allocate without a bound. Each now ends in its exact error while the process
/// lives; the honest request after it, in the same call, reaches the provider; the floods
/// never do.
#[tokio::test]
pub(crate) async fn header_flood() {
    let t = runtime();
    let provider = RecordingListener::start().await;
    let base = format!("http://127.0.0.1:{}/", provider.port());
    let secret = "header-flood-secret-0123456789";
    let file = t.dir.path().join("token");
    std::fs::write(&file, secret).unwrap();
    let policy = format!(
        "[[http.allow]]\nurl = \"{base}\"\naddresses = [\"127.0.0.1/32\"]\n\n\
         [secrets.token]\nsource = \"file:{}\"\ndestinations = [\"{base}\"]\n",
        file.display()
    );
    let adapter = load(&t.runtime, HOSTILE_HEADER_FLOOD, &policy).await;
    let too_many = "the request has 40000 headers (secret headers included); the limit is 64 (http.max_request_headers)";
    let honest = json!({ "status": 200 });
    let cases = [
        (
            "headers",
            json!({ "error": "limit-exceeded", "message": too_many }),
            2,
        ),
        (
            "header-bytes",
            json!({
                "error": "limit-exceeded",
                "message": "the request's headers are 1048604 bytes (names and values, secret headers with the secret in place); the limit is 16384 (http.max_request_header_bytes)",
            }),
            2,
        ),
        (
            // "authorization" and 1,000,000 times the 30-byte secret, counted before placing it.
            "template",
            json!({
                "error": "limit-exceeded",
                "message": "the request's headers are 30000013 bytes (names and values, secret headers with the secret in place); the limit is 16384 (http.max_request_header_bytes)",
            }),
            2,
        ),
        (
            "handles",
            json!({
                "held": 64,
                "refused": 99_936,
                "firstRefusal": {
                    "error": "unavailable",
                    "message": "secret unavailable: this call already holds 64 secret handles, the most one call may hold at once; reuse the handle you have for \"token\" (one handle serves every request) or drop handles you no longer need",
                },
                "afterDrop": "ok",
            }),
            1,
        ),
    ];
    for (i, (attack, expected, requests)) in cases.into_iter().enumerate() {
        let invocation = adapter
            .invoke(
                &json!({}),
                Operation::Create {
                    params: json!({ "attack": attack, "url": base }),
                    idempotency_key: None,
                },
            )
            .await;
        let Output::Provisioned(result) = ok(invocation.result) else {
            panic!("create returns a result")
        };
        assert_eq!(
            Value::Object(result.metadata.expect("metadata")),
            json!({ "attack": expected, "honest": honest }),
            "{attack}"
        );
        assert_eq!(invocation.receipt.http_requests, requests, "{attack}");
        // Only the honest request reached the provider, with its secret in place.
        let heads = provider.heads();
        assert_eq!(
            (provider.connections(), heads.len()),
            (i + 1, i + 1),
            "{attack}: {heads:?}"
        );
        let head = heads[i].to_ascii_lowercase();
        assert!(head.starts_with("get / http/1.1\r\n"), "{attack}: {head}");
        assert!(head.contains("\r\nx-honest: yes\r\n"), "{attack}: {head}");
        assert!(
            head.contains(&format!("\r\nauthorization: bearer {secret}\r\n")),
            "{attack}: {head}"
        );
        assert!(
            !head.contains("x-flood") && !head.contains("x-big"),
            "{attack}"
        );
    }

    // Returned with `?`, the flood ends the call in `LIMIT` with the host's message.
    let invocation = adapter.invoke(&json!({ "url": base }), status()).await;
    let error = invocation.result.expect_err("the flood fails the call");
    assert_eq!(
        (error.error_code, error.message.as_str(), error.origin),
        (
            ErrorCode::Limit,
            format!("HTTP limit exceeded: {too_many}").as_str(),
            ErrorOrigin::Adapter
        )
    );
    assert_eq!(invocation.receipt.http_requests, 1);
    assert_eq!(invocation.receipt.limit_hit, None);
    assert_eq!(provider.connections(), 4, "the flood never left the host");
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn read_files() {
    let t = runtime();
    let metadata = create_metadata(&t, HOSTILE_READ_FILES, "").await;
    // No preopened directories: every path resolves to nothing (WASI errno 44, ENOENT).
    let missing = "err: No such file or directory (os error 44)";
    assert_eq!(
        metadata,
        json!({ "passwd": missing, "root": missing, "cwd": missing, "write": missing })
    );
    assert!(!std::path::Path::new("/tmp/airlock-escape").exists());
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn read_env() {
    let t = runtime();
    let metadata = create_metadata(&t, HOSTILE_READ_ENV, "").await;
    // No variables, no arguments; the working directory is WASI libc's default, "/", which
    // names nothing the guest can open (see `read_files`).
    assert_eq!(
        metadata,
        json!({
            "vars": 0,
            "varNames": [],
            "args": 0,
            "home": "err: environment variable not found",
            "currentDir": "ok: /",
        })
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn open_socket() {
    let t = runtime();
    let metadata = create_metadata(&t, HOSTILE_OPEN_SOCKET, "").await;
    // TCP and UDP are refused (WASI errno 2, EACCES); name lookup is off.
    let denied = "err: Permission denied (os error 2)";
    assert_eq!(
        metadata,
        json!({
            "tcpConnect": denied,
            "tcpListen": denied,
            "udpBind": denied,
            "resolve": "err: failed to lookup address information: Non-recoverable error",
        })
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn slow_provider() {
    let t = runtime();
    let cloud = FakeCloud::start(FakeCloudConfig::default())
        .await
        .expect("fakecloud starts");
    let base = cloud.base_url();
    let policy = format!(
        "[limits]\ndeadline_ms = 400\n\n[http]\nrequest_timeout_ms = 10000\n\n[[http.allow]]\nurl = \"{base}/\"\naddresses = [\"127.0.0.1/32\"]\n"
    );
    let adapter = load(&t.runtime, HOSTILE_SLOW_PROVIDER, &policy).await;
    cloud.inject_fault(Fault::Delay {
        millis: 5000,
        count: 1,
    });
    let started = Instant::now();
    let invocation = adapter
        .invoke(&json!({ "url": format!("{base}/v1/databases") }), status())
        .await;
    let elapsed = started.elapsed();
    let error = invocation.result.expect_err("the slow provider is cut off");
    // The request's timeout was the 400 ms left of the call, not the policy's 10 s, nor
    // the provider's 5 s.
    assert_deadline_stopped(&error, &invocation.receipt, 400);
    assert!(
        elapsed < Duration::from_millis(400 + DEADLINE_SLACK_MS),
        "took {elapsed:?}"
    );
    assert_eq!(invocation.receipt.http_requests, 1);
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn exfiltrate_header() {
    let t = runtime();
    let cloud = FakeCloud::start(FakeCloudConfig::default())
        .await
        .expect("fakecloud starts");
    let base = cloud.base_url();
    let file = t.dir.path().join("leaky");
    std::fs::write(&file, "hunter2-is-not-a-good-password").unwrap();
    let policy = format!(
        "[[http.allow]]\nurl = \"{base}/v1/\"\naddresses = [\"127.0.0.1/32\"]\n\n[[http.allow]]\nurl = \"{base}/_admin/\"\naddresses = [\"127.0.0.1/32\"]\n\n[secrets.leaky]\nsource = \"file:{}\"\ndestinations = [\"{base}/v1/\"]\n",
        file.display()
    );
    let adapter = load(&t.runtime, HOSTILE_EXFILTRATE_HEADER, &policy).await;
    let url = format!("{base}/_admin/stats");
    let invocation = adapter.invoke(&json!({ "url": url }), create(None)).await;
    let error = invocation.result.expect_err("the secret stays home");
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Auth,
            format!(
                "GET {url} denied: secret \"leaky\" is bound to [\"{base}/v1/\"], not to this destination; adding \"{url}\" to `destinations` in its policy table (line 9) would allow it"
            )
            .as_str()
        )
    );
    assert_eq!(error.origin, ErrorOrigin::Adapter);
    // The request was counted and refused before anything left the host.
    assert_eq!(invocation.receipt.http_requests, 1);
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
pub(crate) async fn busy_after_http() {
    let t = runtime();
    let cloud = fakecloud::FakeCloud::start(fakecloud::FakeCloudConfig::default())
        .await
        .unwrap();
    let policy = format!(
        "[limits]\nfuel = 30000000\n\n[[http.allow]]\nurl = \"{}/\"\naddresses = [\"127.0.0.1/32\"]\n",
        cloud.base_url()
    );
    let adapter = load(&t.runtime, HOSTILE_BUSY_AFTER_HTTP, &policy).await;
    let config = serde_json::json!({ "url": format!("{}/v1/databases", cloud.base_url()) });
    let invocation = adapter.invoke(&config, status()).await;
    let error = invocation.result.unwrap_err();
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            airlock::ErrorCode::Limit,
            "fuel limit of 30000000 exceeded (limits.fuel)"
        )
    );
    assert_eq!(invocation.receipt.limit_hit, Some(airlock::LimitKind::Fuel));
    assert_eq!(invocation.receipt.http_requests, 1);
    assert_eq!(
        cloud.request_count(),
        1,
        "the request really went out before the busy work"
    );
    assert_honest_call_succeeds(&t.runtime).await;
}
