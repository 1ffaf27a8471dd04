//! The rules, and the run that judges them in order.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock::{
    Adapter, AdapterError, Credential, Error, ErrorCode, ErrorOrigin, Invocation, Operation,
    Output, Policy, ProvisionResult, Runtime, RuntimeConfig, Status, StatusDetail,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::provider::{Fault, SeenRequest, StandIn};
use super::recording::Recording;
use super::{CheckEvent, CheckOptions, CheckSecrets, Outcome, ProviderChoice, Report, RuleResult};

/// A rule: its id and what it asks.
pub type Rule = (&'static str, &'static str);

const WORLD: Rule = (
    "world",
    "exports the adapter world; imports only Airlock's capabilities and WASI",
);
const VALIDATE_REJECTS: Rule = (
    "validate-config.rejects",
    "validate-config rejects a malformed config with VALIDATION",
);
const VALIDATE_ACCEPTS: Rule = (
    "validate-config.accepts",
    "validate-config accepts the valid config",
);
const CREATE_IDEMPOTENT: Rule = (
    "create.idempotent",
    "create twice with one key: same instanceId, created true then false, key echoed",
);
const STATUS_READ_ONLY: Rule = (
    "status.read-only",
    "status changes nothing: no state writes, no mutating requests",
);
const STATUS_PROGRESS: Rule = (
    "status.progress",
    "progress never goes backwards nor past total, and provisioning ends",
);
const STATUS_TERMINAL: Rule = ("status.terminal", "a terminal status stays terminal");
const CREDENTIALS_EPHEMERAL: Rule = (
    "credentials.ephemeral",
    "credentials are ephemeral with a future expiry, or a reference",
);
const LIFECYCLE: Rule = (
    "optional.lifecycle",
    "pause and resume work, when the lifecycle interface is exported",
);
const COSTS: Rule = (
    "optional.costs",
    "estimate-costs answers, when the costs interface is exported",
);
const ROTATION: Rule = (
    "optional.rotation",
    "rotate-credentials issues new credentials, when the rotation interface is exported",
);
const FAULT_RATE_LIMITED: Rule = (
    "fault.rate-limited",
    "a provider 429 maps to LIMIT; the retry makes one resource",
);
const FAULT_SERVER_ERROR: Rule = (
    "fault.server-error",
    "a provider 500 maps to RETRYABLE; the retry makes one resource",
);
const FAULT_RESET: Rule = (
    "fault.reset-after-processing",
    "a reset after the provider processed the request: RETRYABLE or done, never two resources",
);
const FAULT_SLOW: Rule = (
    "fault.slow-response",
    "an answer slower than the request timeout: RETRYABLE or done, never two resources",
);
const FAULT_UNAUTHORIZED: Rule = ("fault.unauthorized", "a provider 401 maps to AUTH");
const DESTROY_IDEMPOTENT: Rule = ("destroy.idempotent", "destroy twice succeeds both times");
const STATUS_AFTER_DESTROY: Rule = (
    "status.after-destroy",
    "status after destroy is CANCELLED or FAILED, or a PERMANENT or VALIDATION error",
);
const ERRORS: Rule = (
    "errors.well-formed",
    "every error has one of the six codes and a message that says what went wrong; no trap, limit or broken output",
);
const NO_SECRET: Rule = (
    "credentials.no-secret",
    "no granted secret appears in any output",
);
const SECRETS_REVEAL: Rule = (
    "secrets.reveal",
    "no secret is granted with reveal = true (its value would enter the sandbox); warns, never fails",
);
const RESOURCES: Rule = (
    "resources",
    "fuel, memory and wall time per operation stay under 90% of the policy's limits",
);

/// Every rule, in the order the checker runs them.
pub const RULES: [Rule; 22] = [
    WORLD,
    VALIDATE_REJECTS,
    VALIDATE_ACCEPTS,
    CREATE_IDEMPOTENT,
    STATUS_READ_ONLY,
    STATUS_PROGRESS,
    STATUS_TERMINAL,
    CREDENTIALS_EPHEMERAL,
    LIFECYCLE,
    COSTS,
    ROTATION,
    FAULT_RATE_LIMITED,
    FAULT_SERVER_ERROR,
    FAULT_RESET,
    FAULT_SLOW,
    FAULT_UNAUTHORIZED,
    DESTROY_IDEMPOTENT,
    STATUS_AFTER_DESTROY,
    ERRORS,
    NO_SECRET,
    SECRETS_REVEAL,
    RESOURCES,
];

/// The checker lowers the policy's per-request timeout to this, so a slow-response fault
/// costs seconds, not the policy's full timeout.
const CHECK_REQUEST_TIMEOUT_MS: u64 = 1000;
/// Status calls after a terminal status, to see it stays, this far apart.
const TERMINAL_REPEATS: usize = 3;
const TERMINAL_REPEAT_INTERVAL: Duration = Duration::from_millis(250);
/// How often status is polled while provisioning.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A limit is "too close" past this share of it.
const CLOSE_TO_LIMIT: f64 = 0.9;

/// One call the checker made.
struct Call {
    operation: &'static str,
    fault: Option<Fault>,
    invocation: Invocation,
    seen: Vec<SeenRequest>,
}

/// The run.
pub(crate) struct Checker<'a> {
    adapter: Adapter,
    runtime: Runtime,
    stand_in: Arc<StandIn>,
    provider: ProviderChoice,
    cloud: Option<Arc<fakecloud::FakeCloud>>,
    options: CheckOptions,
    run: String,
    results: Vec<RuleResult>,
    calls: Vec<Call>,
    /// The `secrets.reveal` verdict, judged on the policy before the run.
    reveal: Option<(Outcome, String)>,
    on_event: &'a mut (dyn FnMut(&CheckEvent) + Send),
    _data: tempfile::TempDir,
}

/// An error as the report shows it: its code and its whole message. Nothing is cut: a
/// denial names the policy line that would grant the request, and the host already bounds
/// an adapter's message (`limits.max_output_bytes`).
fn said(error: &AdapterError) -> String {
    format!("{} {:?}", error.error_code.as_str(), error.message)
}

/// The host's denial in `text`, from the request it names on: the host words every denial
/// `"{METHOD} {url} denied: {why}"`, and an adapter that passes it on may wrap it
/// (`"create failed: POST https://… denied: …"`).
fn denial_in(text: &str) -> Option<&str> {
    let at = text.find(" denied: ")?;
    let before = &text[..at];
    let start = before
        .rfind(' ')
        .and_then(|url| before[..url].rfind(' ').map(|method| method + 1))
        .unwrap_or(0);
    Some(&text[start..])
}

/// Why a call failed, as the report says it: when the host refused one of the call's
/// requests before it reached the provider (the receipt counts more requests than the
/// stand-in saw) and the adapter passed the host's denial on, "denied by the policy: …"
/// with the denial whole; else the error.
fn why_failed(invocation: &Invocation, seen: &[SeenRequest], error: &AdapterError) -> String {
    match refusal(invocation, seen) {
        Some(Refusal::Denied(denial)) => format!("denied by the policy: {denial}"),
        _ => said(error),
    }
}

/// What the host did with requests of a call that never reached the provider.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Denied by the policy; the host's words, whole.
    Denied(String),
    /// Refused (denied, malformed or past a limit) without the host's reason reaching
    /// the adapter's error or logs; how many.
    Unexplained(usize),
}

