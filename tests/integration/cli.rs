//! The `airlock` binary, run as separate processes sharing one data directory.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

fn airlock(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(AIRLOCK)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("running airlock")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn invoke_returns_the_seed_shapes_across_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"{"region":"us-east-1","stepMillis":1000}"#;
    let create = |key: &str| {
        airlock(
            dir.path(),
            &[
                "invoke",
                EXAMPLE_ADAPTER,
                "create",
                "--config",
                config,
                "--params",
                r#"{"name":"cli-db","steps":3}"#,
                "--idempotency-key",
                key,
            ],
        )
    };
    let first = create("cli-key");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = stdout_json(&first);
    let id = first["instanceId"].as_str().expect("instanceId").to_owned();
    assert_eq!(first["created"], true);
    assert_eq!(first["idempotencyKey"], "cli-key");
    assert_eq!(first["connection"]["database"], "cli-db");

    let again = stdout_json(&create("cli-key"));
    assert_eq!(again["instanceId"], id.as_str());
    assert_eq!(again["created"], false);

    // Status, each poll its own process, reaches SUCCESS.
    let mut seen = Vec::new();
    for _ in 0..100 {
        let output = airlock(
            dir.path(),
            &[
                "invoke",
                EXAMPLE_ADAPTER,
                "status",
                "--config",
                config,
                "--instance",
                &id,
            ],
        );
        assert_eq!(output.status.code(), Some(0));
        let status = stdout_json(&output);
        let name = status["status"].as_str().unwrap().to_owned();
        // Every status of the example carries progress, of the 3 steps the params asked for.
        let current = status["progress"]["current"]
            .as_u64()
            .unwrap_or_else(|| panic!("no progress in {status}"));
        assert_eq!(status["progress"]["total"], 3, "{status}");
        assert!(current <= 3, "{status}");
        if seen.last() != Some(&name) {
            seen.push(name.clone());
        }
        if name == "SUCCESS" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen.last().map(String::as_str), Some("SUCCESS"), "{seen:?}");
    assert!(seen.len() >= 2, "status changed across processes: {seen:?}");

    let credentials = stdout_json(&airlock(
        dir.path(),
        &[
            "invoke",
            EXAMPLE_ADAPTER,
            "credentials",
            "--config",
            config,
            "--instance",
            &id,
        ],
    ));
    assert_eq!(credentials["type"], "ephemeral");
    assert!(credentials["expiresAt"].as_str().unwrap().ends_with('Z'));

    for _ in 0..2 {
        let destroyed = airlock(
            dir.path(),
            &[
                "invoke",
                EXAMPLE_ADAPTER,
                "destroy",
                "--config",
                config,
                "--instance",
                &id,
            ],
        );
        assert_eq!(destroyed.status.code(), Some(0));
        assert_eq!(
            stdout_json(&destroyed),
            serde_json::json!({ "destroyed": true, "instanceId": id })
        );
    }
}

