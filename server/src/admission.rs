//! Admission: what the service judges of an uploaded adapter version before it stores it.
//! No HTTP here; `http::registry` turns the verdict into an answer.
//!
//! The steps, in order, each a check in the [`Report`]:
//!
//! | check | refuses | warn-able |
//! |---|---|---|
//! | `size`: at most [`MAX_COMPONENT_BYTES`] | yes | no |
//! | `policy`: the TOML parses and is in the validator's ranges | yes | no |
//! | `ceiling`: [`Ceiling::check`] finds no excess | yes | **no**: the ceiling is a security boundary |
//! | `world`: a component of the adapter world importing only Airlock's capabilities and WASI, compiled and cached on the service's runtime ([`Runtime::load_bytes`]) | yes | no: it could never run |
//! | the conformance rules ([`airlock_conformance::check`]) | a `fail` | yes, with `admission = "warn"` |
//!
//! Only a conformance rule's `fail` is warn-able: under a ceiling with `admission = "warn"`
//! such a version is stored with `admitted: false`. `pass`, `warn`, `skip` and
//! `not-judged` never refuse (a rule that cannot be judged without a real provider is not
//! held against the author; the report shows it). Conformance runs only when every earlier
//! check passed: an adapter whose policy is over the ceiling is never run, not even
//! against the stand-in.
//!
//! The conformance check runs against the built-in fakecloud stand-in (no request leaves
//! the machine), or, when the upload carries an `airlock check --record` file, replays it
//! (every rule is then judged as it was against the provider it was recorded with).

use std::time::Duration;

use airlock::{Error, OptionalInterfaces, Policy, Runtime};
use airlock_conformance::{self as conformance, CheckOptions, Outcome, ProviderChoice, RuleResult};
use airlock_core::ceiling::{Admission, Ceiling, Excess};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The largest component the registry accepts: 32 MiB. Adapters are small (the example
/// is well under 1 MiB); the bound keeps one upload from filling the service's memory and
/// its compile time bounded. A larger upload is answered 413 before anything is judged.
pub const MAX_COMPONENT_BYTES: usize = 32 * 1024 * 1024;

/// How long the conformance check waits for a created resource to reach a terminal
/// status. Shorter than `airlock check`'s 60 s: admission holds an HTTP request open.
pub const PROVISIONING_WAIT: Duration = Duration::from_secs(30);

/// How many conformance checks run at once, service-wide. Each starts a sandbox and a
/// stand-in provider of its own and makes dozens of calls; more uploads wait their turn.
pub const MAX_CONCURRENT_CHECKS: usize = 2;

static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_CHECKS);

/// What was uploaded, as admission sees it.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The adapter's name (from the URL).
    pub adapter: String,
    /// The version's label (from the URL).
    pub version: String,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The policy's TOML text.
    pub policy: String,
    /// An `airlock check --record` file's text, if one was uploaded.
    pub recording: Option<String>,
    /// A config the adapter accepts, for the conformance check; `None`: `{}` is used.
    pub config: Option<Value>,
    /// Create params for the conformance check; `None`: the checker's default.
    pub params: Option<Value>,
}

/// What admission decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed: stored with `admitted: true`.
    Admitted,
    /// Only conformance rules failed, and the tenant's ceiling says `admission = "warn"`:
    /// stored with `admitted: false`.
    Flagged,
    /// Not stored.
    Refused,
}

/// One check of admission's own (`size`, `policy`, `ceiling`, `world`), in the
/// conformance report's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's id.
    pub rule: String,
    /// Pass, fail or not judged.
    pub outcome: Outcome,
    /// What was seen.
    pub evidence: String,
}

/// A check or rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The check's or rule's id (`ceiling`, `world`, `create.idempotent`, …).
    pub rule: String,
    /// What was seen.
    pub evidence: String,
    /// Whether a ceiling with `admission = "warn"` stores the version despite it.
    pub warnable: bool,
}

