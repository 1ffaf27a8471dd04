//! `airlock new`: the crate it generates builds with `cargo build --target wasm32-wasip2`
//! and with `cargo component build`, loads, runs its five operations against fakecloud
//! (a real provider API on 127.0.0.1) through the sandbox, and passes `airlock check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock::{Credential, ErrorCode, Status};
use fakecloud::{FakeCloud, FakeCloudConfig, Fault};
use serde_json::{Value, json};

use crate::common::*;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");
/// The generated crate's name; its components are `generated_adapter.wasm`.
const NAME: &str = "generated-adapter";
const TOKEN: &str = "generated-adapter-test-token";

fn airlock(dir: &Path, args: &[&str]) -> Output {
    Command::new(AIRLOCK)
        .current_dir(dir)
        .env_remove("AIRLOCK_DATA_DIR")
        .args(args)
        .output()
        .expect("running airlock")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The target directory the repository's guests were built in (`…/target/adapters`), so
/// that the generated crate reuses their compiled dependencies.
fn guest_target_dir() -> PathBuf {
    Path::new(EXAMPLE_ADAPTER)
        .ancestors()
        .nth(3)
        .expect("guests live in <target>/<triple>/release/")
        .to_owned()
}

/// `cargo ARGS` in `dir`, building into the guests' target directory, without the host
/// build's flags (they would change every dependency's fingerprint). The build runs at the
/// lowest CPU priority where `nice` exists, because tests that bound call latency (the
/// blast-radius test) may run beside this one on a two-core machine.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let nice = Command::new("nice")
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if nice {
        let mut command = Command::new("nice");
        command.args(["-n", "19"]).arg(cargo);
        command
    } else {
        Command::new(cargo)
    };
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
    ] {
        command.env_remove(var);
    }
    command
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", guest_target_dir())
        .args(args)
        .output()
        .expect("running cargo")
}

/// Build the generated crate with `args`; returns the time it took.
fn build(dir: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = cargo(dir, args);
    assert!(
        output.status.success(),
        "cargo {args:?} failed on the generated crate:\n{}",
        stderr(&output)
    );
    started.elapsed()
}

