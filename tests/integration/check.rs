//! `airlock check`: the example and fakecloud adapters pass; each deliberately broken
//! adapter (adapters/conformance/) fails exactly the rule it breaks; a recording replays to
//! the same verdicts without a provider, and a run that leaves the recording says where.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use airlock::Policy;
use airlock::conformance::{self, CheckOptions, Outcome, ProviderChoice, RULES, Report};
use serde_json::{Value, json};

use crate::common::*;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
}

fn fakecloud_policy() -> Policy {
    Policy::from_file(&repo().join("adapters/fakecloud/policy.toml")).expect("the policy parses")
}

fn fakecloud_config() -> Value {
    json!({ "endpoint": "https://api.fakecloud.example", "plan": "small" })
}

/// The example's provisioning takes 4 steps of 100 ms, so status is polled mid-way; a
/// config with an unknown region must be rejected.
fn example_options() -> CheckOptions {
    let mut options = CheckOptions::new(json!({ "region": "eu-west-1", "stepMillis": 100 }));
    options.invalid_configs = vec![json!({ "region": "mars" })];
    options
}

async fn check(wasm: &str, policy: Policy, options: CheckOptions) -> Report {
    let bytes = std::fs::read(wasm).expect("the component");
    conformance::check(&bytes, wasm, policy, options, &mut |_| {})
        .await
        .expect("the check runs")
}

fn outcomes(report: &Report) -> BTreeMap<&'static str, Outcome> {
    report.results.iter().map(|r| (r.rule, r.outcome)).collect()
}

fn with(report: &Report, outcome: Outcome) -> Vec<&'static str> {
    report
        .results
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| r.rule)
        .collect()
}

fn evidence(report: &Report, rule: &str) -> String {
    report
        .results
        .iter()
        .find(|r| r.rule == rule)
        .map(|r| r.evidence.clone())
        .unwrap_or_else(|| panic!("no result for {rule}"))
}

#[tokio::test]
async fn the_example_adapter_passes_and_its_fault_rules_are_skipped_for_want_of_http() {
    let report = check(EXAMPLE_ADAPTER, Policy::default(), example_options()).await;
    assert_eq!(report.results.len(), RULES.len(), "{report:#?}");
    assert!(report.passed(), "{report:#?}");
    assert_eq!(
        with(&report, Outcome::Skip),
        [
            "fault.rate-limited",
            "fault.server-error",
            "fault.reset-after-processing",
            "fault.slow-response",
            "fault.unauthorized"
        ]
    );
    assert!(
        evidence(&report, "create.idempotent").contains("created true then false"),
        "{report:#?}"
    );
    assert!(evidence(&report, "status.progress").contains("SUCCESS 4/4"));
    assert!(evidence(&report, "optional.costs").starts_with("USD "));
}

#[tokio::test]
async fn the_fakecloud_adapter_passes_every_fault_with_one_resource_per_key() {
    let report = check(
        FAKECLOUD_ADAPTER,
        fakecloud_policy(),
        CheckOptions::new(fakecloud_config()),
    )
    .await;
    assert!(report.passed(), "{report:#?}");
    assert_eq!(
        with(&report, Outcome::Skip),
        ["optional.lifecycle", "optional.costs", "optional.rotation"]
    );
    for rule in [
        "fault.rate-limited",
        "fault.server-error",
        "fault.reset-after-processing",
        "fault.slow-response",
        "fault.unauthorized",
    ] {
        assert!(
            evidence(&report, rule).contains(", 1 resource;"),
            "{rule}: {}",
            evidence(&report, rule)
        );
    }
    assert!(evidence(&report, "fault.rate-limited").starts_with("create: LIMIT;"));
    assert!(evidence(&report, "fault.unauthorized").starts_with("create: AUTH;"));
    assert!(evidence(&report, "status.read-only").contains("none mutating"));
}

