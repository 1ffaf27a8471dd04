//! `airlock check`: the example and fakecloud adapters pass; each deliberately broken
//! adapter (adapters/conformance/) fails exactly the rules it breaks; a rule the checker
//! could not measure is not judged (and `--strict` fails it), never passed; a recording
//! replays to the same verdicts without a provider, and a run that leaves the recording says
//! where.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use airlock::Policy;
use airlock_conformance::{
    self as conformance, CheckOptions, Outcome, ProviderChoice, RULES, Report,
};
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

const FAULT_RULES: [&str; 5] = [
    "fault.rate-limited",
    "fault.server-error",
    "fault.reset-after-processing",
    "fault.slow-response",
    "fault.unauthorized",
];

/// The fault rules whose claim rests on the provider's resource count ("the retry makes one
/// resource", "never two resources"): not judged where the provider cannot be counted.
const COUNTED_FAULT_RULES: [&str; 4] = [
    "fault.rate-limited",
    "fault.server-error",
    "fault.reset-after-processing",
    "fault.slow-response",
];

/// A fakecloud on 127.0.0.1 accepting `token`, with or without `GET /_admin/stats`.
async fn provider(token: &str, admin_stats: bool) -> fakecloud::FakeCloud {
    fakecloud::FakeCloud::start(fakecloud::FakeCloudConfig {
        token: token.to_owned(),
        step_millis: 20,
        admin_stats,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The fakecloud adapter's policy with its token read from a file holding `token`: what an
/// operator would run `--provider` with.
fn external_policy(dir: &Path, token: &str) -> (Policy, std::path::PathBuf) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    let text = format!(
        r#"name = "fakecloud"
[[http.allow]]
url = "https://api.fakecloud.example/v1/"
[secrets.fakecloud-token]
source = "file:{}"
destinations = ["https://api.fakecloud.example/v1/"]
"#,
        token_file.display()
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, &text).unwrap();
    (Policy::from_toml(&text, "test").unwrap(), path)
}

#[tokio::test]
async fn the_example_adapter_passes_and_its_fault_rules_are_skipped_for_want_of_http() {
    let report = check(EXAMPLE_ADAPTER, Policy::default(), example_options()).await;
    assert_eq!(report.results.len(), RULES.len(), "{report:#?}");
    assert!(report.passed_strictly(), "{report:#?}");
    assert_eq!(
        with(&report, Outcome::Skip),
        [
            "fault.rate-limited",
            "fault.server-error",
            "fault.reset-after-processing",
            "fault.slow-response",
            "fault.unauthorized",
            "credentials.no-secret",
        ]
    );
    assert_eq!(
        evidence(&report, "fault.reset-after-processing"),
        "the adapter does not import http, so there is no provider request to fault"
    );
    assert_eq!(
        evidence(&report, "credentials.no-secret"),
        "the policy grants no secret, so none can leak"
    );
    assert_eq!(outcomes(&report)["secrets.reveal"], Outcome::Pass);
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
    assert!(report.passed_strictly(), "{report:#?}");
    assert_eq!(
        with(&report, Outcome::Skip),
        ["optional.lifecycle", "optional.costs", "optional.rotation"]
    );
    assert_eq!(
        evidence(&report, "secrets.reveal"),
        "1 granted secret(s), none with reveal = true: the adapter holds handles, the host places the values"
    );
    for rule in FAULT_RULES {
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

/// The rules a broken adapter fails, from what its feature names (`$rule` of
/// `foreach_broken!`): a rule id names itself; a feature that names a bug rather than a rule
/// is listed here with the rules the bug breaks. Anything else is a typo in a feature name.
fn breaks(named: &str) -> Vec<&'static str> {
    match named {
        // A create retried within the call with a new client token: the provider makes a
        // second resource wherever the provider did the work before the answer was lost.
        "fault.fresh-key-per-retry" => {
            vec!["fault.reset-after-processing", "fault.slow-response"]
        }
        rule => vec![
            RULES
                .iter()
                .find(|(id, _)| *id == rule)
                .unwrap_or_else(|| {
                    panic!("broken adapter feature {rule:?} names no rule and no bug in breaks()")
                })
                .0,
        ],
    }
}

/// One test per broken adapter, run against the built-in fakecloud (which counts its
/// resources): it fails exactly the rules it breaks; every other rule passes or is skipped,
/// and is judged unless the broken step leaves nothing to run it on.
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
            let all = report
                .results
                .iter()
                .map(|r| format!("{:?} {}: {}", r.outcome, r.rule, r.evidence))
                .collect::<Vec<_>>()
                .join("\n");
            assert_eq!(with(&report, Outcome::Fail), breaks($rule), "{all}");
            if $rule != "validate-config.accepts" {
                assert_eq!(
                    with(&report, Outcome::NotJudged),
                    Vec::<&str>::new(),
                    "{all}"
                );
            }
        }
    };
}