/// The ceiling check: every excess, with the policy's line and the ceiling's value.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CeilingReport {
    /// What admission does with a failing conformance rule under this ceiling.
    pub admission: Admission,
    /// Where the ceiling came from.
    pub origin: Option<String>,
    /// Every way the policy asks for more than the ceiling allows.
    pub excesses: Vec<Excess>,
}

/// What the component is, once it loaded.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exports {
    /// The optional contract interfaces it exports.
    pub optional: OptionalInterfaces,
    /// The Airlock capabilities it imports (`http`, `secrets`, …).
    pub capabilities: Vec<String>,
}

/// The conformance check's part of the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConformanceReport {
    /// Where its provider was: the built-in fakecloud, or the replay of the recording.
    pub provider: String,
    /// Whether the config it ran with was uploaded; if not, `{}` was used (say so: an
    /// adapter that rejects `{}` fails `validate-config.accepts` and is not judged further).
    pub config_uploaded: bool,
    /// A note on the config, for people.
    pub config_note: String,
    /// Every rule, in the order it ran.
    pub results: Vec<RuleResult>,
}

/// The admission report, stored as the version's `admission` JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The adapter.
    pub adapter: String,
    /// The version.
    pub version: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The component's size, bytes.
    pub size: u64,
    /// What admission decided.
    pub verdict: Verdict,
    /// Whether the version is admitted (stored versions only carry `admitted: false`
    /// under a `warn` ceiling).
    pub admitted: bool,
    /// Admission's own checks: `size`, `policy`, `ceiling`, `world`.
    pub checks: Vec<Check>,
    /// The ceiling check in detail.
    pub ceiling: CeilingReport,
    /// What the component exports and imports, if it loaded.
    pub exports: Option<Exports>,
    /// The conformance check, if it ran (only after every check above passed).
    pub conformance: Option<ConformanceReport>,
    /// Every failed check and rule.
    pub failures: Vec<Failure>,
}

impl Report {
    /// The failures as one line each, for a refusal's message.
    pub fn failure_lines(&self) -> Vec<String> {
        self.failures
            .iter()
            .map(|f| format!("{}: {}", f.rule, f.evidence))
            .collect()
    }
}

/// Why admission could not judge at all (not the upload's fault).
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The conformance check could not run (the stand-in provider did not start, a
    /// temporary file could not be written) or the service's storage failed while loading.
    #[error("admission could not run: {0}")]
    Unavailable(String),
}

/// The name the component is loaded under for admission on the service's runtime: one
/// per digest, so that no two uploads (of any tenants) ever contend for a state namespace
/// of the runtime's default tenant, and admission never rebinds a name the CLI uses.
fn admission_name(sha256: &str) -> String {
    format!("admission-{}", &sha256[..16])
}