/// One test per broken adapter: it fails exactly its rule; every other rule passes or is
/// skipped.
macro_rules! broken_test {
    ($name:ident, $wasm:expr, $base:expr, $rule:expr) => {
        #[tokio::test]
        async fn $name() {
            let (policy, options) = match $base {
                "example" => (Policy::default(), example_options()),
                _ => {
                    let mut policy = fakecloud_policy();
                    if $rule == "credentials.no-secret" {
                        for secret in policy.secrets.values_mut() {
                            secret.get_mut().reveal = true;
                        }
                    }
                    (policy, CheckOptions::new(fakecloud_config()))
                }
            };
            let report = check($wasm, policy, options).await;
            assert_eq!(
                with(&report, Outcome::Fail),
                [$rule],
                "{}",
                report
                    .results
                    .iter()
                    .map(|r| format!("{:?} {}: {}", r.outcome, r.rule, r.evidence))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    };
}

mod broken {
    use super::*;
    foreach_broken!(broken_test);
}

#[test]
fn every_rule_but_world_has_a_broken_adapter() {
    let mut broken: Vec<&str> = Vec::new();
    macro_rules! collect {
        ($name:ident, $wasm:expr, $base:expr, $rule:expr) => {
            broken.push($rule);
        };
    }
    foreach_broken!(collect);
    let missing: Vec<&str> = RULES
        .iter()
        .map(|(rule, _)| *rule)
        .filter(|rule| *rule != "world" && !broken.contains(rule))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a broken adapter: {missing:?}"
    );
}

#[tokio::test]
async fn a_component_of_another_world_fails_world_and_skips_the_rest() {
    let report = check(HOSTILE_WRONG_WORLD, Policy::default(), example_options()).await;
    assert_eq!(with(&report, Outcome::Fail), ["world"]);
    assert_eq!(with(&report, Outcome::Skip).len(), RULES.len() - 1);
    assert!(
        evidence(&report, "world").contains("does not implement the airlock:adapter world"),
        "{}",
        evidence(&report, "world")
    );
}

#[tokio::test]
async fn a_recording_replays_to_the_same_verdicts_and_a_divergence_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("run.json");
    let mut options = CheckOptions::new(fakecloud_config());
    options.record = Some(recording.clone());
    let live = check(FAKECLOUD_ADAPTER, fakecloud_policy(), options).await;
    assert!(live.passed(), "{live:#?}");
    let text = std::fs::read_to_string(&recording).unwrap();
    assert!(text.contains(r#""authorization","#) && text.contains("<secret>"));

    let mut options = CheckOptions::new(fakecloud_config());
    options.provider = ProviderChoice::Replay(recording.clone());
    let replayed = check(FAKECLOUD_ADAPTER, fakecloud_policy(), options.clone()).await;
    assert_eq!(outcomes(&replayed), outcomes(&live), "{replayed:#?}");
    assert!(replayed.provider.starts_with("replay of "));

    // Move the first exchange elsewhere: the adapter's first request no longer matches.
    let mut value: Value = serde_json::from_str(&text).unwrap();
    value["events"][0]["url"] = "https://api.fakecloud.example/v1/elsewhere".into();
    std::fs::write(&recording, value.to_string()).unwrap();
    let diverged = check(FAKECLOUD_ADAPTER, fakecloud_policy(), options).await;
    let replay = evidence(&diverged, "replay");
    assert!(
        replay.starts_with("replay diverged at event 1: the adapter sent POST https://api.fakecloud.example/v1/databases, the recording has POST https://api.fakecloud.example/v1/elsewhere"),
        "{replay}"
    );
    assert!(!diverged.passed());
}

#[tokio::test]
async fn an_external_provider_is_used_with_the_policy_s_own_secrets_and_counted() {
    let token = "external-provider-token";
    let cloud = fakecloud::FakeCloud::start(fakecloud::FakeCloudConfig {
        token: token.to_owned(),
        step_millis: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let policy = Policy::from_toml(
        &format!(
            r#"name = "fakecloud"
[[http.allow]]
url = "https://api.fakecloud.example/v1/"
[secrets.fakecloud-token]
source = "file:{}"
destinations = ["https://api.fakecloud.example/v1/"]
"#,
            token_file.display()
        ),
        "test",
    )
    .unwrap();
    let mut options = CheckOptions::new(fakecloud_config());
    options.provider = ProviderChoice::External(cloud.base_url().parse().unwrap());
    let report = check(FAKECLOUD_ADAPTER, policy, options).await;
    assert!(report.passed(), "{report:#?}");
    assert!(evidence(&report, "fault.reset-after-processing").contains(", 1 resource;"));
    assert_eq!(
        cloud.resource_count(),
        0,
        "the checker destroyed what it made"
    );
}

fn airlock_check(args: &[&str]) -> std::process::Output {
    Command::new(AIRLOCK)
        .arg("check")
        .args(args)
        .output()
        .expect("running airlock check")
}

#[test]
fn the_cli_prints_one_line_per_rule_and_exits_by_the_verdict() {
    let passing = airlock_check(&[
        EXAMPLE_ADAPTER,
        "--config",
        r#"{"region":"eu-west-1","stepMillis":20}"#,
    ]);
    let stdout = String::from_utf8_lossy(&passing.stdout);
    assert_eq!(passing.status.code(), Some(0), "{stdout}");
    for (rule, _) in RULES {
        assert!(
            stdout.contains(&format!("  {rule} ")) || stdout.contains(&format!(" {rule:<30}")),
            "no line for {rule}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("16 passed, 0 failed, 5 skipped"),
        "{stdout}"
    );

    let failing = airlock_check(&[
        BROKEN_EXAMPLE__STATUS_READ_ONLY,
        "--config",
        r#"{"region":"eu-west-1","stepMillis":20}"#,
        "--json",
    ]);
    assert_eq!(failing.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&failing.stdout).expect("--json prints JSON");
    let failed: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "fail")
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["status.read-only"]);

    let usage = airlock_check(&[EXAMPLE_ADAPTER, "--config", "{not json"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--config (inline) is not valid JSON"));
}