mod broken {
    use super::*;
    foreach_broken!(broken_test);
}

#[test]
fn every_rule_but_world_and_reveal_has_a_broken_adapter() {
    let mut broken: Vec<&str> = Vec::new();
    macro_rules! collect {
        ($name:ident, $wasm:expr, $base:expr, $rule:expr) => {
            broken.push($rule);
        };
    }
    foreach_broken!(collect);
    let broken: Vec<&str> = broken.into_iter().flat_map(breaks).collect();
    // `world`'s broken adapter is hostile/wrong-world; `secrets.reveal` judges the policy,
    // not the adapter (a_revealed_secret_warns_and_names_its_policy_line).
    let missing: Vec<&str> = RULES
        .iter()
        .map(|(rule, _)| *rule)
        .filter(|rule| !["world", "secrets.reveal"].contains(rule) && !broken.contains(rule))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a broken adapter: {missing:?}"
    );
}

#[tokio::test]
async fn a_component_of_another_world_fails_world_and_the_rest_is_not_judged() {
    let report = check(HOSTILE_WRONG_WORLD, Policy::default(), example_options()).await;
    assert_eq!(with(&report, Outcome::Fail), ["world"]);
    // secrets.reveal is judged on the policy alone.
    assert_eq!(with(&report, Outcome::Pass), ["secrets.reveal"]);
    assert_eq!(with(&report, Outcome::NotJudged).len(), RULES.len() - 2);
    assert_eq!(
        evidence(&report, "create.idempotent"),
        "the adapter did not load, so it could not be run"
    );
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
    let cloud = provider(token, true).await;
    let dir = tempfile::tempdir().unwrap();
    let (policy, _) = external_policy(dir.path(), token);
    let mut options = CheckOptions::new(fakecloud_config());
    options.provider = ProviderChoice::External(cloud.base_url().parse().unwrap());
    let report = check(FAKECLOUD_ADAPTER, policy, options).await;
    assert!(report.passed_strictly(), "{report:#?}");
    assert!(evidence(&report, "fault.reset-after-processing").contains(", 1 resource;"));
    assert_eq!(
        cloud.resource_count(),
        0,
        "the checker destroyed what it made"
    );
}

/// The 404 a provider without `GET /_admin/stats` gives, as the evidence quotes it.
fn no_stats(cloud: &fakecloud::FakeCloud) -> String {
    format!(
        "GET {}/_admin/stats answered 404 Not Found, so the provider cannot be counted (the endpoint is described in docs/authors-guide.md, section 9)",
        cloud.base_url().trim_end_matches('/')
    )
}

#[tokio::test]
async fn against_a_provider_without_stats_the_counted_fault_rules_are_not_judged() {
    let token = "no-stats-token";
    let cloud = provider(token, false).await;
    let dir = tempfile::tempdir().unwrap();
    let (policy, _) = external_policy(dir.path(), token);
    let mut options = CheckOptions::new(fakecloud_config());
    options.provider = ProviderChoice::External(cloud.base_url().parse().unwrap());
    let report = check(FAKECLOUD_ADAPTER, policy, options).await;
    assert_eq!(
        with(&report, Outcome::Fail),
        Vec::<&str>::new(),
        "{report:#?}"
    );
    assert_eq!(with(&report, Outcome::NotJudged), COUNTED_FAULT_RULES);
    assert!(report.passed() && !report.passed_strictly());
    let reset = evidence(&report, "fault.reset-after-processing");
    assert_eq!(
        reset,
        format!(
            "resources not counted, so whether the create under connection reset after the provider processed it and its retry made one resource or two was not measured: {}; create: RETRYABLE; retry gave {}; status: RETRYABLE; destroy: RETRYABLE",
            no_stats(&cloud),
            reset
                .split("retry gave ")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
        )
    );
    // The 401 rule claims a code, not a count: judged, and says what it could not count.
    assert_eq!(outcomes(&report)["fault.unauthorized"], Outcome::Pass);
    assert!(
        evidence(&report, "fault.unauthorized")
            .ends_with(&format!("; resources not counted ({})", no_stats(&cloud))),
        "{}",
        evidence(&report, "fault.unauthorized")
    );
}

