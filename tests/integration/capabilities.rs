//! The `http` and `secrets` capabilities against a real provider on 127.0.0.1 (fakecloud),
//! driven from inside guests: the fakecloud adapter's whole life with a secret it never
//! sees, every denial as the guest sees it, reclassification of provider failures, and the
//! leak guard.

use std::time::Duration;

use airlock::{Credential, ErrorCode, Operation, Output, Status};
use fakecloud::{FakeCloud, FakeCloudConfig, Fault};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::hostile;

pub const TOKEN: &str = "fakecloud-test-token-0123456789";

/// A secret file holding `value`, and the policy line that grants it.
pub fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    path.display().to_string()
}

pub async fn fakecloud() -> FakeCloud {
    FakeCloud::start(FakeCloudConfig {
        token: TOKEN.into(),
        step_millis: 100,
        steps: 3,
        ..FakeCloudConfig::default()
    })
    .await
    .expect("fakecloud starts")
}

pub fn fakecloud_policy(cloud: &FakeCloud, token_file: &str) -> String {
    format!(
        r#"
[[http.allow]]
url = "{base}/v1/"
methods = ["GET", "POST", "DELETE"]
addresses = ["127.0.0.1/32"]

[secrets.fakecloud-token]
source = "file:{token_file}"
destinations = ["{base}/v1/"]
"#,
        base = cloud.base_url()
    )
}