/// Judge `upload` under `ceiling`, on `runtime` (the service's own: the component is
/// compiled and cached there). The report says what was decided; an error only when
/// admission could not run.
pub async fn admit(
    runtime: &Runtime,
    ceiling: &Ceiling,
    upload: &Upload,
) -> Result<Report, AdmissionError> {
    let sha256 = hex::encode(Sha256::digest(&upload.component));
    let size = upload.component.len();
    let mut report = Report {
        adapter: upload.adapter.clone(),
        version: upload.version.clone(),
        sha256: sha256.clone(),
        size: size as u64,
        verdict: Verdict::Refused,
        admitted: false,
        checks: Vec::new(),
        ceiling: CeilingReport {
            admission: ceiling.admission,
            origin: ceiling.origin.clone(),
            excesses: Vec::new(),
        },
        exports: None,
        conformance: None,
        failures: Vec::new(),
    };
    if size > MAX_COMPONENT_BYTES {
        fail_check(
            &mut report,
            "size",
            format!("{size} bytes, over the registry's {MAX_COMPONENT_BYTES}"),
        );
        return Ok(finish(report, ceiling));
    }
    pass_check(
        &mut report,
        "size",
        format!("{size} bytes, at most {MAX_COMPONENT_BYTES}"),
    );

    let origin = format!("{}@{} policy", upload.adapter, upload.version);
    let policy = match Policy::from_toml(&upload.policy, &origin) {
        Ok(policy) => policy,
        Err(error) => {
            fail_check(&mut report, "policy", error.to_string());
            for rule in ["ceiling", "world"] {
                report.checks.push(Check {
                    rule: rule.to_owned(),
                    outcome: Outcome::NotJudged,
                    evidence: "the policy does not parse".to_owned(),
                });
            }
            return Ok(finish(report, ceiling));
        }
    };
    pass_check(&mut report, "policy", "parses".to_owned());

    let excesses = ceiling.check(&policy);
    if excesses.is_empty() {
        pass_check(
            &mut report,
            "ceiling",
            "the policy asks nothing over the tenant's ceiling".to_owned(),
        );
    } else {
        for excess in &excesses {
            fail_check(&mut report, "ceiling", excess.to_string());
        }
    }
    report.ceiling.excesses = excesses;

    // Loaded under a per-digest name (see `admission_name`), not the policy's: admission
    // binds no namespace a call or the CLI uses.
    let mut for_load = policy.clone();
    for_load.name = None;
    let component_origin = format!("{}@{}", upload.adapter, upload.version);
    match runtime
        .load_bytes(
            &admission_name(&sha256),
            upload.component.clone(),
            for_load,
            &component_origin,
        )
        .await
    {
        Ok(adapter) => {
            let info = adapter.info();
            report.exports = Some(Exports {
                optional: info.optional,
                capabilities: info.capabilities().iter().map(|c| c.to_string()).collect(),
            });
            pass_check(
                &mut report,
                "world",
                format!(
                    "a component of the adapter world; imports Airlock {}",
                    match info.capabilities().join(", ") {
                        none if none.is_empty() => "nothing".to_owned(),
                        some => some,
                    }
                ),
            );
        }
        Err(error @ Error::Policy { .. }) => fail_check(&mut report, "policy", error.to_string()),
        Err(error @ (Error::Database { .. } | Error::Engine(_) | Error::Cache { .. })) => {
            return Err(AdmissionError::Unavailable(error.to_string()));
        }
        Err(error) => fail_check(&mut report, "world", error.to_string()),
    }
    if !report.failures.is_empty() {
        return Ok(finish(report, ceiling));
    }

    report.conformance = Some(conformance_check(upload, policy).await?);
    Ok(finish(report, ceiling))
}

fn fail_check(report: &mut Report, rule: &str, evidence: String) {
    report.checks.push(Check {
        rule: rule.to_owned(),
        outcome: Outcome::Fail,
        evidence: evidence.clone(),
    });
    report.failures.push(Failure {
        rule: rule.to_owned(),
        evidence,
        warnable: false,
    });
}

fn pass_check(report: &mut Report, rule: &str, evidence: String) {
    report.checks.push(Check {
        rule: rule.to_owned(),
        outcome: Outcome::Pass,
        evidence,
    });
}