#[test]
fn exit_codes_follow_the_error_code() {
    let dir = tempfile::tempdir().unwrap();
    let bad = airlock(
        dir.path(),
        &[
            "invoke",
            EXAMPLE_ADAPTER,
            "validate-config",
            "--config",
            r#"{"region":"mars-1"}"#,
        ],
    );
    assert_eq!(bad.status.code(), Some(10));
    assert_eq!(stdout_json(&bad)["errorCode"], "VALIDATION");

    let policy = dir.path().join("tight.toml");
    std::fs::write(&policy, "[limits]\nfuel = 50000000\n").unwrap();
    let spin = airlock(
        dir.path(),
        &[
            "invoke",
            HOSTILE_SPIN_LOOP,
            "status",
            "--instance",
            "x",
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    assert_eq!(spin.status.code(), Some(14));
    assert_eq!(
        stdout_json(&spin),
        serde_json::json!({ "errorCode": "LIMIT", "message": "fuel limit of 50000000 exceeded (limits.fuel)" })
    );
    assert!(String::from_utf8_lossy(&spin.stderr).contains("stopped by the fuel limit"));

    let panic = airlock(
        dir.path(),
        &["invoke", HOSTILE_PANIC, "destroy", "--instance", "x"],
    );
    assert_eq!(panic.status.code(), Some(15));
    let unsupported = airlock(
        dir.path(),
        &["invoke", HOSTILE_PANIC, "pause", "--instance", "x"],
    );
    assert_eq!(unsupported.status.code(), Some(12));

    std::fs::write(&policy, "[limits]\nfuell = 1\n").unwrap();
    let bad_policy = airlock(
        dir.path(),
        &[
            "invoke",
            EXAMPLE_ADAPTER,
            "validate-config",
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    assert_eq!(bad_policy.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad_policy.stderr).contains("line 2: unknown field `fuell`"));

    let missing_instance = airlock(dir.path(), &["invoke", EXAMPLE_ADAPTER, "status"]);
    assert_eq!(missing_instance.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing_instance.stderr)
            .contains("`status` needs an instance id (--instance ID)")
    );

    let bad_json = airlock(
        dir.path(),
        &[
            "invoke",
            EXAMPLE_ADAPTER,
            "validate-config",
            "--config",
            "{nope",
        ],
    );
    assert_eq!(bad_json.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad_json.stderr).contains("--config (inline) is not valid JSON")
    );
}

#[test]
fn inspect_lists_operations_optional_interfaces_and_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let output = airlock(dir.path(), &["inspect", EXAMPLE_ADAPTER]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("world        airlock:adapter/adapter@0.1.0"),
        "{text}"
    );
    assert!(
        text.contains("optional     lifecycle (pause, resume): yes"),
        "{text}"
    );
    assert!(
        text.contains("capabilities log, state") || text.contains("capabilities state, log"),
        "{text}"
    );

    let json = stdout_json(&airlock(dir.path(), &["inspect", HOSTILE_PANIC, "--json"]));
    assert_eq!(
        json["optional"],
        serde_json::json!({ "lifecycle": false, "costs": false, "rotation": false })
    );

    let wrong = airlock(dir.path(), &["inspect", HOSTILE_WRONG_WORLD]);
    assert_eq!(wrong.status.code(), Some(3));
}

#[test]
fn demo_runs_the_bundled_example_end_to_end() {
    let output = Command::new(AIRLOCK)
        .args(["demo", "--step-millis", "20"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("\"created\": false"), "{text}");
    assert!(
        text.contains("SUCCESS  [##############################] 5/5"),
        "{text}"
    );
    assert!(
        text.contains("destroy again (idempotent: succeeds)"),
        "{text}"
    );
    assert!(text.contains("fakecloud holds 1 database(s)\n"), "{text}");
    assert!(
        text.contains("SUCCESS  [##############################] 4/4"),
        "{text}"
    );
    assert!(
        text.contains("\"errorCode\": \"AUTH\""),
        "the metadata address is denied: {text}"
    );
    assert!(
        text.contains("fakecloud holds 0 database(s); the bearer token never entered the sandbox"),
        "{text}"
    );
    assert!(
        text.contains("Done: every step ran in its own sandbox"),
        "{text}"
    );
}

#[test]
fn a_short_soak_keeps_honest_calls_succeeding_and_rss_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let output = airlock(
        dir.path(),
        &[
            "soak",
            "--secs",
            "5",
            "--json",
            "--honest",
            EXAMPLE_ADAPTER,
            "--hostile",
            HOSTILE_SPIN_LOOP,
            "--hostile",
            HOSTILE_MEMORY_BOMB,
            "--hostile",
            HOSTILE_PANIC,
            "--hostile",
            HOSTILE_LOG_FLOOD,
            "--hostile",
            HOSTILE_GIANT_OUTPUT,
        ],
    );
    let report = stdout_json(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["honestFailures"], 0);
    assert_eq!(report["withinBound"], true, "{report}");
    assert!(report["honestCalls"].as_u64().unwrap() > 10, "{report}");
    assert!(report["hostileCalls"].as_u64().unwrap() > 5, "{report}");
    assert!(
        report["hostileOutcomes"]["LIMIT"].as_u64().unwrap() > 0,
        "{report}"
    );
}