/// The bug that scored 18/18 against a provider without stats: a create retried within the
/// call with a new client token makes a second resource. Without a count the checker
/// cannot see it and says so; with one it fails both rules the bug breaks.
#[tokio::test]
async fn a_fresh_key_per_retry_is_not_judged_without_stats_and_fails_with_them() {
    let token = "fresh-key-token";
    let dir = tempfile::tempdir().unwrap();
    let (policy, _) = external_policy(dir.path(), token);
    let run = |cloud: &fakecloud::FakeCloud| {
        let mut options = CheckOptions::new(fakecloud_config());
        options.provider = ProviderChoice::External(cloud.base_url().parse().unwrap());
        check(
            BROKEN_FAKECLOUD__FAULT_FRESH_KEY_PER_RETRY,
            policy.clone(),
            options,
        )
    };

    let blind = provider(token, false).await;
    let report = run(&blind).await;
    assert_eq!(
        with(&report, Outcome::Fail),
        Vec::<&str>::new(),
        "{report:#?}"
    );
    assert_eq!(with(&report, Outcome::NotJudged), COUNTED_FAULT_RULES);
    assert!(
        evidence(&report, "fault.slow-response").ends_with(&format!(
            "{}; create: done despite the fault (retried within the call); retry gave db-000007 (from the host's record: the faulted create had succeeded); status: RETRYABLE; destroy: RETRYABLE",
            no_stats(&blind),
        )),
        "{}",
        evidence(&report, "fault.slow-response")
    );
    assert!(!report.passed_strictly());

    let counted = provider(token, true).await;
    let report = run(&counted).await;
    assert_eq!(
        with(&report, Outcome::Fail),
        ["fault.reset-after-processing", "fault.slow-response"],
        "{report:#?}"
    );
    assert_eq!(with(&report, Outcome::NotJudged), Vec::<&str>::new());
    assert_eq!(
        evidence(&report, "fault.reset-after-processing"),
        "create under connection reset after the provider processed it and its retry with the same key left 2 new resources at the provider (expected 1); create: done despite the fault (retried within the call)"
    );
}

#[tokio::test]
async fn a_denied_request_is_reported_as_denied_with_the_whole_message() {
    let policy = Policy::from_toml(
        r#"name = "fakecloud"
[[http.allow]]
url = "https://api.fakecloud.example/v2/"
[secrets.fakecloud-token]
source = "env:FAKECLOUD_TOKEN"
destinations = ["https://api.fakecloud.example/v2/"]
"#,
        "denying.toml",
    )
    .unwrap();
    let report = check(
        FAKECLOUD_ADAPTER,
        policy,
        CheckOptions::new(fakecloud_config()),
    )
    .await;
    let denial = "POST https://api.fakecloud.example/v1/databases denied: the [[http.allow]] entry on line 2 (`https://api.fakecloud.example/v2/`) allows paths under /v2/, not /v1/databases";
    assert_eq!(
        evidence(&report, "create.idempotent"),
        format!("create failed: denied by the policy: {denial}")
    );
    assert_eq!(
        with(&report, Outcome::NotJudged)[..5],
        [
            "status.read-only",
            "status.progress",
            "status.terminal",
            "credentials.ephemeral",
            "fault.rate-limited",
        ]
    );
    for rule in FAULT_RULES {
        assert_eq!(
            evidence(&report, rule),
            format!(
                "create's request never reached the provider, so there was nothing to fault: denied by the policy: {denial}"
            ),
            "{rule}"
        );
    }
}

#[tokio::test]
async fn the_built_in_stand_in_says_it_speaks_only_fakecloud_s_api_when_it_answers_404() {
    let policy = Policy::from_toml(
        r#"name = "other-cloud"
[[http.allow]]
url = "https://api.fakecloud.example/"
[secrets.fakecloud-token]
source = "env:FAKECLOUD_TOKEN"
destinations = ["https://api.fakecloud.example/"]
"#,
        "other.toml",
    )
    .unwrap();
    let config = json!({ "endpoint": "https://api.fakecloud.example/other", "plan": "small" });
    let report = check(FAKECLOUD_ADAPTER, policy, CheckOptions::new(config)).await;
    let create = evidence(&report, "create.idempotent");
    assert_eq!(
        create.lines().nth(1),
        Some(
            "the built-in stand-in answered 404 to POST https://api.fakecloud.example/other/v1/databases: it is a fakecloud, and speaks only fakecloud's API (POST /v1/databases, GET and DELETE /v1/databases/{id}, POST /v1/databases/{id}/credentials). Run your provider's test endpoint, or a stub of it, and pass it with --provider URL (the policy's URLs are then sent to it)."
        ),
        "{create}"
    );
    assert!(create.starts_with("create failed: PERMANENT \"provider answered HTTP 404: "));
}