fn cargo_component_available() -> bool {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["component", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The policy the tests run the generated adapter under: fakecloud on 127.0.0.1 and a token
/// from a file, as `airlock demo` grants them.
fn local_policy(cloud: &FakeCloud, token_file: &Path) -> String {
    format!(
        r#"name = "{NAME}"

[[http.allow]]
url = "{base}/v1/"
methods = ["GET", "POST", "DELETE"]
addresses = ["127.0.0.1/32"]

[secrets.provider-token]
source = "file:{token}"
destinations = ["{base}/v1/"]
"#,
        base = cloud.base_url(),
        token = token_file.display()
    )
}

/// `airlock inspect --json` loads the component (and `policy`, if given).
fn inspect(crate_dir: &Path, wasm: &Path, policy: Option<&str>) -> Value {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(AIRLOCK);
    command
        .current_dir(crate_dir)
        .env("PROVIDER_TOKEN", TOKEN)
        .arg("--data-dir")
        .arg(data.path())
        .arg("inspect")
        .arg(wasm)
        .arg("--json");
    if let Some(policy) = policy {
        command.args(["--policy", policy]);
    }
    let output = command.output().expect("running airlock inspect");
    assert_eq!(
        output.status.code(),
        Some(0),
        "inspect {}: {}",
        wasm.display(),
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON")
}

/// The five operations of the generated adapter in `wasm`, against a fresh fakecloud.
async fn run_the_contract(wasm: &Path) {
    let cloud = FakeCloud::start(FakeCloudConfig {
        token: TOKEN.into(),
        step_millis: 150,
        steps: 3,
        ..FakeCloudConfig::default()
    })
    .await
    .expect("fakecloud starts");
    let t = runtime();
    let token_file = t.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let policy = local_policy(&cloud, &token_file);
    let wasm = wasm.to_str().unwrap();
    let adapter = load(&t.runtime, wasm, &policy).await;
    let config = json!({ "endpoint": cloud.base_url(), "plan": "small" });

    adapter.validate_config(&config).await.unwrap();
    for (bad, field) in [
        (json!({ "plan": "small" }), "config.endpoint"),
        (json!({ "endpoint": "ftp://x" }), "config.endpoint"),
        (
            json!({ "endpoint": cloud.base_url(), "plan": "huge" }),
            "config.plan",
        ),
    ] {
        let error = adapter.validate_config(&bad).await.unwrap_err();
        assert_eq!(error.error_code, ErrorCode::Validation, "{error:?}");
        assert!(error.message.starts_with(field), "{}", error.message);
    }
    let error = adapter
        .create(&config, &json!({ "name": "Not A Name" }), Some("bad"))
        .await
        .unwrap_err();
    assert_eq!(error.error_code, ErrorCode::Validation);
    assert!(
        error.message.starts_with("params.name"),
        "{}",
        error.message
    );
    assert_eq!(cloud.resource_count(), 0);

    let created = adapter
        .create(&config, &json!({ "name": "orders" }), Some("order-1"))
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(created.idempotency_key.as_deref(), Some("order-1"));
    assert_eq!(created.connection["database"], "orders");
    assert_eq!(created.connection["port"], 5432);
    let id = created.instance_id.clone();

    // A retry that the host has no record of (another runtime, another database file) runs
    // the guest again: the client token makes the provider return the same database.
    let other = runtime();
    let other_token = other.dir.path().join("token");
    std::fs::write(&other_token, TOKEN).unwrap();
    let again_adapter = load(&other.runtime, wasm, &local_policy(&cloud, &other_token)).await;
    let again = again_adapter
        .create(&config, &json!({ "name": "orders" }), Some("order-1"))
        .await
        .unwrap();
    assert_eq!(
        (again.instance_id.as_str(), again.created),
        (id.as_str(), false)
    );
    assert_eq!(
        cloud.resource_count(),
        1,
        "a retried create made a second resource"
    );

    // Status until SUCCESS, with the provider's progress; credentials only once ready.
    let mut seen = Vec::new();
    for _ in 0..200 {
        let detail = adapter.status(&config, &id).await.unwrap();
        let progress = detail.progress.expect("status reports progress");
        assert!(progress.current <= progress.total && progress.total == 3);
        if seen.last() != Some(&detail.status) {
            seen.push(detail.status);
        }
        if detail.status == Status::Success {
            break;
        }
        // At step 1 of 3 the database is a whole step (150 ms) away from ready.
        if detail.status == Status::Running && progress.current == 1 {
            let error = adapter.credentials(&config, &id).await.unwrap_err();
            assert_eq!(error.error_code, ErrorCode::Retryable, "{error:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.last(), Some(&Status::Success), "{seen:?}");

    match adapter.credentials(&config, &id).await.unwrap() {
        Credential::Ephemeral {
            values,
            expires_at_ms,
            ..
        } => {
            assert!(values["password"].as_str().unwrap().len() >= 16);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let ttl = expires_at_ms.saturating_sub(now.as_millis() as u64);
            assert!(
                (890_000..=900_000).contains(&ttl),
                "the provider's 15-minute expiry, got {ttl} ms"
            );
        }
        other => panic!("expected ephemeral credentials, got {other:?}"),
    }

    // Provider failures map onto the contract's codes.
    for (status, code) in [
        (429, ErrorCode::Limit),
        (401, ErrorCode::Auth),
        (503, ErrorCode::Retryable),
        (409, ErrorCode::Permanent),
    ] {
        cloud.inject_fault(Fault::Status { status, count: 1 });
        let error = adapter.status(&config, &id).await.unwrap_err();
        assert_eq!(error.error_code, code, "HTTP {status}: {error:?}");
        assert_eq!(error.raw.as_ref().unwrap()["providerStatus"], status);
    }

    adapter.destroy(&config, &id).await.unwrap();
    assert_eq!(cloud.resource_count(), 0);
    // The other runtime has no destroy record, so its guest runs and meets a 404: still Ok.
    let requests = cloud.request_count();
    again_adapter.destroy(&config, &id).await.unwrap();
    assert_eq!(
        cloud.request_count(),
        requests + 1,
        "the guest asked the provider"
    );
    let error = adapter.status(&config, &id).await.unwrap_err();
    assert_eq!(error.error_code, ErrorCode::Permanent);
    assert!(error.message.contains("not found"), "{}", error.message);
    // Ids that cannot be the provider's never reach a URL.
    let requests = cloud.request_count();
    let error = adapter.status(&config, "../admin").await.unwrap_err();
    assert_eq!(error.error_code, ErrorCode::Permanent);
    assert_eq!(cloud.request_count(), requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_adapter_builds_both_ways_runs_against_fakecloud_and_passes_check() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let crate_dir = tmp.path().join("crate");
    let output = airlock(
        tmp.path(),
        &["new", NAME, "--dir", crate_dir.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(
            "airlock check target/wasm32-wasip2/release/generated_adapter.wasm --policy policy.toml --config @config.json"
        ),
        "{printed}"
    );
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "policy.toml",
        "config.json",
        ".gitignore",
        "src/lib.rs",
        "src/provider.rs",
        "vendor/airlock-sdk/Cargo.toml",
        "vendor/airlock-sdk/src/lib.rs",
        "vendor/airlock-sdk/wit/worlds.wit",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} is missing");
    }

    let (p2_wasm, p2_time) = {
        let crate_dir = crate_dir.clone();
        tokio::task::spawn_blocking(move || {
            let took = build(
                &crate_dir,
                &["build", "--target", "wasm32-wasip2", "--release"],
            );
            (
                guest_target_dir().join("wasm32-wasip2/release/generated_adapter.wasm"),
                took,
            )
        })
        .await
        .unwrap()
    };
    eprintln!("cargo build --target wasm32-wasip2 --release: {p2_time:.1?}");
    let mut components = vec![p2_wasm];
    if present_or_skip(
        "cargo component (cargo install cargo-component --locked)",
        cargo_component_available(),
        "the cargo component build of the generated crate",
    ) {
        let dir = crate_dir.clone();
        let took =
            tokio::task::spawn_blocking(move || build(&dir, &["component", "build", "--release"]))
                .await
                .unwrap();
        eprintln!("cargo component build --release: {took:.1?}");
        components.push(guest_target_dir().join("wasm32-wasip1/release/generated_adapter.wasm"));
        assert!(
            !crate_dir.join("src/bindings.rs").exists(),
            "cargo component generated bindings of its own"
        );
    }

    for wasm in &components {
        // The component loads with the policy it ships with (its token from the environment).
        let info = inspect(&crate_dir, wasm, Some("policy.toml"));
        assert_eq!(info["name"], NAME, "{info}");
        let capabilities = info["capabilities"].as_array().unwrap();
        for capability in ["http", "secrets", "log", "invocation"] {
            assert!(
                capabilities.iter().any(|c| c == capability),
                "{capability} not among {capabilities:?}"
            );
        }
        assert_eq!(
            info["optional"],
            json!({ "lifecycle": false, "costs": false, "rotation": false })
        );
        run_the_contract(wasm).await;
    }

    // The conformance checker, as the generated README tells the author to run it (the
    // build went to the shared target directory, so each component in turn is put where
    // the README's command expects it).
    for component in &components {
        let expected = crate_dir.join("target/wasm32-wasip2/release");
        std::fs::create_dir_all(&expected).unwrap();
        std::fs::copy(component, expected.join("generated_adapter.wasm")).unwrap();
        let output = airlock(
            &crate_dir,
            &[
                "check",
                "target/wasm32-wasip2/release/generated_adapter.wasm",
                "--policy",
                "policy.toml",
                "--config",
                "@config.json",
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "airlock check failed on the generated adapter ({}):\n{}\n{}",
            component.display(),
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("19 passed, 0 failed, 0 not judged, 3 skipped"),
            "the generated adapter passes every rule but the optional ones:\n{stdout}"
        );
    }
    eprintln!("the whole test: {:.1?}", started.elapsed());
}

#[test]
fn new_refuses_bad_names_and_occupied_directories() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, why) in [
        ("My-Cloud", "'M' is upper-case"),
        ("2cloud", "must start with a letter"),
        ("my.cloud", "'.' is not allowed"),
        ("type", "Rust keyword"),
    ] {
        let output = airlock(tmp.path(), &["new", name]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        let message = stderr(&output);
        assert!(
            message.starts_with(&format!(
                "error: {name:?} is not a valid adapter crate name: "
            )) && message.contains(why),
            "{name}: {message}"
        );
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing was written"
    );

    // Default directory: ./NAME.
    let output = airlock(tmp.path(), &["new", "my-cloud"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lib = std::fs::read_to_string(tmp.path().join("my-cloud/src/lib.rs")).unwrap();
    assert!(lib.contains("airlock_sdk::export!(MyCloudAdapter);"));
    let policy = std::fs::read_to_string(tmp.path().join("my-cloud/policy.toml")).unwrap();
    assert!(policy.contains("name = \"my-cloud\""));

    // Never over what is there: the same directory again, another crate's directory, a file.
    std::fs::write(tmp.path().join("my-cloud/src/lib.rs"), "// mine").unwrap();
    let occupied = tmp.path().join("my-cloud");
    for args in [
        vec!["new", "my-cloud"],
        vec!["new", "other", "--dir", occupied.to_str().unwrap()],
    ] {
        let output = airlock(tmp.path(), &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&output).trim_end(),
            format!(
                "error: {} is not empty; choose another name or --dir",
                if args.len() == 2 {
                    "my-cloud".to_owned()
                } else {
                    occupied.display().to_string()
                }
            )
        );
    }
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("my-cloud/src/lib.rs")).unwrap(),
        "// mine"
    );
    let file = tmp.path().join("my-cloud/policy.toml");
    let output = airlock(tmp.path(), &["new", "x", "--dir", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("exists and is not a directory"));

    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = airlock(tmp.path(), &["new", "x", "--dir", empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(empty.join("Cargo.toml").is_file());
}