/// Run the conformance rules: against the built-in fakecloud, or replaying the upload's
/// recording.
async fn conformance_check(
    upload: &Upload,
    policy: Policy,
) -> Result<ConformanceReport, AdmissionError> {
    let (config, config_uploaded, config_note) = match &upload.config {
        Some(config) => (
            config.clone(),
            true,
            "the uploaded `config` part".to_owned(),
        ),
        None => (
            json!({}),
            false,
            "no `config` part was uploaded: the check ran with `{}`; an adapter that rejects it fails validate-config.accepts and the later rules are not judged".to_owned(),
        ),
    };
    let mut options = CheckOptions::new(config);
    if let Some(params) = &upload.params {
        options.params = params.clone();
    }
    options.wait = PROVISIONING_WAIT;
    let mut recording_file = None;
    if let Some(recording) = &upload.recording {
        let file = tempfile::NamedTempFile::new()
            .and_then(|mut file| {
                use std::io::Write;
                file.write_all(recording.as_bytes())?;
                file.flush()?;
                Ok(file)
            })
            .map_err(|e| AdmissionError::Unavailable(format!("cannot write the recording: {e}")))?;
        options.provider = ProviderChoice::Replay(file.path().to_owned());
        recording_file = Some(file);
    }
    let origin = format!("{}.wasm", upload.adapter);
    let component = upload.component.clone();
    // The checker's future is not `Send` (it holds its event callback across awaits), so
    // it runs on a thread of the blocking pool, driven by this runtime's reactor: the
    // async workers keep serving other requests meanwhile. At most
    // `MAX_CONCURRENT_CHECKS` run at once.
    let _permit = CHECKS
        .acquire()
        .await
        .map_err(|e| AdmissionError::Unavailable(e.to_string()))?;
    let handle = tokio::runtime::Handle::current();
    let checked = tokio::task::spawn_blocking(move || {
        let checked = handle.block_on(conformance::check(
            &component,
            &origin,
            policy,
            options,
            &mut |_| {},
        ));
        // Held until the check is done: the replay reads it.
        drop(recording_file);
        checked
    })
    .await
    .map_err(|e| AdmissionError::Unavailable(format!("the conformance check failed: {e}")))?;
    match checked {
        Ok(checked) => Ok(ConformanceReport {
            provider: checked.provider,
            config_uploaded,
            config_note,
            results: checked.results,
        }),
        // With a recording, a check that cannot start is the recording's fault (it does
        // not parse, or is of another format): a failed rule, not an outage.
        Err(error) if upload.recording.is_some() => Ok(ConformanceReport {
            provider: "replay of the uploaded recording".to_owned(),
            config_uploaded,
            config_note,
            results: vec![RuleResult {
                rule: "replay",
                title: "the run follows the recording",
                outcome: Outcome::Fail,
                evidence: error.to_string(),
            }],
        }),
        Err(error) => Err(AdmissionError::Unavailable(error.to_string())),
    }
}

/// Collect the conformance failures and decide.
fn finish(mut report: Report, ceiling: &Ceiling) -> Report {
    if let Some(conformance) = &report.conformance {
        for result in &conformance.results {
            if result.outcome == Outcome::Fail {
                report.failures.push(Failure {
                    rule: result.rule.to_owned(),
                    evidence: result.evidence.clone(),
                    warnable: true,
                });
            }
        }
    }
    report.verdict = if report.failures.is_empty() {
        Verdict::Admitted
    } else if report.failures.iter().all(|f| f.warnable) && ceiling.admission == Admission::Warn {
        Verdict::Flagged
    } else {
        Verdict::Refused
    };
    report.admitted = report.verdict == Verdict::Admitted;
    report
}