#[tokio::test]
async fn a_leaked_secret_is_named_by_where_it_was_found() {
    let mut policy = fakecloud_policy();
    for secret in policy.secrets.values_mut() {
        secret.get_mut().reveal = true;
    }
    let report = check(
        BROKEN_FAKECLOUD__CREDENTIALS_NO_SECRET,
        policy,
        CheckOptions::new(fakecloud_config()),
    )
    .await;
    assert_eq!(
        evidence(&report, "credentials.no-secret"),
        "the adapter put a granted secret into its output, at (JSON pointers into the call's result or error): create: log record 1 (info) (12 calls); create: /message (5 calls)"
    );
}

#[tokio::test]
async fn a_revealed_secret_warns_and_names_its_policy_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("adapters/fakecloud/policy.toml"))
        .unwrap()
        .replace(
            "destinations = [\"https://api.fakecloud.example/v1/\"]",
            "destinations = [\"https://api.fakecloud.example/v1/\"]\nreveal = true",
        );
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, &text).unwrap();
    let report = check(
        FAKECLOUD_ADAPTER,
        Policy::from_file(&path).unwrap(),
        CheckOptions::new(fakecloud_config()),
    )
    .await;
    assert!(
        report.passed_strictly(),
        "a warning fails nothing: {report:#?}"
    );
    assert_eq!(with(&report, Outcome::Warn), ["secrets.reveal"]);
    assert_eq!(
        evidence(&report, "secrets.reveal"),
        "reveal = true on \"fakecloud-token\" (line 11): the value enters the sandbox, where the adapter can keep it, send it to any URL the policy allows or write it in a form the leak guard does not know. Grant it as a handle (reveal = false) and place it with a secret header, unless the adapter must compute with the value (e.g. sign requests)."
    );

    let cli = airlock_check(&[
        FAKECLOUD_ADAPTER,
        "--policy",
        path.to_str().unwrap(),
        "--config",
        &fakecloud_config().to_string(),
        "--strict",
    ]);
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert_eq!(cli.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("\n  WARN        secrets.reveal "),
        "{stdout}"
    );
    assert!(
        stdout.contains(": 18 passed, 0 failed, 0 not judged, 3 skipped, 1 warning\n"),
        "{stdout}"
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
        stdout.contains(": 16 passed, 0 failed, 0 not judged, 6 skipped\n"),
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

#[tokio::test]
async fn the_cli_counts_rules_not_judged_and_strict_fails_them() {
    let token = "cli-no-stats-token";
    let cloud = provider(token, false).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, policy) = external_policy(dir.path(), token);
    let run = |extra: &'static [&'static str]| {
        let policy = policy.display().to_string();
        let url = cloud.base_url();
        // Blocking, off the runtime thread that serves the provider.
        tokio::task::spawn_blocking(move || {
            let config = fakecloud_config().to_string();
            let mut args = vec![
                BROKEN_FAKECLOUD__FAULT_FRESH_KEY_PER_RETRY,
                "--policy",
                &policy,
                "--config",
                &config,
                "--provider",
                &url,
            ];
            args.extend_from_slice(extra);
            airlock_check(&args)
        })
    };

    let lenient = run(&[]).await.unwrap();
    let stdout = String::from_utf8_lossy(&lenient.stdout);
    assert_eq!(lenient.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("\n  NOT JUDGED  fault.reset-after-processing "),
        "{stdout}"
    );
    assert!(
        stdout.contains(": 15 passed, 0 failed, 4 not judged, 3 skipped\n"),
        "{stdout}"
    );

    let strict = run(&["--strict"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&strict.stdout);
    assert_eq!(strict.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.ends_with(
            ": 15 passed, 0 failed, 4 not judged, 3 skipped\n--strict: 4 rule(s) not judged count as failed\n"
        ),
        "{stdout}"
    );

    let json = run(&["--strict", "--json"]).await.unwrap();
    assert_eq!(json.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    assert_eq!(
        report["counts"],
        json!({ "passed": 15, "failed": 0, "notJudged": 4, "skipped": 3, "warnings": 0 })
    );
    assert_eq!(
        (&report["strict"], &report["passed"]),
        (&json!(true), &json!(false))
    );
    let not_judged: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "not-judged")
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(not_judged, COUNTED_FAULT_RULES);
    assert!(
        String::from_utf8_lossy(&json.stderr).contains("NOT JUDGED fault.slow-response\n"),
        "progress on stderr names the verdict the same way"
    );
}