#[tokio::test]
async fn the_fakecloud_adapter_provisions_through_the_sandbox_with_a_secret_it_never_sees() {
    let t = runtime();
    let cloud = fakecloud().await;
    let token_file = secret_file(t.dir.path(), "token", TOKEN);
    let adapter = load(
        &t.runtime,
        FAKECLOUD_ADAPTER,
        &fakecloud_policy(&cloud, &token_file),
    )
    .await;
    let config = json!({ "endpoint": cloud.base_url(), "plan": "medium" });

    adapter.validate_config(&config).await.unwrap();
    let created = adapter
        .create(&config, &json!({ "name": "orders" }), Some("order-1"))
        .await
        .unwrap();
    assert!(created.created);
    let again = adapter
        .create(&config, &json!({ "name": "orders" }), Some("order-1"))
        .await
        .unwrap();
    assert_eq!(
        (again.instance_id.as_str(), again.created),
        (created.instance_id.as_str(), false)
    );
    assert_eq!(
        cloud.resource_count(),
        1,
        "the client token kept the provider at one resource"
    );

    let mut seen = Vec::new();
    for _ in 0..100 {
        let detail = adapter.status(&config, &created.instance_id).await.unwrap();
        if seen.last() != Some(&detail.status) {
            seen.push(detail.status);
        }
        if detail.status.is_terminal() {
            assert_eq!(detail.progress.map(|p| (p.current, p.total)), Some((3, 3)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(seen.last(), Some(&Status::Success), "{seen:?}");
    assert!(seen.contains(&Status::Running), "{seen:?}");

    match adapter
        .credentials(&config, &created.instance_id)
        .await
        .unwrap()
    {
        Credential::Ephemeral { values, .. } => {
            assert!(values["password"].as_str().unwrap().len() >= 16)
        }
        other => panic!("expected ephemeral credentials, got {other:?}"),
    }
    adapter
        .destroy(&config, &created.instance_id)
        .await
        .unwrap();
    adapter
        .destroy(&config, &created.instance_id)
        .await
        .expect("destroy is idempotent");
    assert_eq!(cloud.resource_count(), 0);

    // Nothing the adapter logged or returned holds the token, by the guard's count. That
    // alone is also what a guard that missed a leak would report: `secret_probe` proves
    // from the guest's side that the value never reached it, and from the provider's
    // that the host placed it exactly.
    let invocation = adapter
        .invoke(
            &config,
            Operation::Create {
                params: json!({ "name": "check" }),
                idempotency_key: None,
            },
        )
        .await;
    assert_eq!(
        invocation.receipt.redactions, 0,
        "the adapter never had the token to leak"
    );
    assert_eq!(invocation.receipt.secrets_revealed, 0);
    assert!(invocation.receipt.http_requests >= 1);
}

#[tokio::test]
async fn provider_failures_are_reclassified_when_the_guest_passes_them_through() {
    let t = runtime();
    let cloud = fakecloud().await;
    let token_file = secret_file(t.dir.path(), "token", TOKEN);
    let fc = load(
        &t.runtime,
        FAKECLOUD_ADAPTER,
        &fakecloud_policy(&cloud, &token_file),
    )
    .await;
    let config = json!({ "endpoint": cloud.base_url() });

    cloud.inject_fault(Fault::Status {
        status: 429,
        count: 1,
    });
    let error = fc
        .create(&config, &json!({ "name": "limited" }), Some("k"))
        .await
        .unwrap_err();
    assert_eq!(error.error_code, ErrorCode::Limit);
    assert_eq!(error.raw.as_ref().unwrap()["retryAfter"], "2");
    assert_eq!(error.raw.as_ref().unwrap()["providerStatus"], 429);

    cloud.inject_fault(Fault::Status {
        status: 503,
        count: 1,
    });
    let error = fc
        .create(&config, &json!({ "name": "flaky" }), Some("k"))
        .await
        .unwrap_err();
    assert_eq!(error.error_code, ErrorCode::Retryable);

    // A guest that says PERMANENT after a provider 5xx, 401 or 429 is overruled.
    let probe_policy = format!(
        "[[http.allow]]\nurl = \"{}/\"\naddresses = [\"127.0.0.1/32\"]\n",
        cloud.base_url()
    );
    let probe = load(&t.runtime, HOSTILE_HTTP_PROBE, &probe_policy).await;
    let url = json!({ "url": format!("{}/v1/databases", cloud.base_url()) });
    let cases = [
        (Some(503), ErrorCode::Retryable),
        (Some(429), ErrorCode::Limit),
        (None, ErrorCode::Auth),
    ];
    for (fault, code) in cases {
        if let Some(status) = fault {
            cloud.inject_fault(Fault::Status { status, count: 1 });
        }
        let error = probe.status(&url, "i").await.unwrap_err();
        assert_eq!(error.error_code, code, "{error:?}");
        assert_eq!(error.raw.as_ref().unwrap()["adapterErrorCode"], "PERMANENT");
        assert!(
            error.message.starts_with("gave up after HTTP "),
            "{}",
            error.message
        );
    }
}

/// A one-shot HTTP server that answers every connection with `response`.
async fn canned_server(response: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    port
}

/// Run the probe with `requests` and return each outcome.
async fn probe(adapter: &airlock::Adapter, requests: Value) -> Vec<Value> {
    let invocation = adapter
        .invoke(
            &json!({}),
            Operation::Create {
                params: json!({ "requests": requests }),
                idempotency_key: None,
            },
        )
        .await;
    match ok(invocation.result) {
        Output::Provisioned(result) => result.metadata.unwrap()["outcomes"]
            .as_array()
            .unwrap()
            .clone(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn every_denial_is_refused_with_its_message_from_inside_the_guest() {
    let t = runtime();
    let cloud = fakecloud().await;
    let base = cloud.base_url();
    let port = cloud.addr().port();
    let redirect_port = canned_server("HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n").await;
    let token_file = secret_file(t.dir.path(), "token", TOKEN);
    let policy = format!(
        r#"[http]
max_requests_per_call = 16

[[http.allow]]
url = "{base}/v1/"
methods = ["GET", "POST"]
addresses = ["127.0.0.1/32"]

[[http.allow]]
url = "http://localhost:{port}/"

[[http.allow]]
url = "http://169.254.169.254/"

[[http.allow]]
url = "http://127.0.0.1:{redirect_port}/"
addresses = ["127.0.0.1/32"]

[secrets.fakecloud-token]
source = "file:{token_file}"
destinations = ["{base}/v1/"]
"#
    );
    let adapter = load(&t.runtime, HOSTILE_HTTP_PROBE, &policy).await;
    let auth = json!([["authorization", "Bearer {secret}", "fakecloud-token"]]);
    let outcomes = probe(
        &adapter,
        json!([
            { "url": format!("{base}/v1/databases"), "secretHeaders": auth },
            { "url": format!("http://2130706433:{port}/v1/databases"), "secretHeaders": auth },
            { "url": "http://api.evil.example/steal" },
            { "url": format!("http://127.0.0.1:1/v1/databases") },
            { "url": format!("https://127.0.0.1:{port}/v1/databases") },
            { "url": format!("{base}/_admin/stats") },
            { "method": "DELETE", "url": format!("{base}/v1/databases/db-000001") },
            { "url": format!("http://localhost:{port}/v1/databases") },
            { "url": "http://169.254.169.254/latest/meta-data/" },
            { "url": "http://0xa9fea9fe/latest/meta-data/" },
            { "url": format!("http://127.0.0.1:{redirect_port}/start") },
            { "url": format!("http://127.0.0.1:{redirect_port}/x"), "secretHeaders": auth },
            { "url": format!("{base}/v1/databases"), "secretHeaders": [["authorization", "Bearer {secret}", "not-granted"]] },
            { "url": format!("{base}/v1/databases"), "headers": [["Host", "internal.example"]] },
            { "url": format!("{base}/v1/databases"), "headers": [["Transfer-Encoding", "chunked"]] },
        ]),
    )
    .await;
    let expect = |i: usize, kind: &str, message: &str| {
        assert_eq!(outcomes[i]["error"], kind, "outcome {i}: {}", outcomes[i]);
        assert_eq!(
            outcomes[i]["message"].as_str().unwrap(),
            message,
            "outcome {i}"
        );
    };
    assert_eq!(outcomes[0]["status"], 200, "allowed path: {}", outcomes[0]);
    assert_eq!(
        outcomes[1]["status"], 200,
        "a decimal spelling of an allowed address: {}",
        outcomes[1]
    );
    expect(
        2,
        "denied",
        "GET http://api.evil.example/steal denied: no [[http.allow]] entry allows http://api.evil.example; an entry `url = \"http://api.evil.example/\"` would allow it",
    );
    expect(
        3,
        "denied",
        &format!(
            "GET http://127.0.0.1:1/v1/databases denied: the [[http.allow]] entry on line 4 (`{base}/v1/`) allows port {port}, not 1"
        ),
    );
    expect(
        4,
        "denied",
        &format!(
            "GET https://127.0.0.1:{port}/v1/databases denied: no [[http.allow]] entry allows https://127.0.0.1; an entry `url = \"https://127.0.0.1:{port}/\"` would allow it"
        ),
    );
    expect(
        5,
        "denied",
        &format!(
            "GET {base}/_admin/stats denied: the [[http.allow]] entry on line 4 (`{base}/v1/`) allows paths under /v1/, not /_admin/stats"
        ),
    );
    expect(
        6,
        "denied",
        &format!(
            "DELETE {base}/v1/databases/db-000001 denied: the [[http.allow]] entry on line 4 (`{base}/v1/`) allows methods [\"GET\", \"POST\"], not DELETE"
        ),
    );
    assert_eq!(outcomes[7]["error"], "denied", "{}", outcomes[7]);
    let loopback = outcomes[7]["message"].as_str().unwrap();
    assert!(
        loopback.starts_with(&format!(
            "GET http://localhost:{port}/v1/databases denied: localhost is "
        )),
        "{loopback}"
    );
    assert!(
        loopback.contains(", a loopback address; `addresses = [\""),
        "{loopback}"
    );
    assert!(
        loopback.ends_with("\"]` in the [[http.allow]] entry on line 9 would allow it"),
        "{loopback}"
    );
    let metadata = "GET http://169.254.169.254/latest/meta-data/ denied: 169.254.169.254 is 169.254.169.254, a cloud metadata address; `addresses = [\"169.254.169.254/32\"]` in the [[http.allow]] entry on line 12 would allow it";
    expect(8, "denied", metadata);
    expect(9, "denied", metadata);
    assert_eq!(
        outcomes[10]["status"], 302,
        "redirects are returned, not followed: {}",
        outcomes[10]
    );
    assert_eq!(
        outcomes[10]["location"],
        "http://169.254.169.254/latest/meta-data/"
    );
    expect(
        11,
        "denied",
        &format!(
            "GET http://127.0.0.1:{redirect_port}/x denied: secret \"fakecloud-token\" is bound to [\"{base}/v1/\"], not to this destination; adding \"http://127.0.0.1:{redirect_port}/x\" to `destinations` in its policy table (line 19) would allow it"
        ),
    );
    assert_eq!(outcomes[12]["error"], "secret");
    assert_eq!(
        outcomes[12]["message"].as_str().unwrap(),
        "secret not granted: secret \"not-granted\" is not granted to adapter \"hostile_http_probe\" (it is granted [\"fakecloud-token\"]); a policy table [secrets.not-granted] with a source would grant it"
    );
    expect(
        13,
        "invalid",
        "header `host` is set by the host, not the adapter",
    );
    expect(
        14,
        "invalid",
        "header `transfer-encoding` is set by the host, not the adapter",
    );
}

/// Hop-by-hop headers, credentials in the URL, IPv6 forms that wrap a loopback or metadata
/// IPv4 address, a header flood and an overlong URL, from inside a guest: each refused with its exact
/// message, and the provider listening on 127.0.0.1 sees only the one honest request sent
/// after them.
#[tokio::test]
async fn header_address_and_flood_tricks_from_inside_a_guest_never_reach_the_provider() {
    let t = runtime();
    let provider = RecordingListener::start().await;
    let port = provider.port();
    let policy = format!(
        r#"[http]
max_requests_per_call = 16

[[http.allow]]
url = "http://127.0.0.1:{port}/"
addresses = ["127.0.0.1/32"]

[[http.allow]]
url = "http://[::ffff:127.0.0.1]:{port}/"

[[http.allow]]
url = "http://[2002:7f00:1::]:{port}/"

[[http.allow]]
url = "http://[2002:a9fe:a9fe::]/"

[[http.allow]]
url = "http://[::ffff:0:7f00:1]:{port}/"
"#
    );
    let adapter = load(&t.runtime, HOSTILE_HTTP_PROBE, &policy).await;
    let base = format!("http://127.0.0.1:{port}/");
    let outcomes = probe(
        &adapter,
        json!([
            { "url": base, "headers": [["Connection", "close"]] },
            { "url": base, "headers": [["Upgrade", "websocket"]] },
            { "url": base, "headers": [["Expect", "100-continue"]] },
            { "url": format!("http://user:pw@127.0.0.1:{port}/") },
            { "url": format!("http://[::ffff:127.0.0.1]:{port}/") },
            { "url": format!("http://[2002:7f00:1::]:{port}/") },
            { "url": "http://[2002:a9fe:a9fe::]/latest/meta-data/" },
            { "url": format!("http://[::ffff:0:7f00:1]:{port}/") },
            { "url": base, "flood": 40_000 },
            { "url": format!("{base}{}", "a".repeat(9000)) },
            { "url": base },
        ]),
    )
    .await;
    let expected = [
        json!({ "error": "invalid", "message": "header `connection` is set by the host, not the adapter" }),
        json!({ "error": "invalid", "message": "header `upgrade` is set by the host, not the adapter" }),
        json!({ "error": "invalid", "message": "header `expect` is set by the host, not the adapter" }),
        json!({
            "error": "invalid",
            "message": format!("http://user:pw@127.0.0.1:{port}/: credentials in the URL are not allowed; use a secret header"),
        }),
        json!({
            "error": "denied",
            "message": format!(
                "GET http://[::ffff:7f00:1]:{port}/ denied: ::ffff:127.0.0.1 is ::ffff:127.0.0.1, a loopback address \
                 (127.0.0.1 inside an IPv4-mapped address, ::ffff:0:0/96); `addresses = [\"127.0.0.1/32\"]` in the \
                 [[http.allow]] entry on line 8 would allow it"
            ),
        }),
        json!({
            "error": "denied",
            "message": format!(
                "GET http://[2002:7f00:1::]:{port}/ denied: 2002:7f00:1:: is 2002:7f00:1::, a loopback address \
                 (127.0.0.1 inside a 6to4 address, 2002::/16); `addresses = [\"2002:7f00:1::/128\"]` in the \
                 [[http.allow]] entry on line 11 would allow it"
            ),
        }),
        json!({
            "error": "denied",
            "message": "GET http://[2002:a9fe:a9fe::]/latest/meta-data/ denied: 2002:a9fe:a9fe:: is 2002:a9fe:a9fe::, \
                        a cloud metadata address (169.254.169.254 inside a 6to4 address, 2002::/16); \
                        `addresses = [\"2002:a9fe:a9fe::/128\"]` in the [[http.allow]] entry on line 14 would allow it",
        }),
        json!({
            "error": "denied",
            "message": format!(
                "GET http://[::ffff:0:7f00:1]:{port}/ denied: ::ffff:0:7f00:1 is ::ffff:0:7f00:1, a loopback address \
                 (127.0.0.1 inside an IPv4-translated address, ::ffff:0:0:0/96); `addresses = [\"::ffff:0:7f00:1/128\"]` \
                 in the [[http.allow]] entry on line 17 would allow it"
            ),
        }),
        json!({
            "error": "limit-exceeded",
            "message": "the request has 40000 headers (secret headers included); the limit is 64 (http.max_request_headers)",
        }),
        json!({
            "error": "limit-exceeded",
            "message": format!(
                "the URL is {} bytes; the limit is 8192 (http.max_url_bytes)",
                base.len() + 9000
            ),
        }),
    ];
    for (i, expected) in expected.iter().enumerate() {
        assert_eq!(&outcomes[i], expected, "outcome {i}");
    }
    assert_eq!(outcomes.len(), 11);
    assert_eq!(
        outcomes[10]["status"], 200,
        "the honest request: {}",
        outcomes[10]
    );
    // The provider's side: one connection, one request, the honest one.
    let heads = provider.heads();
    assert_eq!((provider.connections(), heads.len()), (1, 1), "{heads:?}");
    assert!(heads[0].starts_with("GET / HTTP/1.1\r\n"), "{}", heads[0]);
    assert!(!heads[0].to_ascii_lowercase().contains("x-flood"));
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
async fn the_request_budget_and_an_empty_allow_list_hold() {
    let t = runtime();
    let cloud = fakecloud().await;
    let base = cloud.base_url();
    let policy = format!(
        "[http]\nmax_requests_per_call = 2\n\n[[http.allow]]\nurl = \"{base}/\"\naddresses = [\"127.0.0.1/32\"]\n"
    );
    let adapter = load(&t.runtime, HOSTILE_HTTP_PROBE, &policy).await;
    let url = format!("{base}/v1/databases");
    let outcomes = probe(
        &adapter,
        json!([{ "url": url }, { "url": url }, { "url": url }]),
    )
    .await;
    assert_eq!(
        outcomes[0]["status"], 401,
        "no token: the provider refuses, the host allows"
    );
    assert_eq!(outcomes[2]["error"], "limit-exceeded");
    assert_eq!(
        outcomes[2]["message"],
        "more than 2 HTTP requests in one call (http.max_requests_per_call)"
    );

    // A provider slower than the per-request timeout is cut off; the host never waits
    // past the bound.
    let policy = format!(
        "[http]\nrequest_timeout_ms = 300\n\n[[http.allow]]\nurl = \"{base}/\"\naddresses = [\"127.0.0.1/32\"]\n\n[[http.allow]]\nurl = \"http://10.1.2.3/\"\n"
    );
    let adapter = load(&t.runtime, HOSTILE_HTTP_PROBE, &policy).await;
    cloud.inject_fault(Fault::Delay {
        millis: 3000,
        count: 1,
    });
    let started = std::time::Instant::now();
    let outcomes = probe(
        &adapter,
        json!([{ "url": url }, { "url": "http://10.1.2.3/" }]),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcomes[0]["error"], "timeout");
    assert_eq!(
        outcomes[0]["message"].as_str().unwrap(),
        format!("GET {url}: no answer within 300 ms")
    );
    // A private address literal is refused before any packet leaves.
    assert_eq!(outcomes[1]["error"], "denied");
    assert_eq!(
        outcomes[1]["message"].as_str().unwrap(),
        "GET http://10.1.2.3/ denied: 10.1.2.3 is 10.1.2.3, a private address; `addresses = [\"10.1.2.3/32\"]` in the [[http.allow]] entry on line 8 would allow it"
    );

    let denied = load(&t.runtime, HOSTILE_HTTP_PROBE, "").await;
    let outcomes = probe(&denied, json!([{ "url": url }])).await;
    assert_eq!(
        outcomes[0]["message"].as_str().unwrap(),
        format!(
            "GET {url} denied: the policy has no [[http.allow]] entries, so all HTTP is denied; an entry `url = \"{base}/\"` would allow it"
        )
    );
}

const LEAKY: &str = "hunter2-is-not-a-good-password";

/// Every spelling of `secret` the leak guard covers: raw, base64 standard and URL-safe
/// with and without padding, hex in both cases, percent-encoding.
pub(crate) fn spellings(secret: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let percent: String = bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(*b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        secret.to_owned(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex::encode(bytes),
        hex::encode_upper(bytes),
        percent,
    ]
}

/// `text` holds no spelling of `secret`.
pub(crate) fn assert_no_spelling(text: &str, secret: &str, what: &str) {
    for spelling in spellings(secret) {
        assert!(
            !text.contains(&spelling),
            "{what} holds the secret as {spelling:?}: {text}"
        );
    }
}

/// The exfiltrate adapter, with `reveal = true` for its secret `leaky` (LEAKY).
async fn exfiltrate_adapter(t: &TestRuntime) -> (airlock::Adapter, String) {
    let file = secret_file(t.dir.path(), "leaky", LEAKY);
    let policy = format!("[secrets.leaky]\nsource = \"file:{file}\"\nreveal = true\n");
    (load(&t.runtime, HOSTILE_EXFILTRATE, &policy).await, policy)
}

/// What every exfiltrate call says besides its answer, each redacted where it entered:
/// five log records (message, field key, field value), one progress report, stdout and
/// stderr. Eighteen replacements.
fn assert_chatter_redacted(invocation: &airlock::Invocation) {
    let levels: Vec<&str> = invocation.logs.iter().map(|r| r.level).collect();
    assert_eq!(levels, ["trace", "debug", "info", "warn", "error"]);
    for record in &invocation.logs {
        assert_eq!(record.message, "the secret is [REDACTED]");
        assert_eq!(
            record.fields,
            vec![("[REDACTED]".to_owned(), "[REDACTED]".to_owned())]
        );
    }
    assert_eq!(invocation.progress.len(), 1);
    assert_eq!(
        invocation.progress[0].message.as_deref(),
        Some("hex [REDACTED]")
    );
    assert_eq!(invocation.stdout, "stdout: [REDACTED]\n");
    assert_eq!(invocation.stderr, "stderr: [REDACTED]\n");
    assert_eq!(invocation.receipt.secrets_revealed, 1);
    assert_no_spelling(&format!("{invocation:?}"), LEAKY, "the invocation");
}

#[tokio::test]
pub(crate) async fn exfiltrate() {
    let t = runtime();
    let (adapter, _) = exfiltrate_adapter(&t).await;
    let create = || Operation::Create {
        params: json!({}),
        idempotency_key: None,
    };

    // Logs, live progress, stdout and stderr: redacted where they enter the host, so the
    // live stream gets what the receipt gets; the answer itself is clean and succeeds.
    let (tx, mut live) = tokio::sync::mpsc::unbounded_channel();
    let mut options = airlock::CallOptions::default();
    options.progress = Some(tx);
    let invocation = adapter.invoke_with(&json!({}), create(), options).await;
    assert_chatter_redacted(&invocation);
    assert_eq!(invocation.receipt.redactions, 18);
    let streamed = live.recv().await.expect("one live report");
    assert_eq!(
        (
            streamed.current,
            streamed.total,
            streamed.message.as_deref()
        ),
        (1, 2, Some("hex [REDACTED]"))
    );
    let Output::Provisioned(result) = ok(invocation.result) else {
        panic!("create returns a result")
    };
    assert_eq!(
        Value::Object(result.connection),
        json!({ "host": "db.example" })
    );

    // A secret in any returned field fails the call, naming the secret and the field.
    let cases: [(&str, Operation, &str); 10] = [
        ("connection", create(), "/connection/apiToken"),
        ("metadata", create(), "/metadata/nested/0/again"),
        ("metadata-key", create(), "a key of /metadata"),
        ("instance-id", create(), "/instanceId"),
        ("message", hostile::status(), "/message"),
        ("raw", hostile::status(), "/raw/provider/token"),
        ("values", credentials(), "/values/token"),
        ("locator", credentials(), "/locator"),
        ("version", credentials(), "/version"),
        (
            "breakdown",
            Operation::EstimateCosts {
                instance_id: "i-1".into(),
            },
            "/breakdown/compute/note",
        ),
    ];
    for (into, operation, field) in cases {
        let (tx, mut live) = tokio::sync::mpsc::unbounded_channel();
        let mut options = airlock::CallOptions::default();
        options.progress = Some(tx);
        let invocation = adapter
            .invoke_with(&json!({ "into": into }), operation, options)
            .await;
        assert_chatter_redacted(&invocation);
        assert_eq!(invocation.receipt.redactions, 19, "{into}");
        assert_eq!(
            live.recv().await.unwrap().message.as_deref(),
            Some("hex [REDACTED]")
        );
        let error = invocation.result.expect_err(into);
        assert_eq!(
            (
                error.error_code,
                error.origin,
                error.message.as_str(),
                &error.raw
            ),
            (
                ErrorCode::Internal,
                airlock::ErrorOrigin::Contract,
                format!("adapter tried to return the secret \"leaky\" in {field}").as_str(),
                &None
            ),
            "{into}"
        );
        assert_eq!(invocation.receipt.error_code, Some(ErrorCode::Internal));
    }

    // An adapter's error is not a result: its message and raw detail are redacted.
    let invocation = adapter
        .invoke(&json!({ "into": "error" }), hostile::status())
        .await;
    assert_chatter_redacted(&invocation);
    assert_eq!(invocation.receipt.redactions, 20);
    let error = invocation.result.unwrap_err();
    assert_eq!(
        (error.error_code, error.origin, error.message.as_str()),
        (
            ErrorCode::Internal,
            airlock::ErrorOrigin::Adapter,
            "failed with token [REDACTED]"
        )
    );
    assert_eq!(
        error.raw,
        Some(json!({ "token": "[REDACTED]", "ok": "nothing" }))
    );

    // A reference's version is bounded like its locator.
    let invocation = adapter
        .invoke(&json!({ "into": "giant-version" }), credentials())
        .await;
    let error = invocation.result.unwrap_err();
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Internal,
            "adapter broke the contract: `version` is 2097152 bytes; the limit is 1048576"
        )
    );
    // A clean reference passes with its version.
    match adapter.credentials(&json!({}), "i-1").await.unwrap() {
        Credential::Reference {
            locator, version, ..
        } => assert_eq!(
            (locator.as_str(), version.as_deref()),
            ("secret/db", Some("3"))
        ),
        other => panic!("unexpected {other:?}"),
    }

    // Without `reveal = true` the guest cannot read the value at all.
    let file = secret_file(t.dir.path(), "sealed", LEAKY);
    let sealed = load(
        &t.runtime,
        HOSTILE_EXFILTRATE,
        &format!("[secrets.leaky]\nsource = \"file:{file}\"\n"),
    )
    .await;
    let error = sealed
        .create(&json!({}), &json!({}), None)
        .await
        .unwrap_err();
    assert_eq!(error.error_code, ErrorCode::Auth);
    assert_eq!(
        error.message,
        "secret reveal denied: secret \"leaky\" may not be revealed to adapter \"hostile_exfiltrate\"; `reveal = true` in its policy table (line 1) would allow it"
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

fn credentials() -> Operation {
    Operation::Credentials {
        instance_id: "i-1".into(),
    }
}

/// The `airlock` binary, with a guest that logs a revealed secret at every level: neither
/// stdout nor stderr carries it, with `--quiet` (where only the host's own `warn` lines
/// reach stderr) or without, and at the most verbose filter.
#[test]
fn the_cli_never_prints_a_revealed_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "leaky", LEAKY);
    let policy = dir.path().join("exfiltrate.toml");
    std::fs::write(
        &policy,
        format!("[secrets.leaky]\nsource = \"file:{file}\"\nreveal = true\n"),
    )
    .unwrap();
    let run = |flags: &[&str], operation: &[&str], into: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["invoke", HOSTILE_EXFILTRATE])
            .args(operation)
            .arg("--config")
            .arg(json!({ "into": into }).to_string())
            .arg("--policy")
            .arg(&policy)
            .args(flags)
            .output()
            .expect("running airlock");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_no_spelling(&stdout, LEAKY, "stdout");
        assert_no_spelling(&stderr, LEAKY, "stderr");
        (output.status.code(), stdout, stderr)
    };
    let create = ["create", "--params", "{}"];
    let status = ["status", "--instance", "i-1"];
    for flags in [&["--quiet"][..], &[], &["--log", "trace"]] {
        let quiet = flags == ["--quiet"];
        let (code, stdout, stderr) = run(flags, &create, "");
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            serde_json::from_str::<Value>(&stdout).unwrap()["connection"],
            json!({ "host": "db.example" })
        );
        // The guest's warn and error records pass through the host's tracing (default
        // filter `warn`) even with --quiet: redacted before tracing saw them.
        assert!(
            stderr.contains("airlock::guest: the secret is [REDACTED]"),
            "{flags:?}: {stderr}"
        );
        assert_eq!(
            stderr.contains("[hostile_exfiltrate warn] the secret is [REDACTED]"),
            !quiet,
            "{flags:?}: {stderr}"
        );
        let (code, stdout, _) = run(flags, &create, "connection");
        assert_eq!(code, Some(15), "INTERNAL's exit status");
        assert_eq!(
            serde_json::from_str::<Value>(&stdout).unwrap()["message"],
            "adapter tried to return the secret \"leaky\" in /connection/apiToken"
        );
        let (_, stdout, _) = run(flags, &status, "error");
        assert_eq!(
            serde_json::from_str::<Value>(&stdout).unwrap()["message"],
            "failed with token [REDACTED]"
        );
    }
}

/// From the guest's side: an adapter that may use the token but not reveal it tries every
/// import that could hand it the value and reports what it got, reversed (a spelling the
/// guard does not cover, so this does not rest on the guard). From the provider's side:
/// the provider got exactly `Bearer TOKEN`.
#[tokio::test]
pub(crate) async fn secret_probe() {
    let t = runtime();
    let cloud = fakecloud().await;
    let base = cloud.base_url();
    let (recorder, seen_by_recorder) = recording_server().await;
    let token_file = secret_file(t.dir.path(), "token", TOKEN);
    let policy = format!(
        r#"[[http.allow]]
url = "{base}/"
methods = ["GET"]
addresses = ["127.0.0.1/32"]

[[http.allow]]
url = "{recorder}/"
addresses = ["127.0.0.1/32"]

[secrets.fakecloud-token]
source = "file:{token_file}"
destinations = ["{base}/v1/", "{recorder}/"]
"#
    );
    let adapter = load(&t.runtime, HOSTILE_SECRET_PROBE, &policy).await;
    let config = json!({
        "secret": "fakecloud-token",
        "bound": format!("{base}/v1/databases"),
        "unbound": format!("{base}/_admin/stats"),
        "recorder": format!("{recorder}/hook"),
    });
    let invocation = adapter
        .invoke(
            &config,
            Operation::Create {
                params: json!({}),
                idempotency_key: None,
            },
        )
        .await;
    assert_eq!(invocation.receipt.redactions, 0);
    assert_eq!(invocation.receipt.secrets_revealed, 0);
    let Output::Provisioned(result) = ok(invocation.result) else {
        panic!("create returns a result")
    };
    let seen: std::collections::BTreeMap<String, String> = result.metadata.unwrap()["seen"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().chars().rev().collect()))
        .collect();
    for (label, text) in &seen {
        assert_no_spelling(text, TOKEN, label);
    }
    assert_eq!(seen["name"], "fakecloud-token");
    assert_eq!(
        seen["reveal"],
        "secret reveal denied: secret \"fakecloud-token\" may not be revealed to adapter \"hostile_secret_probe\"; `reveal = true` in its policy table (line 10) would allow it"
    );
    assert_eq!(
        seen["notGranted"],
        "secret not granted: secret \"not-granted\" is not granted to adapter \"hostile_secret_probe\" (it is granted [\"fakecloud-token\"]); a policy table [secrets.not-granted] with a source would grant it"
    );
    assert!(
        seen["bound"].starts_with("200 ") && seen["bound"].ends_with(" {\"databases\":[]}"),
        "fakecloud accepted the token the host placed: {}",
        seen["bound"]
    );
    assert_eq!(
        seen["unbound"],
        format!(
            "Denied(\"GET {base}/_admin/stats denied: secret \\\"fakecloud-token\\\" is bound to [\\\"{base}/v1/\\\", \\\"{recorder}/\\\"], not to this destination; adding \\\"{base}/_admin/stats\\\" to `destinations` in its policy table (line 10) would allow it\")"
        )
    );
    assert!(
        seen["plainTemplate"].starts_with("401 "),
        "a template in a plain header is sent as written, and the provider refuses it: {}",
        seen["plainTemplate"]
    );
    assert!(
        seen["recorder"].starts_with("200 ") && seen["recorder"].ends_with(" recorded"),
        "{}",
        seen["recorder"]
    );
    // The provider's side: the bound request carried exactly the token, and only it.
    let requests = seen_by_recorder.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let authorization: Vec<&str> = requests[0]
        .lines()
        .filter_map(|line| line.strip_prefix("authorization: "))
        .collect();
    assert_eq!(authorization, [format!("Bearer {TOKEN}").as_str()]);
    assert_eq!(
        cloud.request_count(),
        2,
        "bound and plainTemplate reached /v1"
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

/// An HTTP server on 127.0.0.1 that keeps each request's head (lower-cased header names)
/// and answers `200 recorded`.
async fn recording_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            let lowered: Vec<String> = head
                .lines()
                .map(|line| match line.split_once(':') {
                    Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
                    None => line.to_owned(),
                })
                .collect();
            keep.lock().unwrap().push(lowered.join("\n"));
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nrecorded",
                )
                .await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

#[tokio::test]
pub(crate) async fn http_probe() {
    // The probe's own test: with no policy it can reach nothing, and the host is fine.
    let t = runtime();
    let adapter = load(&t.runtime, HOSTILE_HTTP_PROBE, "").await;
    let outcomes = probe(
        &adapter,
        json!([{ "url": "http://127.0.0.1:9/" }, { "url": "http://[::1]:9/" }]),
    )
    .await;
    assert!(
        outcomes.iter().all(|o| o["error"] == "denied"),
        "{outcomes:?}"
    );
    assert_honest_call_succeeds(&t.runtime).await;
}

#[tokio::test]
async fn policy_errors_in_http_and_secrets_fail_the_load() {
    let t = runtime();
    let cases = [
        (
            "[[http.allow]]\nurl = \"https://*.com/\"\n",
            "policy test policy: line 1: \"https://*.com/\": a wildcard needs a domain of two labels or more (*.example.com)",
        ),
        (
            "\n\n[secrets.t]\nsource = \"vault:kv/t\"\n",
            "policy test policy: line 3: secret \"t\": unknown secret source `vault:`; this runtime has [\"env\", \"file\"]",
        ),
        (
            "[http]\nrequest_timeout_ms = 0\n",
            "policy test policy: http.request_timeout_ms = 0 is out of range (1 to 900000)",
        ),
    ];
    for (text, message) in cases {
        let policy = airlock::Policy::from_toml(text, "test policy").unwrap();
        let error = t
            .runtime
            .load_file(EXAMPLE_ADAPTER, policy)
            .await
            .err()
            .expect("refused");
        assert_eq!(error.to_string(), message);
    }
}