/// Whether `version` is a version label: 1 to 64 of `A-Z a-z 0-9 . _ + -`.
pub fn validate_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "version {version:?} is not a version label (1 to 64 of A-Z, a-z, 0-9, '.', '_', '+', '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(component: Vec<u8>, policy: &str) -> Upload {
        Upload {
            adapter: "example".into(),
            version: "1.0.0".into(),
            component,
            policy: policy.into(),
            recording: None,
            config: None,
            params: None,
        }
    }

    fn runtime(dir: &std::path::Path) -> Runtime {
        Runtime::new(airlock::RuntimeConfig::with_data_dir(dir)).unwrap()
    }

    fn rules(report: &Report) -> Vec<&str> {
        report.failures.iter().map(|f| f.rule.as_str()).collect()
    }

    #[test]
    fn versions_are_checked() {
        for good in ["1.0.0", "v2", "1.0.0-rc.1+build.5", &"x".repeat(64), "A_b"] {
            validate_version(good).unwrap();
        }
        for bad in ["", &"x".repeat(65), "1.0/2", "a b", "é", "1%2F"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_policy_over_the_ceiling_is_refused_even_in_warn_mode_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime(dir.path());
        let ceiling = Ceiling::from_toml(
            "admission = \"warn\"\n[limits]\nfuel = 500_000_000\n",
            "c.toml",
        )
        .unwrap();
        let report = admit(
            &runtime,
            &ceiling,
            &upload(b"not wasm".to_vec(), "\n[limits]\nfuel = 2_000_000_000\n"),
        )
        .await
        .unwrap();
        assert_eq!(report.verdict, Verdict::Refused);
        assert_eq!(rules(&report), ["ceiling", "world"]);
        assert_eq!(
            report.failures[0].evidence,
            "limits.fuel = 2000000000 (line 3) is over the tenant's ceiling: at most 500000000"
        );
        assert!(report.conformance.is_none());
    }

    #[tokio::test]
    async fn bytes_that_are_no_component_fail_world_and_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime(dir.path());
        let report = admit(
            &runtime,
            &Ceiling::default(),
            &upload(b"\0asm\x01\0\0\0".to_vec(), ""),
        )
        .await
        .unwrap();
        assert_eq!(report.verdict, Verdict::Refused);
        assert_eq!(rules(&report), ["world"]);
        assert!(report.conformance.is_none() && report.exports.is_none());
    }

    #[tokio::test]
    async fn a_policy_that_does_not_parse_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime(dir.path());
        let report = admit(
            &runtime,
            &Ceiling::default(),
            &upload(vec![0; 8], "[limits]\nfuell = 5\n"),
        )
        .await
        .unwrap();
        assert_eq!(rules(&report), ["policy"]);
        assert!(report.failures[0].evidence.contains("line 2"), "{report:?}");
    }

    #[tokio::test]
    async fn an_oversized_component_is_refused_before_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime(dir.path());
        let report = admit(
            &runtime,
            &Ceiling::default(),
            &upload(vec![0; MAX_COMPONENT_BYTES + 1], ""),
        )
        .await
        .unwrap();
        assert_eq!(rules(&report), ["size"]);
    }

    #[test]
    fn only_conformance_failures_are_flagged_under_a_warn_ceiling() {
        let warn = Ceiling {
            admission: Admission::Warn,
            ..Ceiling::default()
        };
        let base = Report {
            adapter: "a".into(),
            version: "1".into(),
            sha256: String::new(),
            size: 0,
            verdict: Verdict::Refused,
            admitted: false,
            checks: Vec::new(),
            ceiling: CeilingReport {
                admission: Admission::Warn,
                origin: None,
                excesses: Vec::new(),
            },
            exports: None,
            conformance: Some(ConformanceReport {
                provider: String::new(),
                config_uploaded: true,
                config_note: String::new(),
                results: vec![
                    RuleResult {
                        rule: "create.idempotent",
                        title: "",
                        outcome: Outcome::Fail,
                        evidence: "two".into(),
                    },
                    RuleResult {
                        rule: "status.read-only",
                        title: "",
                        outcome: Outcome::NotJudged,
                        evidence: String::new(),
                    },
                ],
            }),
            failures: Vec::new(),
        };
        let flagged = finish(base.clone(), &warn);
        assert_eq!(flagged.verdict, Verdict::Flagged);
        assert!(!flagged.admitted);
        assert_eq!(rules(&flagged), ["create.idempotent"]);
        assert_eq!(
            finish(base.clone(), &Ceiling::default()).verdict,
            Verdict::Refused
        );
        let mut not_judged_only = base;
        not_judged_only
            .conformance
            .as_mut()
            .unwrap()
            .results
            .remove(0);
        let admitted = finish(not_judged_only, &Ceiling::default());
        assert_eq!(admitted.verdict, Verdict::Admitted);
        assert!(admitted.admitted);
    }
}