fn refusal(invocation: &Invocation, seen: &[SeenRequest]) -> Option<Refusal> {
    let refused = (invocation.receipt.http_requests as usize).checked_sub(seen.len())?;
    if refused == 0 {
        return None;
    }
    let error = invocation.result.as_ref().err().map(|e| e.message.as_str());
    let denial = error
        .into_iter()
        .chain(invocation.logs.iter().map(|l| l.message.as_str()))
        .find_map(denial_in);
    Some(match denial {
        Some(denial) => Refusal::Denied(denial.to_owned()),
        None => Refusal::Unexplained(refused),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The code the adapter itself chose, before the host's reclassification of provider
/// failures it passed through.
fn adapter_code(error: &AdapterError) -> ErrorCode {
    error
        .raw
        .as_ref()
        .and_then(|raw| raw.get("adapterErrorCode"))
        .and_then(Value::as_str)
        .and_then(|code| serde_json::from_value(json!(code)).ok())
        .unwrap_or(error.error_code)
}

fn progress_label(detail: &StatusDetail) -> String {
    let status = status_name(detail.status);
    match &detail.progress {
        Some(p) => format!("{status} {}/{}", p.current, p.total),
        None => status.to_owned(),
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "PENDING",
        Status::Running => "RUNNING",
        Status::Success => "SUCCESS",
        Status::Failed => "FAILED",
        Status::Cancelled => "CANCELLED",
    }
}

fn rank(status: Status) -> u8 {
    match status {
        Status::Pending => 0,
        Status::Running => 1,
        _ => 2,
    }
}

impl<'a> Checker<'a> {
    pub(crate) async fn run(
        wasm: &[u8],
        origin: &str,
        mut policy: Policy,
        options: CheckOptions,
        on_event: &'a mut (dyn FnMut(&CheckEvent) + Send),
    ) -> Result<Report, Error> {
        let setup = |message: String| Error::Engine(format!("airlock check: {message}"));
        let sha256 = hex::encode(Sha256::digest(wasm));
        let token: Arc<str> = format!(
            "check-{}",
            &hex::encode(Sha256::digest(format!(
                "{:?}{}",
                SystemTime::now(),
                std::process::id()
            )))[..24]
        )
        .into();
        let (stand_in, cloud, run, provider_label) = match &options.provider {
            ProviderChoice::BuiltIn => {
                let cloud = fakecloud::FakeCloud::start(fakecloud::FakeCloudConfig {
                    token: token.to_string(),
                    step_millis: 50,
                    steps: 3,
                    ..fakecloud::FakeCloudConfig::default()
                })
                .await
                .map_err(|e| setup(format!("cannot start the built-in fakecloud: {e}")))?;
                let base = cloud.base_url();
                let origin = url::Url::parse(&base).map_err(|e| setup(e.to_string()))?;
                let label = format!("built-in fakecloud at {base}");
                (
                    StandIn::live(origin, options.record.is_some()),
                    Some(Arc::new(cloud)),
                    token[6..14].to_owned(),
                    label,
                )
            }
            ProviderChoice::External(url) => (
                StandIn::live(url.clone(), options.record.is_some()),
                None,
                token[6..14].to_owned(),
                format!("{url}"),
            ),
            ProviderChoice::Replay(path) => {
                let recording = Recording::load(path).map_err(setup)?;
                let label = if recording.adapter_sha256 == sha256 {
                    format!("replay of {}", path.display())
                } else {
                    format!(
                        "replay of {} (recorded with another component, sha256 {})",
                        path.display(),
                        &recording.adapter_sha256[..recording.adapter_sha256.len().min(16)]
                    )
                };
                let run = recording.run.clone();
                (StandIn::replay(recording), None, run, label)
            }
        };
        // Judged on the policy as the operator wrote it, whether or not the adapter loads.
        let reveal = judge_reveal(&policy);
        // The sources every runtime starts with (`env:`, `file:`), and the check's own below.
        let mut sources = RuntimeConfig::default().secret_sources;
        if !matches!(options.provider, ProviderChoice::External(_)) {
            // The built-in provider (and a replay of it) accepts one token: every secret
            // the policy grants resolves to it.
            for (name, secret) in policy.secrets.iter_mut() {
                secret.get_mut().source = format!("airlock-check:{name}");
            }
            sources.push(Arc::new(CheckSecrets(token.clone())));
        }
        policy.http.request_timeout_ms =
            policy.http.request_timeout_ms.min(CHECK_REQUEST_TIMEOUT_MS);

        let data = tempfile::tempdir().map_err(|e| setup(format!("temporary directory: {e}")))?;
        let runtime = Runtime::new(RuntimeConfig {
            pool_size: 8,
            cache_compiled: false,
            secret_sources: sources,
            http_interceptor: Some(stand_in.clone()),
            ..RuntimeConfig::with_data_dir(data.path())
        })?;
        let stem = std::path::Path::new(origin)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = runtime
            .load_bytes(
                &airlock::name_from_stem(&stem),
                wasm.to_vec(),
                policy,
                origin,
            )
            .await;
        let adapter = match loaded {
            Ok(adapter) => adapter,
            Err(error) => {
                let mut results = Vec::new();
                for rule in RULES {
                    let (outcome, evidence) = if rule == WORLD {
                        (Outcome::Fail, error.to_string())
                    } else if rule == SECRETS_REVEAL {
                        // Judged on the policy alone.
                        reveal.clone()
                    } else {
                        (
                            Outcome::NotJudged,
                            "the adapter did not load, so it could not be run".to_owned(),
                        )
                    };
                    let result = RuleResult {
                        rule: rule.0,
                        title: rule.1,
                        outcome,
                        evidence,
                    };
                    on_event(&CheckEvent::Rule(result.clone()));
                    results.push(result);
                }
                return Ok(Report {
                    adapter: stem,
                    sha256,
                    provider: provider_label,
                    results,
                });
            }
        };
        let mut checker = Checker {
            adapter,
            runtime,
            stand_in,
            provider: options.provider.clone(),
            cloud,
            options,
            run,
            results: Vec::new(),
            calls: Vec::new(),
            reveal: Some(reveal),
            on_event,
            _data: data,
        };
        checker.all_rules().await;
        if let Some(path) = checker.options.record.clone()
            && let Some(events) = checker.stand_in.recording()
        {
            Recording::new(sha256.clone(), checker.run.clone(), events)
                .save(&path)
                .map_err(setup)?;
        }
        if let Some(problem) = checker.stand_in.replay_problem() {
            checker.results.push(RuleResult {
                rule: "replay",
                title: "the run follows the recording",
                outcome: Outcome::Fail,
                evidence: problem,
            });
        }
        Ok(Report {
            adapter: checker.adapter.name().to_owned(),
            sha256,
            provider: provider_label,
            results: checker.results,
        })
    }

    fn judge(&mut self, rule: Rule, outcome: Outcome, evidence: impl Into<String>) {
        let result = RuleResult {
            rule: rule.0,
            title: rule.1,
            outcome,
            evidence: evidence.into(),
        };
        (self.on_event)(&CheckEvent::Rule(result.clone()));
        self.results.push(result);
    }

    fn verdict(&mut self, rule: Rule, verdict: Result<String, String>) {
        match verdict {
            Ok(evidence) => self.judge(rule, Outcome::Pass, evidence),
            Err(evidence) => self.judge(rule, Outcome::Fail, evidence),
        }
    }

    /// Rules that could not be run, for the same reason: not judged, or skipped where
    /// they do not apply to this adapter at all.
    fn not_judged_all(&mut self, rules: &[Rule], why: &str) {
        for rule in rules {
            match self.not_applicable(*rule) {
                Some(reason) => self.judge(*rule, Outcome::Skip, reason),
                None => self.judge(*rule, Outcome::NotJudged, why),
            }
        }
    }

    /// Why `rule` does not apply to this adapter, if it does not: an optional interface it
    /// does not export, or faults for an adapter without `http`.
    fn not_applicable(&self, rule: Rule) -> Option<&'static str> {
        let optional = self.adapter.info().optional;
        if rule == LIFECYCLE && !optional.lifecycle {
            Some("lifecycle is not exported")
        } else if rule == COSTS && !optional.costs {
            Some("costs is not exported")
        } else if rule == ROTATION && !optional.rotation {
            Some("rotation is not exported")
        } else if rule.0.starts_with("fault.") && !self.imports_http() {
            Some("the adapter does not import http, so there is no provider request to fault")
        } else {
            None
        }
    }

    fn imports_http(&self) -> bool {
        self.adapter.info().capabilities().contains(&"http")
    }

    /// One call, with `fault` armed (one-shot faults aim at the first mutating request of
    /// a create or destroy, and the first request of anything else).
    async fn call(&mut self, operation: Operation, fault: Option<Fault>) -> Invocation {
        let name = operation.name();
        self.stand_in
            .begin(fault, matches!(name, "create" | "destroy"));
        let invocation = self.adapter.invoke(&self.options.config, operation).await;
        self.calls.push(Call {
            operation: name,
            fault,
            invocation: invocation.clone(),
            seen: self.stand_in.seen(),
        });
        invocation
    }

    fn key(&self, what: &str) -> String {
        format!("airlock-check-{}-{what}", self.run)
    }

    async fn create(&mut self, key: &str, fault: Option<Fault>) -> Invocation {
        let operation = Operation::Create {
            params: self.options.params.clone(),
            idempotency_key: Some(key.to_owned()),
        };
        self.call(operation, fault).await
    }

    /// The provider's resource count, or why it cannot be known.
    async fn resources(&self) -> Result<u64, String> {
        let live = match (&self.provider, &self.cloud) {
            (ProviderChoice::BuiltIn, Some(cloud)) => Ok(cloud.resource_count() as u64),
            (ProviderChoice::External(url), _) => admin_resource_count(url).await,
            _ => Err(String::new()),
        };
        let why = live.as_ref().err().cloned();
        self.stand_in.resources(live.ok()).ok_or_else(|| match why {
            Some(why) if !why.is_empty() => why,
            _ => "the recording holds no count here: the provider it was recorded against could not be counted".to_owned(),
        })
    }

    async fn all_rules(&mut self) {
        self.world();
        self.validate_config().await;
        if self.results.last().map(|r| r.outcome) != Some(Outcome::Pass) {
            let rest: Vec<Rule> = RULES[3..18].to_vec();
            self.not_judged_all(
                &rest,
                "the valid config was rejected, so no other operation could be run",
            );
        } else {
            match self.create_idempotent().await {
                Some(instance) => {
                    let ended = self.status_rules(&instance).await;
                    let credential = self.credentials(&instance, ended).await;
                    self.optional(&instance, credential).await;
                    self.faults().await;
                    self.destroy_rules(&instance).await;
                }
                None => {
                    let why = "create failed, so there is no resource to run this on";
                    self.not_judged_all(
                        &[
                            STATUS_READ_ONLY,
                            STATUS_PROGRESS,
                            STATUS_TERMINAL,
                            CREDENTIALS_EPHEMERAL,
                            LIFECYCLE,
                            COSTS,
                            ROTATION,
                        ],
                        why,
                    );
                    self.faults().await;
                    self.not_judged_all(&[DESTROY_IDEMPOTENT, STATUS_AFTER_DESTROY], why);
                }
            }
        }
        self.errors();
        self.no_secret();
        if let Some((outcome, evidence)) = self.reveal.take() {
            self.judge(SECRETS_REVEAL, outcome, evidence);
        }
        self.resource_use();
    }

    fn world(&mut self) {
        let info = self.adapter.info();
        let mut exports = vec!["contract"];
        for (present, name) in [
            (info.optional.lifecycle, "lifecycle"),
            (info.optional.costs, "costs"),
            (info.optional.rotation, "rotation"),
        ] {
            if present {
                exports.push(name);
            }
        }
        let capabilities = info.capabilities().join(", ");
        let mut wasi: Vec<&str> = info
            .imports
            .iter()
            .filter_map(|i| i.strip_prefix("wasi:"))
            .map(|i| i.split('/').next().unwrap_or(i))
            .collect();
        wasi.dedup();
        let evidence = format!(
            "exports {}; imports Airlock {}; WASI {}",
            exports.join(", "),
            if capabilities.is_empty() {
                "nothing".to_owned()
            } else {
                capabilities
            },
            if wasi.is_empty() {
                "nothing".to_owned()
            } else {
                wasi.join(", ")
            }
        );
        self.judge(WORLD, Outcome::Pass, evidence);
    }

    async fn validate_config(&mut self) {
        let mut malformed = vec![json!([]), json!("not an object"), json!(42)];
        malformed.extend(self.options.invalid_configs.iter().cloned());
        let mut verdict = Ok(String::new());
        let mut first_message = String::new();
        for config in &malformed {
            self.stand_in.begin(None, false);
            let invocation = self.adapter.invoke(config, Operation::ValidateConfig).await;
            self.calls.push(Call {
                operation: "validate-config",
                fault: None,
                invocation: invocation.clone(),
                seen: self.stand_in.seen(),
            });
            match invocation.result {
                Err(error) if error.error_code == ErrorCode::Validation => {
                    if first_message.is_empty() {
                        first_message = error.message.clone();
                    }
                }
                Err(error) => {
                    verdict = Err(format!(
                        "config {config}: {} (expected VALIDATION)",
                        said(&error)
                    ));
                    break;
                }
                Ok(_) => {
                    verdict = Err(format!("config {config} was accepted"));
                    break;
                }
            }
        }
        let verdict = verdict.map(|_| {
            format!(
                "{} malformed configs rejected with VALIDATION, e.g. {first_message:?}",
                malformed.len()
            )
        });
        self.verdict(VALIDATE_REJECTS, verdict);

        let accepted = self.call(Operation::ValidateConfig, None).await;
        let verdict = match accepted.result {
            Ok(_) => Ok(format!("accepted {}", self.options.config)),
            Err(error) => Err(format!(
                "{} rejected it: {}",
                self.options.config,
                said(&error)
            )),
        };
        self.verdict(VALIDATE_ACCEPTS, verdict);
    }

    async fn create_idempotent(&mut self) -> Option<String> {
        let key = self.key("idempotent");
        let created = self.create(&key, None).await;
        let first = match created.result {
            Ok(Output::Provisioned(result)) => result,
            Ok(other) => {
                self.judge(
                    CREATE_IDEMPOTENT,
                    Outcome::Fail,
                    format!("create returned {other:?}"),
                );
                return None;
            }
            Err(ref error) => {
                let seen = self.last_seen();
                let mut evidence = format!("create failed: {}", why_failed(&created, &seen, error));
                if let Some(hint) = self.stand_in_hint(&seen) {
                    evidence.push('\n');
                    evidence.push_str(&hint);
                }
                self.judge(CREATE_IDEMPOTENT, Outcome::Fail, evidence);
                return None;
            }
        };
        // The host answers a repeated key from its own record; set the record aside so
        // the repeat reaches the adapter, as it would after the record expired.
        let forgot = self.runtime.forget_records(self.adapter.name()).await;
        let second = self.create(&key, None).await;
        let (outcome, evidence) = match (&forgot, &second.result) {
            (Err(e), _) => (
                Outcome::NotJudged,
                format!(
                    "cannot set the host's record aside, so a repeat would not reach the adapter: {e}"
                ),
            ),
            (Ok(_), _) if !second.receipt.instantiated => (
                Outcome::NotJudged,
                format!(
                    "the repeat with key {key:?} was answered by the host ({}), not the adapter, so the adapter's own idempotency was not seen",
                    second
                        .receipt
                        .idempotency
                        .unwrap_or("refused before the adapter ran")
                ),
            ),
            (_, Err(error)) => (
                Outcome::Fail,
                format!(
                    "the repeated create failed: {}",
                    why_failed(&second, &self.last_seen(), error)
                ),
            ),
            (_, Ok(Output::Provisioned(again))) => match judge_repeat(&key, &first, again) {
                Ok(evidence) => (Outcome::Pass, evidence),
                Err(evidence) => (Outcome::Fail, evidence),
            },
            (_, Ok(other)) => (
                Outcome::Fail,
                format!("the repeated create returned {other:?}"),
            ),
        };
        self.judge(CREATE_IDEMPOTENT, outcome, evidence);
        Some(first.instance_id)
    }

    /// When the built-in fakecloud answered 404 to one of a call's writes: it speaks only
    /// fakecloud's API, so an adapter for another provider needs `--provider`.
    fn stand_in_hint(&self, seen: &[SeenRequest]) -> Option<String> {
        if self.provider != ProviderChoice::BuiltIn {
            return None;
        }
        let request = seen.iter().find(|s| s.mutating && s.status == Some(404))?;
        Some(format!(
            "the built-in stand-in answered 404 to {}: it is a fakecloud, and speaks only fakecloud's API (POST /v1/databases, GET and DELETE /v1/databases/{{id}}, POST /v1/databases/{{id}}/credentials). Run your provider's test endpoint, or a stub of it, and pass it with --provider URL (the policy's URLs are then sent to it).",
            request.label()
        ))
    }

    /// Poll status to a terminal state; judge read-only, progress and terminal. Returns
    /// the terminal status reached, if one was.
    async fn status_rules(&mut self, instance: &str) -> Option<Status> {
        let started = Instant::now();
        let first_call = self.calls.len();
        let mut details: Vec<StatusDetail> = Vec::new();
        let mut failure = None;
        loop {
            let invocation = self
                .call(
                    Operation::Status {
                        instance_id: instance.to_owned(),
                    },
                    None,
                )
                .await;
            match invocation.result {
                Ok(Output::Status(detail)) => {
                    (self.on_event)(&CheckEvent::Waiting(format!(
                        "status of {instance}: {} after {:.1} s",
                        progress_label(&detail),
                        started.elapsed().as_secs_f64()
                    )));
                    let done = detail.status.is_terminal();
                    details.push(detail);
                    if done || started.elapsed() > self.options.wait {
                        break;
                    }
                }
                Ok(other) => {
                    failure = Some(format!("status returned {other:?}"));
                    break;
                }
                Err(error) => {
                    failure = Some(format!("status failed: {}", said(&error)));
                    break;
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let ended = details.last().map(|d| d.status).filter(|s| s.is_terminal());
        let mut repeats = Vec::new();
        if ended.is_some() {
            for _ in 0..TERMINAL_REPEATS {
                tokio::time::sleep(TERMINAL_REPEAT_INTERVAL).await;
                let invocation = self
                    .call(
                        Operation::Status {
                            instance_id: instance.to_owned(),
                        },
                        None,
                    )
                    .await;
                repeats.push(invocation.result);
            }
        }

        let status_calls: Vec<&Call> = self.calls[first_call..].iter().collect();
        let read_only = judge_read_only(&status_calls);
        self.verdict(STATUS_READ_ONLY, read_only);

        let progress = match failure {
            Some(failure) => Err(failure),
            None => judge_progress(&details, started.elapsed(), self.options.wait),
        };
        self.verdict(STATUS_PROGRESS, progress);

        match ended {
            None => self.judge(
                STATUS_TERMINAL,
                Outcome::NotJudged,
                "no terminal status was reached, so there was none to see stay",
            ),
            Some(status) => {
                let mut verdict = Ok(format!(
                    "{} more status calls over {} ms after {} all said {}",
                    TERMINAL_REPEATS,
                    TERMINAL_REPEATS as u128 * TERMINAL_REPEAT_INTERVAL.as_millis(),
                    progress_label(details.last().expect("a terminal detail")),
                    status_name(status)
                ));
                for (i, result) in repeats.iter().enumerate() {
                    match result {
                        Ok(Output::Status(detail)) if detail.status == status => {}
                        Ok(Output::Status(detail)) => {
                            verdict = Err(format!(
                                "after {}, status call {} said {}",
                                status_name(status),
                                i + 1,
                                progress_label(detail)
                            ));
                            break;
                        }
                        Ok(other) => {
                            verdict = Err(format!("status returned {other:?}"));
                            break;
                        }
                        Err(error) => {
                            verdict = Err(format!(
                                "after {}, status call {} failed: {}",
                                status_name(status),
                                i + 1,
                                said(error)
                            ));
                            break;
                        }
                    }
                }
                self.verdict(STATUS_TERMINAL, verdict);
            }
        }
        ended
    }

    async fn credentials(&mut self, instance: &str, ended: Option<Status>) -> Option<Credential> {
        if ended != Some(Status::Success) {
            let why = match ended {
                Some(status) => format!(
                    "the resource ended {}, so there were no credentials to ask for",
                    status_name(status)
                ),
                None => "the resource never finished provisioning, so there were no credentials to ask for".to_owned(),
            };
            self.judge(CREDENTIALS_EPHEMERAL, Outcome::NotJudged, why);
            return None;
        }
        let invocation = self
            .call(
                Operation::Credentials {
                    instance_id: instance.to_owned(),
                },
                None,
            )
            .await;
        let (verdict, credential) = match invocation.result {
            Ok(Output::Credential(credential)) => {
                (judge_credential(&credential, now_ms()), Some(credential))
            }
            Ok(other) => (Err(format!("credentials returned {other:?}")), None),
            Err(error) => (Err(format!("credentials failed: {}", said(&error))), None),
        };
        self.verdict(CREDENTIALS_EPHEMERAL, verdict);
        credential
    }

    async fn optional(&mut self, instance: &str, credential: Option<Credential>) {
        let optional = self.adapter.info().optional;
        let id = || instance.to_owned();
        if optional.lifecycle {
            let paused = self
                .call(Operation::Pause { instance_id: id() }, None)
                .await;
            let resumed = self
                .call(Operation::Resume { instance_id: id() }, None)
                .await;
            let verdict = match (paused.result, resumed.result) {
                (Ok(Output::Status(p)), Ok(Output::Status(r))) => Ok(format!(
                    "pause said {}, resume said {}",
                    progress_label(&p),
                    progress_label(&r)
                )),
                (Err(error), _) => Err(format!("pause failed: {}", said(&error))),
                (_, Err(error)) => Err(format!("resume failed: {}", said(&error))),
                (p, r) => Err(format!("pause returned {p:?}, resume returned {r:?}")),
            };
            self.verdict(LIFECYCLE, verdict);
        } else {
            self.judge(LIFECYCLE, Outcome::Skip, "lifecycle is not exported");
        }
        if optional.costs {
            let estimate = self
                .call(Operation::EstimateCosts { instance_id: id() }, None)
                .await;
            let verdict = match estimate.result {
                Ok(Output::CostEstimate(c)) => Ok(format!(
                    "{} {} per hour, {} per month",
                    c.currency, c.hourly, c.monthly
                )),
                Ok(other) => Err(format!("estimate-costs returned {other:?}")),
                Err(error) => Err(format!("estimate-costs failed: {}", said(&error))),
            };
            self.verdict(COSTS, verdict);
        } else {
            self.judge(COSTS, Outcome::Skip, "costs is not exported");
        }
        if optional.rotation {
            let rotated = self
                .call(Operation::RotateCredentials { instance_id: id() }, None)
                .await;
            let verdict = match rotated.result {
                Ok(Output::Credential(new)) => {
                    judge_credential(&new, now_ms()).and_then(|ok| match (&credential, &new) {
                        (
                            Some(Credential::Ephemeral { values: old, .. }),
                            Credential::Ephemeral { values, .. },
                        ) if old == values => {
                            Err("rotate-credentials returned the same values as credentials"
                                .to_owned())
                        }
                        _ => Ok(format!("new credentials: {ok}")),
                    })
                }
                Ok(other) => Err(format!("rotate-credentials returned {other:?}")),
                Err(error) => Err(format!("rotate-credentials failed: {}", said(&error))),
            };
            self.verdict(ROTATION, verdict);
        } else {
            self.judge(ROTATION, Outcome::Skip, "rotation is not exported");
        }
    }

    async fn faults(&mut self) {
        for (n, fault) in Fault::ALL.into_iter().enumerate() {
            let rule = match fault {
                Fault::RateLimited => FAULT_RATE_LIMITED,
                Fault::ServerError => FAULT_SERVER_ERROR,
                Fault::ResetAfterProcessing => FAULT_RESET,
                Fault::SlowAfterProcessing => FAULT_SLOW,
                Fault::Unauthorized => FAULT_UNAUTHORIZED,
            };
            let (outcome, evidence) = match self.not_applicable(rule) {
                Some(reason) => (Outcome::Skip, reason.to_owned()),
                None => self.fault(fault, n).await,
            };
            self.judge(rule, outcome, evidence);
        }
    }

    /// Create, status and destroy under `fault`; a create retried without it must make
    /// exactly one resource. A rule whose claim rests on the resource count is not judged
    /// when the provider cannot be counted: a retry that makes a second resource looks
    /// exactly like one that does not from the adapter's side.
    async fn fault(&mut self, fault: Fault, n: usize) -> (Outcome, String) {
        let key = self.key(&format!("fault-{}", n + 1));
        let before = self.resources().await;
        let faulted = self.create(&key, Some(fault)).await;
        let seen = self.last_seen();
        if !seen.iter().any(|s| s.faulted) {
            return (Outcome::NotJudged, nothing_to_fault(fault, &faulted, &seen));
        }
        let mut notes = Vec::new();
        if let Err(problem) = judge_fault("create", fault, &faulted, &seen, &mut notes) {
            return (Outcome::Fail, problem);
        }
        let retried = self.create(&key, None).await;
        let instance = match &retried.result {
            Ok(Output::Provisioned(result)) => result.instance_id.clone(),
            Ok(other) => {
                return (
                    Outcome::Fail,
                    format!("the retried create returned {other:?}"),
                );
            }
            Err(error) => {
                return (
                    Outcome::Fail,
                    format!(
                        "create under {}, then retried without it: {}",
                        fault.describe(),
                        why_failed(&retried, &self.last_seen(), error)
                    ),
                );
            }
        };
        // A create done despite the fault left a host record: the retry is answered from
        // it, and only the count can show what the faulted call itself made.
        let replayed = if retried.receipt.idempotency == Some("replayed") {
            " (from the host's record: the faulted create had succeeded)"
        } else {
            ""
        };
        let after = self.resources().await;
        let uncounted = match (before, after) {
            (Ok(before), Ok(after)) if after != before + 1 => {
                return (
                    Outcome::Fail,
                    format!(
                        "create under {} and its retry with the same key left {} new resources at the provider (expected 1); {}",
                        fault.describe(),
                        after as i64 - before as i64,
                        notes.join("; ")
                    ),
                );
            }
            (Ok(_), Ok(_)) => {
                notes.push(format!("retry gave {instance}{replayed}, 1 resource"));
                None
            }
            (Err(why), _) | (_, Err(why)) => {
                notes.push(format!("retry gave {instance}{replayed}"));
                Some(why)
            }
        };
        let id = || instance.clone();
        let status = self
            .call(Operation::Status { instance_id: id() }, Some(fault))
            .await;
        let seen = self.last_seen();
        if let Err(problem) = judge_fault("status", fault, &status, &seen, &mut notes) {
            return (Outcome::Fail, problem);
        }
        let destroy = self
            .call(Operation::Destroy { instance_id: id() }, Some(fault))
            .await;
        let seen = self.last_seen();
        if let Err(problem) = judge_fault("destroy", fault, &destroy, &seen, &mut notes) {
            return (Outcome::Fail, problem);
        }
        let cleanup = self
            .call(Operation::Destroy { instance_id: id() }, None)
            .await;
        if let Err(error) = &cleanup.result {
            return (
                Outcome::Fail,
                format!(
                    "destroy of {instance} without a fault, after one under {}, failed: {}",
                    fault.describe(),
                    why_failed(&cleanup, &self.last_seen(), error)
                ),
            );
        }
        match uncounted {
            None => (Outcome::Pass, notes.join("; ")),
            Some(why) if rests_on_count(fault) => (
                Outcome::NotJudged,
                format!(
                    "resources not counted, so whether the create under {} and its retry made one resource or two was not measured: {why}; {}",
                    fault.describe(),
                    notes.join("; ")
                ),
            ),
            Some(why) => {
                notes.push(format!("resources not counted ({why})"));
                (Outcome::Pass, notes.join("; "))
            }
        }
    }

    /// The requests the last call sent, as the stand-in saw them.
    fn last_seen(&self) -> Vec<SeenRequest> {
        self.calls
            .last()
            .map(|c| c.seen.clone())
            .unwrap_or_default()
    }

    async fn destroy_rules(&mut self, instance: &str) {
        let id = || instance.to_owned();
        let first = self
            .call(Operation::Destroy { instance_id: id() }, None)
            .await;
        let first_seen = self.last_seen();
        let forgot = self.runtime.forget_records(self.adapter.name()).await;
        let second = self
            .call(Operation::Destroy { instance_id: id() }, None)
            .await;
        let second_seen = self.last_seen();
        let (outcome, evidence) = match (&first.result, forgot, &second.result) {
            (Err(error), _, _) => (
                Outcome::Fail,
                format!("destroy failed: {}", why_failed(&first, &first_seen, error)),
            ),
            (_, Err(e), _) => (
                Outcome::NotJudged,
                format!(
                    "cannot set the host's record aside, so a second destroy would not reach the adapter: {e}"
                ),
            ),
            (_, _, _) if !second.receipt.instantiated => (
                Outcome::NotJudged,
                format!(
                    "the second destroy was answered by the host ({}), not the adapter, so destroying a gone resource was not seen",
                    second
                        .receipt
                        .idempotency
                        .unwrap_or("refused before the adapter ran")
                ),
            ),
            (_, _, Err(error)) => (
                Outcome::Fail,
                format!(
                    "the second destroy of {instance} failed: {}",
                    why_failed(&second, &second_seen, error)
                ),
            ),
            (Ok(_), Ok(_), Ok(_)) => (
                Outcome::Pass,
                format!(
                    "destroyed {instance} twice; the second call reached the adapter (host record set aside)"
                ),
            ),
        };
        self.judge(DESTROY_IDEMPOTENT, outcome, evidence);

        let after = self
            .call(Operation::Status { instance_id: id() }, None)
            .await;
        let verdict = match after.result {
            Ok(Output::Status(detail))
                if matches!(detail.status, Status::Cancelled | Status::Failed) =>
            {
                Ok(format!("status said {}", progress_label(&detail)))
            }
            Ok(Output::Status(detail)) => Err(format!(
                "status after destroy said {}; a destroyed resource is CANCELLED or FAILED, or not found (PERMANENT)",
                progress_label(&detail)
            )),
            Ok(other) => Err(format!("status returned {other:?}")),
            Err(error)
                if matches!(
                    adapter_code(&error),
                    ErrorCode::Permanent | ErrorCode::Validation
                ) && error.origin == ErrorOrigin::Adapter =>
            {
                Ok(format!("status answered {}", said(&error)))
            }
            Err(error) => Err(format!(
                "status after destroy answered {}; expected CANCELLED/FAILED, or PERMANENT/VALIDATION for a resource that is gone",
                said(&error)
            )),
        };
        self.verdict(STATUS_AFTER_DESTROY, verdict);
    }

    fn errors(&mut self) {
        let mut count = 0;
        let mut verdict = Ok(());
        for call in &self.calls {
            let Err(error) = &call.invocation.result else {
                continue;
            };
            count += 1;
            let during = match call.fault {
                Some(fault) => format!("{} under {}", call.operation, fault.describe()),
                None => call.operation.to_owned(),
            };
            let problem = match error.origin {
                ErrorOrigin::Adapter | ErrorOrigin::Host if !says_something(error) => {
                    Some(format!(
                        "{during} returned {} with the message {:?}, which says nothing about what went wrong",
                        error.error_code.as_str(),
                        error.message
                    ))
                }
                ErrorOrigin::Adapter | ErrorOrigin::Host => None,
                ErrorOrigin::Limit(_) => {
                    Some(format!("{during} was stopped by a limit: {}", said(error)))
                }
                ErrorOrigin::Trap => Some(format!("{during} trapped: {}", said(error))),
                ErrorOrigin::Contract => {
                    Some(format!("{during} broke the contract: {}", said(error)))
                }
            };
            if let Some(problem) = problem {
                verdict = Err(problem);
                break;
            }
        }
        if verdict.is_ok() && count == 0 {
            self.judge(
                ERRORS,
                Outcome::NotJudged,
                format!(
                    "none of {} calls failed, so there was no error to judge",
                    self.calls.len()
                ),
            );
            return;
        }
        let verdict = verdict.map(|_| {
            format!(
                "{count} errors in {} calls, each with a code and a message",
                self.calls.len()
            )
        });
        self.verdict(ERRORS, verdict);
    }

    fn no_secret(&mut self) {
        let granted = self.adapter.policy().secrets.len();
        if granted == 0 {
            self.judge(
                NO_SECRET,
                Outcome::Skip,
                "the policy grants no secret, so none can leak",
            );
            return;
        }
        // Where, by operation, in the order first seen: (operation, place, calls).
        let mut places: Vec<(&'static str, String, usize)> = Vec::new();
        for call in &self.calls {
            let mut found = leak_places(&call.invocation);
            let redactions = call.invocation.receipt.redactions;
            if found.is_empty() && redactions > 0 {
                found.push(format!(
                    "{redactions} replaced in a part of the output the checker does not see"
                ));
            }
            for place in found {
                match places
                    .iter_mut()
                    .find(|(op, at, _)| *op == call.operation && *at == place)
                {
                    Some((_, _, calls)) => *calls += 1,
                    None => places.push((call.operation, place, 1)),
                }
            }
        }
        let leaks: Vec<String> = places
            .iter()
            .map(|(operation, place, calls)| match calls {
                1 => format!("{operation}: {place} (1 call)"),
                n => format!("{operation}: {place} ({n} calls)"),
            })
            .collect();
        if leaks.is_empty() {
            let revealed = self
                .adapter
                .policy()
                .secrets
                .values()
                .any(|secret| secret.get_ref().reveal);
            self.judge(
                NO_SECRET,
                Outcome::Pass,
                format!(
                    "{granted} granted secret(s) in no output of {} calls (results, errors, logs, progress, stdio){}",
                    self.calls.len(),
                    if revealed {
                        "; a revealed secret is found only in the encodings the leak guard knows (see secrets.reveal)"
                    } else {
                        ""
                    }
                ),
            );
        } else {
            self.judge(
                NO_SECRET,
                Outcome::Fail,
                format!(
                    "the adapter put a granted secret into its output, at (JSON pointers into the call's result or error): {}",
                    leaks.join("; ")
                ),
            );
        }
    }

    fn resource_use(&mut self) {
        let mut rows: Vec<(&'static str, u64, u64, u64, u64, u64, u64)> = Vec::new();
        for call in self.calls.iter().filter(|c| c.fault.is_none()) {
            let r = &call.invocation.receipt;
            if !r.instantiated {
                continue;
            }
            let wall_ms = r.wall_time_us / 1000;
            match rows.iter_mut().find(|row| row.0 == call.operation) {
                Some(row) => {
                    row.1 = row.1.max(r.fuel_consumed);
                    row.3 = row.3.max(r.memory_peak_bytes);
                    row.5 = row.5.max(wall_ms);
                }
                None => rows.push((
                    call.operation,
                    r.fuel_consumed,
                    r.fuel_limit,
                    r.memory_peak_bytes,
                    r.memory_limit_bytes,
                    wall_ms,
                    r.deadline_ms,
                )),
            }
        }
        let share = |used: u64, limit: u64| {
            if limit == 0 {
                0.0
            } else {
                used as f64 / limit as f64
            }
        };
        let mut too_close = Vec::new();
        let lines: Vec<String> = rows
            .iter()
            .map(|(op, fuel, fuel_limit, mem, mem_limit, wall, deadline)| {
                for (what, used, limit) in [
                    ("fuel", *fuel, *fuel_limit),
                    ("memory", *mem, *mem_limit),
                    ("wall time", *wall, *deadline),
                ] {
                    if share(used, limit) >= CLOSE_TO_LIMIT {
                        too_close.push(format!(
                            "{op} used {:.0}% of its {what} limit",
                            share(used, limit) * 100.0
                        ));
                    }
                }
                format!(
                    "{op}: fuel {fuel} of {fuel_limit} ({:.2}%), memory {:.1} of {} MiB, wall {wall} of {deadline} ms",
                    share(*fuel, *fuel_limit) * 100.0,
                    *mem as f64 / 1048576.0,
                    mem_limit / 1048576,
                )
            })
            .collect();
        if rows.is_empty() {
            self.judge(
                RESOURCES,
                Outcome::NotJudged,
                "no call without a fault ran the adapter, so nothing was measured",
            );
        } else if too_close.is_empty() {
            self.judge(RESOURCES, Outcome::Pass, lines.join("\n"));
        } else {
            self.judge(
                RESOURCES,
                Outcome::Fail,
                format!("{}\n{}", too_close.join("; "), lines.join("\n")),
            );
        }
    }
}

/// Whether an error message tells its reader something: not empty, not just a code or a
/// bare "error".
fn says_something(error: &AdapterError) -> bool {
    let message = error.message.trim().to_ascii_lowercase();
    let empty_words = [
        "error", "failed", "failure", "err", "fail", "unknown", "todo",
    ];
    let codes = [
        "validation",
        "retryable",
        "permanent",
        "auth",
        "limit",
        "internal",
    ];
    message.chars().filter(|c| c.is_alphanumeric()).count() >= 4
        && !empty_words.contains(&message.as_str())
        && !codes.contains(&message.as_str())
}

/// The path of the stats endpoint the checker asks an external provider for its count.
pub(crate) const STATS_PATH: &str = "/_admin/stats";

/// `GET {origin}/_admin/stats` → its `resources`, a non-negative integer (as fakecloud
/// answers it), or why the count cannot be had.
async fn admin_resource_count(origin: &url::Url) -> Result<u64, String> {
    let url = origin
        .join(STATS_PATH)
        .map_err(|e| format!("{origin} has no {STATS_PATH}: {e}"))?;
    let cannot = |why: String| {
        format!(
            "GET {url} {why}, so the provider cannot be counted (the endpoint is described in docs/authors-guide.md, section 9)"
        )
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| cannot(format!("could not be sent ({e})")))?;
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| cannot(format!("failed: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(cannot(format!("answered {status}")));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| cannot(format!("broke off: {e}")))?;
    let stats: Value = serde_json::from_slice(&body).map_err(|e| {
        cannot(format!(
            "answered {status} with a body that is not JSON ({e})"
        ))
    })?;
    stats
        .get("resources")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            cannot(format!(
                "answered {status} without a non-negative integer `resources` field"
            ))
        })
}

/// Whether the rule for `fault` claims something about the resources left at the provider
/// (its title says "one resource" or "never two"); the 401 rule only claims a code.
fn rests_on_count(fault: Fault) -> bool {
    !matches!(fault, Fault::Unauthorized)
}

/// Why a create under `fault` gave the fault nothing to hit: the host refused its requests
/// (a denial, whole), it sent none, or only reads where the fault waits for a write.
fn nothing_to_fault(fault: Fault, invocation: &Invocation, seen: &[SeenRequest]) -> String {
    let refused = refusal(invocation, seen);
    match refused {
        Some(Refusal::Denied(denial)) => format!(
            "create's request never reached the provider, so there was nothing to fault: denied by the policy: {denial}"
        ),
        Some(Refusal::Unexplained(count)) => format!(
            "the host refused {count} request(s) of create before they reached the provider (the adapter's answer: {}), so there was nothing to fault",
            match &invocation.result {
                Err(error) => said(error),
                Ok(_) => "success".to_owned(),
            }
        ),
        None if seen.is_empty() => {
            "create made no HTTP request, so there was nothing to fault".to_owned()
        }
        None => format!(
            "create sent {} but no mutating request, and the fault ({}) hits the first mutating request of a create",
            seen.iter()
                .map(SeenRequest::label)
                .collect::<Vec<_>>()
                .join(", "),
            fault.describe()
        ),
    }
}

/// Where a granted secret showed up in one call's output: a JSON pointer into the result
/// (`/connection/apiToken`) or the error (`/message`), or the log record, progress report
/// or stream. Found from the runtime's own account when it fails a call for returning a
/// secret ("adapter tried to return the secret "NAME" in /connection/apiToken"), else by
/// the leak guard's marker in what it kept. Only searched when the guard replaced
/// something, so an adapter that writes the marker itself is not taken for a leak.
fn leak_places(invocation: &Invocation) -> Vec<String> {
    let mut places = Vec::new();
    if let Err(error) = &invocation.result
        && let Some(field) = returned_secret_field(&error.message)
    {
        places.push(field);
    }
    if invocation.receipt.redactions == 0 {
        return places;
    }
    let marker = airlock_core::guard::REDACTED;
    match &invocation.result {
        Ok(output) => marked_pointers(&output.to_json(), &mut String::new(), &mut places),
        Err(error) => {
            let document = json!({
                "errorCode": error.error_code.as_str(),
                "message": error.message,
                "raw": error.raw,
            });
            marked_pointers(&document, &mut String::new(), &mut places);
        }
    }
    for (i, record) in invocation.logs.iter().enumerate() {
        if record.message.contains(marker)
            || record
                .fields
                .iter()
                .any(|(k, v)| k.contains(marker) || v.contains(marker))
        {
            places.push(format!("log record {} ({})", i + 1, record.level));
        }
    }
    for (i, report) in invocation.progress.iter().enumerate() {
        if report
            .message
            .as_deref()
            .is_some_and(|m| m.contains(marker))
        {
            places.push(format!("progress report {}", i + 1));
        }
    }
    for (name, text) in [
        ("stdout", &invocation.stdout),
        ("stderr", &invocation.stderr),
    ] {
        if text.contains(marker) {
            places.push(name.to_owned());
        }
    }
    places.dedup();
    places
}

/// The field the runtime names when it fails a call for returning a granted secret
/// (`adapter tried to return the secret "NAME" in /connection/apiToken`), as a JSON
/// pointer; a dotted path (`connection.apiToken`) is turned into one.
fn returned_secret_field(message: &str) -> Option<String> {
    let after = &message[message.find("tried to return the secret")?..];
    let field = after[after.find(" in ")? + 4..]
        .split_whitespace()
        .next()?
        .trim_end_matches(['.', ',', ';', ':', ')', '"', '\''])
        .trim_start_matches(['"', '\'', '(']);
    if field.is_empty() {
        return None;
    }
    Some(if field.starts_with('/') {
        field.to_owned()
    } else {
        format!("/{}", field.replace('.', "/"))
    })
}

/// Push the JSON pointer (RFC 6901) of every string or key under `value` that holds the
/// leak guard's marker.
fn marked_pointers(value: &Value, pointer: &mut String, found: &mut Vec<String>) {
    let marker = airlock_core::guard::REDACTED;
    match value {
        Value::String(text) if text.contains(marker) => found.push(if pointer.is_empty() {
            "/".to_owned()
        } else {
            pointer.clone()
        }),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                marked_pointers(item, pointer, found);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                if key.contains(marker) {
                    found.push(pointer.clone());
                }
                marked_pointers(item, pointer, found);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// `secrets.reveal`: a warning per secret the policy lets the adapter read.
fn judge_reveal(policy: &Policy) -> (Outcome, String) {
    let revealed: Vec<String> = policy
        .secrets
        .iter()
        .filter(|(_, secret)| secret.get_ref().reveal)
        .map(|(name, secret)| {
            format!(
                "{name:?} ({})",
                policy.locate(secret.span(), &format!("[secrets.{name}]"))
            )
        })
        .collect();
    if revealed.is_empty() {
        let granted = policy.secrets.len();
        return (
            Outcome::Pass,
            format!(
                "{granted} granted secret(s), none with reveal = true: the adapter holds handles, the host places the values"
            ),
        );
    }
    (
        Outcome::Warn,
        format!(
            "reveal = true on {}: the value enters the sandbox, where the adapter can keep it, send it to any URL the policy allows or write it in a form the leak guard does not know. Grant it as a handle (reveal = false) and place it with a secret header, unless the adapter must compute with the value (e.g. sign requests).",
            revealed.join(", ")
        ),
    )
}

fn judge_repeat(
    key: &str,
    first: &ProvisionResult,
    again: &ProvisionResult,
) -> Result<String, String> {
    if again.instance_id != first.instance_id {
        return Err(format!(
            "the repeat with key {key:?} returned instance {:?}, the first {:?}: a retried create would make a second resource",
            again.instance_id, first.instance_id
        ));
    }
    if !first.created {
        return Err("the first create with a fresh key said created=false".to_owned());
    }
    if again.created {
        return Err(format!(
            "the repeat with key {key:?} said created=true; it must say created=false"
        ));
    }
    for (which, result) in [("first", first), ("repeat", again)] {
        if result.idempotency_key.as_deref() != Some(key) {
            return Err(format!(
                "the {which} create echoed idempotencyKey {:?}, not {key:?}",
                result.idempotency_key
            ));
        }
    }
    Ok(format!(
        "instanceId {:?} both times, created true then false, key echoed (the repeat reached the adapter: the host's record was set aside)",
        first.instance_id
    ))
}

fn judge_read_only(calls: &[&Call]) -> Result<String, String> {
    let mut requests = 0;
    for (i, call) in calls.iter().enumerate() {
        let writes = call.invocation.receipt.state_writes;
        if writes > 0 {
            return Err(format!(
                "status call {} wrote state {writes} time(s)",
                i + 1
            ));
        }
        if let Some(request) = call.seen.iter().find(|s| s.mutating) {
            return Err(format!("status call {} sent {}", i + 1, request.label()));
        }
        requests += call.seen.len();
    }
    Ok(format!(
        "{} status calls: no state writes; {requests} request(s), none mutating",
        calls.len()
    ))
}

fn judge_progress(
    details: &[StatusDetail],
    took: Duration,
    wait: Duration,
) -> Result<String, String> {
    let mut path: Vec<String> = Vec::new();
    for pair in details.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if rank(after.status) < rank(before.status) {
            return Err(format!(
                "status went back from {} to {}",
                progress_label(before),
                progress_label(after)
            ));
        }
        if let (Some(b), Some(a)) = (&before.progress, &after.progress)
            && (a.current < b.current
                || (a.current as f64 / a.total.max(1) as f64)
                    < (b.current as f64 / b.total.max(1) as f64))
        {
            return Err(format!(
                "progress went backwards: {} then {}",
                progress_label(before),
                progress_label(after)
            ));
        }
    }
    for detail in details {
        let label = progress_label(detail);
        if path.last() != Some(&label) {
            path.push(label);
        }
    }
    match details.last() {
        Some(last) if last.status.is_terminal() => Ok(format!(
            "{} in {:.1} s over {} calls",
            path.join(" → "),
            took.as_secs_f64(),
            details.len()
        )),
        _ => Err(format!(
            "no terminal status after {} s: {}",
            wait.as_secs(),
            path.join(" → ")
        )),
    }
}

fn judge_credential(credential: &Credential, now_ms: u64) -> Result<String, String> {
    match credential {
        Credential::Ephemeral {
            values,
            expires_at,
            expires_at_ms,
        } => {
            if values.is_empty() {
                return Err("ephemeral credentials with no values".to_owned());
            }
            if *expires_at_ms <= now_ms {
                return Err(format!("credentials expired already ({expires_at})"));
            }
            let fields: Vec<&String> = values.keys().collect();
            Ok(format!(
                "ephemeral {fields:?}, expires {expires_at} (in {} s)",
                (expires_at_ms - now_ms) / 1000
            ))
        }
        Credential::Reference {
            manager, locator, ..
        } => Ok(format!("a reference: {manager:?} {locator}")),
    }
}

/// Judge one call under `fault`. Notes what happened; `Err` says what broke the rule.
fn judge_fault(
    operation: &str,
    fault: Fault,
    invocation: &Invocation,
    seen: &[SeenRequest],
    notes: &mut Vec<String>,
) -> Result<(), String> {
    if !seen.iter().any(|s| s.faulted) {
        notes.push(format!("{operation}: no request to fault"));
        return Ok(());
    }
    let expected = match fault {
        Fault::RateLimited => ErrorCode::Limit,
        Fault::Unauthorized => ErrorCode::Auth,
        Fault::ServerError | Fault::ResetAfterProcessing | Fault::SlowAfterProcessing => {
            ErrorCode::Retryable
        }
    };
    let may_succeed = matches!(
        fault,
        Fault::ResetAfterProcessing | Fault::SlowAfterProcessing
    );
    match &invocation.result {
        Ok(_) if may_succeed => {
            notes.push(format!(
                "{operation}: done despite the fault (retried within the call)"
            ));
            Ok(())
        }
        Ok(_) => Err(format!(
            "{operation} under {} succeeded; every request was answered {}, so it must fail with {}",
            fault.describe(),
            fault.describe(),
            expected.as_str()
        )),
        Err(error) if error.origin != ErrorOrigin::Adapter => Err(format!(
            "{operation} under {}: {}",
            fault.describe(),
            said(error)
        )),
        Err(error) => {
            let chosen = adapter_code(error);
            if chosen != expected {
                let corrected = if chosen != error.error_code {
                    format!(" (the host corrected it to {})", error.error_code.as_str())
                } else {
                    String::new()
                };
                return Err(format!(
                    "{operation} under {}: the adapter answered {} {:?}{corrected}; expected {}",
                    fault.describe(),
                    chosen.as_str(),
                    error.message,
                    expected.as_str()
                ));
            }
            notes.push(format!("{operation}: {}", expected.as_str()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock::Progress;

    fn detail(status: Status, current: u64, total: u64) -> StatusDetail {
        StatusDetail {
            status,
            error_code: None,
            message: None,
            progress: Some(Progress { current, total }),
            raw: None,
        }
    }

    fn error(code: ErrorCode, message: &str) -> AdapterError {
        AdapterError {
            error_code: code,
            message: message.to_owned(),
            raw: None,
            origin: ErrorOrigin::Adapter,
        }
    }

    #[test]
    fn progress_must_move_forward_and_end() {
        let wait = Duration::from_secs(5);
        let took = Duration::from_millis(300);
        let good = [
            detail(Status::Pending, 0, 4),
            detail(Status::Running, 2, 4),
            detail(Status::Running, 2, 4),
            detail(Status::Success, 4, 4),
        ];
        assert_eq!(
            judge_progress(&good, took, wait).unwrap(),
            "PENDING 0/4 → RUNNING 2/4 → SUCCESS 4/4 in 0.3 s over 4 calls"
        );
        let backwards = [detail(Status::Running, 3, 4), detail(Status::Running, 1, 4)];
        assert_eq!(
            judge_progress(&backwards, took, wait).unwrap_err(),
            "progress went backwards: RUNNING 3/4 then RUNNING 1/4"
        );
        // Same current, larger total: the share went down.
        let rescaled = [detail(Status::Running, 2, 4), detail(Status::Running, 2, 8)];
        assert!(judge_progress(&rescaled, took, wait).is_err());
        let regressed = [detail(Status::Running, 1, 4), detail(Status::Pending, 1, 4)];
        assert_eq!(
            judge_progress(&regressed, took, wait).unwrap_err(),
            "status went back from RUNNING 1/4 to PENDING 1/4"
        );
        let unfinished = [detail(Status::Running, 1, 4)];
        assert_eq!(
            judge_progress(&unfinished, took, wait).unwrap_err(),
            "no terminal status after 5 s: RUNNING 1/4"
        );
    }

    #[test]
    fn error_messages_must_say_something() {
        for empty in ["VALIDATION", "error", "Failed", "x", " ", "unknown", "n/a"] {
            assert!(
                !says_something(&error(ErrorCode::Validation, empty)),
                "{empty:?}"
            );
        }
        for useful in [
            "config.region: unsupported region \"mars\"",
            "not found",
            "quota",
        ] {
            assert!(
                says_something(&error(ErrorCode::Validation, useful)),
                "{useful:?}"
            );
        }
    }

    #[test]
    fn credentials_must_be_live() {
        let now = 1_000_000;
        let live = Credential::Ephemeral {
            values: serde_json::Map::from_iter([("token".to_owned(), json!("t"))]),
            expires_at: "later".into(),
            expires_at_ms: now + 60_000,
        };
        assert_eq!(
            judge_credential(&live, now).unwrap(),
            "ephemeral [\"token\"], expires later (in 60 s)"
        );
        let expired = Credential::Ephemeral {
            values: serde_json::Map::from_iter([("token".to_owned(), json!("t"))]),
            expires_at: "earlier".into(),
            expires_at_ms: now - 1,
        };
        assert_eq!(
            judge_credential(&expired, now).unwrap_err(),
            "credentials expired already (earlier)"
        );
    }

    #[test]
    fn a_repeat_must_return_the_same_instance_and_say_it_is_not_new() {
        let result = |id: &str, created: bool, key: Option<&str>| ProvisionResult {
            instance_id: id.into(),
            connection: serde_json::Map::new(),
            metadata: None,
            created,
            idempotency_key: key.map(str::to_owned),
        };
        let first = result("i-1", true, Some("k"));
        assert!(judge_repeat("k", &first, &result("i-1", false, Some("k"))).is_ok());
        assert!(
            judge_repeat("k", &first, &result("i-2", false, Some("k")))
                .unwrap_err()
                .contains("would make a second resource")
        );
        assert!(
            judge_repeat("k", &first, &result("i-1", true, Some("k")))
                .unwrap_err()
                .contains("said created=true")
        );
        assert!(
            judge_repeat("k", &first, &result("i-1", false, None))
                .unwrap_err()
                .contains("echoed idempotencyKey None")
        );
    }

    #[test]
    fn a_leak_is_named_by_the_json_pointer_of_the_marked_string_or_key() {
        let output = json!({
            "instanceId": "db-1",
            "connection": { "apiToken": "[REDACTED]", "a/b~c": "x [REDACTED] y", "host": "h" },
            "metadata": { "tags": ["ok", "[REDACTED]"], "[REDACTED]": 1 },
        });
        let mut found = Vec::new();
        marked_pointers(&output, &mut String::new(), &mut found);
        found.sort();
        assert_eq!(
            found,
            [
                "/connection/apiToken",
                "/connection/a~1b~0c",
                "/metadata/[REDACTED]",
                "/metadata/tags/1"
            ]
        );
        let mut found = Vec::new();
        marked_pointers(&json!("[REDACTED]"), &mut String::new(), &mut found);
        assert_eq!(found, ["/"]);
    }

    #[test]
    fn the_runtime_s_account_of_a_returned_secret_gives_the_field() {
        assert_eq!(
            returned_secret_field(
                r#"adapter tried to return the secret "fakecloud-token" in /connection/apiToken"#
            )
            .as_deref(),
            Some("/connection/apiToken")
        );
        assert_eq!(
            returned_secret_field(
                r#"adapter tried to return the secret "t" in connection.apiToken."#
            )
            .as_deref(),
            Some("/connection/apiToken")
        );
        assert_eq!(returned_secret_field("provider answered HTTP 500"), None);
    }

    #[test]
    fn a_denial_is_quoted_whole_from_the_request_it_names() {
        let denial = "POST https://api.x.example/v1/db denied: the [[http.allow]] entry on line 3 (`https://api.x.example/v2/`) allows paths under /v2/, not /v1/db";
        assert_eq!(denial_in(denial), Some(denial));
        assert_eq!(denial_in(&format!("create failed: {denial}")), Some(denial));
        assert_eq!(denial_in("provider answered HTTP 403: denied"), None);
    }

    #[test]
    fn reveal_warns_for_each_revealed_secret_and_names_its_line() {
        let policy = Policy::from_toml(
            "[secrets.plain]\nsource = \"env:A\"\n\n[secrets.signing-key]\nsource = \"env:B\"\nreveal = true\n",
            "p.toml",
        )
        .unwrap();
        let (outcome, evidence) = judge_reveal(&policy);
        assert_eq!(outcome, Outcome::Warn);
        assert!(
            evidence.starts_with(
                "reveal = true on \"signing-key\" (line 4): the value enters the sandbox, "
            ),
            "{evidence}"
        );
        assert_eq!(judge_reveal(&Policy::default()).0, Outcome::Pass);
    }

    #[test]
    fn the_adapter_s_own_code_is_judged_not_the_host_s_correction() {
        let mut corrected = error(ErrorCode::Limit, "slow down");
        corrected.raw = Some(json!({ "adapterErrorCode": "RETRYABLE", "providerStatus": 429 }));
        assert_eq!(adapter_code(&corrected), ErrorCode::Retryable);
        assert_eq!(adapter_code(&error(ErrorCode::Auth, "no")), ErrorCode::Auth);
    }
}
