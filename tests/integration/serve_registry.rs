//! The registry's uploads against a real `airlock serve`, on SQLite and on PostgreSQL, with
//! real components: admission admits the example adapter (201, its report stored and
//! listed), a repeat is idempotent (200) and other bytes conflict (409); a component of
//! another world, a policy over the tenant's ceiling and an adapter that breaks a
//! conformance rule are refused (422, nothing stored), except that a `warn` ceiling stores
//! the last (201, `admitted: false`) and never the second; an oversized component is 413,
//! one over the stored-bytes quota 429; activation chooses a stored version; another
//! tenant's adapter is 404, and the same name in two tenants is two adapters.

use std::path::Path;
use std::process::Command;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{BROKEN_EXAMPLE__CREATE_IDEMPOTENT, EXAMPLE_ADAPTER, HOSTILE_WRONG_WORLD};
use crate::nodes::TestDatabase;
use crate::serve::{Answer, Server, get, global_args, refused_as, send, tenant_key};

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

/// The example adapter's config for the conformance check: provisioning completes at once.
fn example_config() -> Value {
    json!({ "region": "eu-west-1", "stepMillis": 0 })
}

/// Create tenant `name` with `ceiling` (TOML); its `Authorization` header.
fn tenant_with_ceiling(
    data_dir: &Path,
    database: Option<&str>,
    name: &str,
    ceiling: &str,
) -> String {
    let file = data_dir.join(format!("{name}-ceiling.toml"));
    std::fs::write(&file, ceiling).unwrap();
    let output = Command::new(AIRLOCK)
        .args(global_args(data_dir, database))
        .args(["tenant", "create", name, "--ceiling"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    format!("Bearer {}", value["apiKey"].as_str().unwrap())
}

fn set_ceiling(data_dir: &Path, database: Option<&str>, name: &str, ceiling: Option<&str>) {
    let mut command = Command::new(AIRLOCK);
    command
        .args(global_args(data_dir, database))
        .args(["tenant", "set-ceiling", name]);
    match ceiling {
        Some(text) => {
            let file = data_dir.join(format!("{name}-ceiling-2.toml"));
            std::fs::write(&file, text).unwrap();
            command.arg(file);
        }
        None => {
            command.arg("--default");
        }
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `PUT {url}/v1/adapters/{name}/versions/{version}` with `component`, `policy` and, if
/// given, `config`.
async fn upload(
    url: &str,
    key: &str,
    name: &str,
    version: &str,
    component: Vec<u8>,
    policy: &str,
    config: Option<Value>,
) -> Answer {
    let mut form = Form::new()
        .part(
            "component",
            Part::bytes(component).file_name("adapter.wasm"),
        )
        .text("policy", policy.to_owned());
    if let Some(config) = config {
        form = form.text("config", config.to_string());
    }
    send(
        reqwest::Client::new()
            .put(format!("{url}/v1/adapters/{name}/versions/{version}"))
            .header("authorization", key)
            .multipart(form),
    )
    .await
}

async fn activate(url: &str, key: &str, name: &str, version: &str) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{url}/v1/adapters/{name}/active"))
            .header("authorization", key)
            .json(&json!({ "version": version })),
    )
    .await
}

fn rules_failed(admission: &Value) -> Vec<String> {
    admission["failures"]
        .as_array()
        .unwrap_or_else(|| panic!("no failures in {admission}"))
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect()
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn registry_on(data_dir: &Path, database: Option<&str>) {
    let acme = format!(
        "Bearer {}",
        tenant_key(data_dir, database, "create", "acme")
    );
    let globex = format!(
        "Bearer {}",
        tenant_key(data_dir, database, "create", "globex")
    );
    let tight = tenant_with_ceiling(
        data_dir,
        database,
        "tight",
        "[limits]\nfuel = 500_000_000\n",
    );
    let lenient = tenant_with_ceiling(data_dir, database, "lenient", "admission = \"warn\"\n");
    let small = tenant_with_ceiling(
        data_dir,
        database,
        "small",
        "[quotas]\nstored_bytes = 1000\n",
    );
    let server = Server::start(data_dir, database);
    let url = server.url.clone();
    let example = read(EXAMPLE_ADAPTER);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        // Admitted: 201 with the report, which the listing keeps.
        let created = upload(
            &url,
            &acme,
            "example",
            "1.0.0",
            example.clone(),
            "",
            Some(example_config()),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.source, None);
        let report = &created.body["admission"];
        assert_eq!(created.body["admitted"], true, "{report}");
        assert_eq!(report["verdict"], "admitted");
        assert_eq!(report["sha256"], created.body["sha256"]);
        assert_eq!(report["size"], example.len());
        assert_eq!(report["ceiling"]["excesses"], json!([]));
        assert!(
            report["exports"]["optional"]["lifecycle"].is_boolean(),
            "{report}"
        );
        assert_eq!(report["conformance"]["configUploaded"], true);
        let results = report["conformance"]["results"].as_array().unwrap();
        assert_eq!(results.len(), airlock_conformance::RULES.len(), "{report}");
        assert!(results.iter().all(|r| r["outcome"] != "fail"), "{report}");
        assert!(
            report["conformance"]["provider"]
                .as_str()
                .unwrap()
                .starts_with("built-in fakecloud at http://127.0.0.1:"),
            "{report}"
        );
        let listed = get(&format!("{url}/v1/adapters/example"), Some(&acme)).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        assert_eq!(listed.body["versions"][0]["admission"], *report);
        assert_eq!(listed.body["active"], Value::Null);

        // The same bytes again: 200, nothing changed; other bytes: 409.
        let again = upload(&url, &acme, "example", "1.0.0", example.clone(), "", None).await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(again.body["createdMs"], created.body["createdMs"]);
        assert_eq!(again.body["admission"], *report);
        let other = upload(
            &url,
            &acme,
            "example",
            "1.0.0",
            read(HOSTILE_WRONG_WORLD),
            "",
            None,
        )
        .await;
        refused_as(&other, 409, "conflict");
        assert!(
            other.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(created.body["sha256"].as_str().unwrap()),
            "{}",
            other.body
        );
        let other_policy = upload(
            &url,
            &acme,
            "example",
            "1.0.0",
            example.clone(),
            "[limits]\nfuel = 900_000_000\n",
            None,
        )
        .await;
        refused_as(&other_policy, 409, "conflict");

        // Another world, or no component at all: 422, the world check fails, nothing stored.
        for (name, bytes) in [
            ("wrong", read(HOSTILE_WRONG_WORLD)),
            ("junk", b"not wasm".to_vec()),
        ] {
            let refused = upload(&url, &acme, name, "1", bytes, "", Some(example_config())).await;
            refused_as(&refused, 422, "admission_failed");
            assert_eq!(
                rules_failed(&refused.body["admission"]),
                ["world"],
                "{}",
                refused.body
            );
            assert!(refused.body["admission"]["conformance"].is_null());
            refused_as(
                &get(&format!("{url}/v1/adapters/{name}"), Some(&acme)).await,
                404,
                "not_found",
            );
        }

        // A conformance rule broken, under the default (refusing) ceiling: 422, listed.
        let broken = read(BROKEN_EXAMPLE__CREATE_IDEMPOTENT);
        let refused = upload(
            &url,
            &acme,
            "broken",
            "1",
            broken.clone(),
            "",
            Some(example_config()),
        )
        .await;
        refused_as(&refused, 422, "admission_failed");
        assert_eq!(
            rules_failed(&refused.body["admission"]),
            ["create.idempotent"],
            "{}",
            refused.body
        );
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("create.idempotent")
        );
        refused_as(
            &get(&format!("{url}/v1/adapters/broken"), Some(&acme)).await,
            404,
            "not_found",
        );

        // Bad names and versions; an oversized component.
        refused_as(
            &upload(&url, &acme, "Example", "1", example.clone(), "", None).await,
            400,
            "bad_request",
        );
        refused_as(
            &upload(&url, &acme, "example", "1%20b", example.clone(), "", None).await,
            400,
            "bad_request",
        );
        refused_as(
            &upload(
                &url,
                &acme,
                "example",
                &"9".repeat(65),
                example.clone(),
                "",
                None,
            )
            .await,
            400,
            "bad_request",
        );
        let huge = upload(
            &url,
            &acme,
            "huge",
            "1",
            vec![0; 32 * 1024 * 1024 + 1],
            "",
            None,
        )
        .await;
        refused_as(&huge, 413, "payload_too_large");

        // Activation: a stored version, 200; an unknown one, 404.
        let active = activate(&url, &acme, "example", "1.0.0").await;
        assert_eq!(active.status, 200, "{}", active.body);
        assert_eq!(active.body["active"], "1.0.0");
        assert_eq!(active.body["name"], "example");
        refused_as(
            &activate(&url, &acme, "example", "2.0.0").await,
            404,
            "not_found",
        );
        refused_as(
            &activate(&url, &acme, "nothing", "1.0.0").await,
            404,
            "not_found",
        );

        // Another tenant: acme's adapter is 404 to it; its own upload of the name is an
        // adapter of its own.
        refused_as(
            &get(&format!("{url}/v1/adapters/example"), Some(&globex)).await,
            404,
            "not_found",
        );
        refused_as(
            &activate(&url, &globex, "example", "1.0.0").await,
            404,
            "not_found",
        );
        let theirs = upload(
            &url,
            &globex,
            "example",
            "1.0.0",
            example.clone(),
            "",
            Some(example_config()),
        )
        .await;
        assert_eq!(theirs.status, 201, "{}", theirs.body);
        let listed = get(&format!("{url}/v1/adapters/example"), Some(&globex)).await;
        assert_eq!(listed.body["active"], Value::Null, "{}", listed.body);
        assert_eq!(listed.body["versions"].as_array().unwrap().len(), 1);
        let mine = get(&format!("{url}/v1/adapters/example"), Some(&acme)).await;
        assert_eq!(mine.body["active"], "1.0.0");
        assert_eq!(mine.body["versions"].as_array().unwrap().len(), 1);

        // Over the ceiling: 422 naming the policy's line and the ceiling's value.
        let over = upload(
            &url,
            &tight,
            "example",
            "1",
            example.clone(),
            "\n[limits]\nfuel = 2_000_000_000\n",
            Some(example_config()),
        )
        .await;
        refused_as(&over, 422, "admission_failed");
        assert_eq!(
            rules_failed(&over.body["admission"]),
            ["ceiling"],
            "{}",
            over.body
        );
        let message = over.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(
                "limits.fuel = 2000000000 (line 3) is over the tenant's ceiling: at most 500000000"
            ),
            "{message}"
        );
        assert_eq!(
            over.body["admission"]["ceiling"]["excesses"][0]["line"],
            "line 3"
        );
        refused_as(
            &get(&format!("{url}/v1/adapters/example"), Some(&tight)).await,
            404,
            "not_found",
        );

        // A warn ceiling: the broken adapter is stored, flagged, and may be activated...
        let flagged = upload(
            &url,
            &lenient,
            "broken",
            "1",
            broken.clone(),
            "",
            Some(example_config()),
        )
        .await;
        assert_eq!(flagged.status, 201, "{}", flagged.body);
        assert_eq!(flagged.body["admitted"], false);
        assert_eq!(flagged.body["admission"]["verdict"], "flagged");
        assert_eq!(
            rules_failed(&flagged.body["admission"]),
            ["create.idempotent"]
        );
        assert_eq!(activate(&url, &lenient, "broken", "1").await.status, 200);
        // ...but a policy over its ceiling is refused all the same (no outbound HTTP here).
        let http = "[[http.allow]]\nurl = \"https://api.example.com/\"\n";
        let over = upload(
            &url,
            &lenient,
            "example",
            "1",
            example.clone(),
            http,
            Some(example_config()),
        )
        .await;
        refused_as(&over, 422, "admission_failed");
        assert_eq!(
            rules_failed(&over.body["admission"]),
            ["ceiling"],
            "{}",
            over.body
        );
        refused_as(
            &get(&format!("{url}/v1/adapters/example"), Some(&lenient)).await,
            404,
            "not_found",
        );
    });

    // Once the ceiling refuses again, the flagged version cannot be activated.
    set_ceiling(data_dir, database, "lenient", None);
    tokio.block_on(async {
        let refused = activate(&url, &lenient, "broken", "1").await;
        refused_as(&refused, 409, "conflict");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("failed admission")
        );

        // The stored-bytes quota, with the numbers.
        let full = upload(
            &url,
            &small,
            "example",
            "1",
            example.clone(),
            "",
            Some(example_config()),
        )
        .await;
        refused_as(&full, 429, "quota_exceeded");
        let message = full.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&example.len().to_string()) && message.contains("1000"),
            "{message}"
        );
    });
    drop(server);
}

#[test]
fn serve_registry_admits_refuses_and_activates_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    registry_on(dir.path(), None);
}

#[test]
fn serve_registry_admits_refuses_and_activates_on_postgres() {
    let Some(database) =
        TestDatabase::create("serve_registry_admits_refuses_and_activates_on_postgres")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    registry_on(dir.path(), Some(&database.url));
}
