//! The rules, and the run that judges them in order.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::provider::{Fault, SeenRequest, StandIn};
use super::recording::Recording;
use super::{CheckEvent, CheckOptions, CheckSecrets, Outcome, ProviderChoice, Report, RuleResult};
use crate::error::Error;
use crate::policy::Policy;
use crate::{
    Adapter, AdapterError, Credential, ErrorCode, ErrorOrigin, Invocation, Operation, Output,
    ProvisionResult, Runtime, RuntimeConfig, Status, StatusDetail,
};

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
const RESOURCES: Rule = (
    "resources",
    "fuel, memory and wall time per operation stay under 90% of the policy's limits",
);

/// Every rule, in the order the checker runs them.
pub const RULES: [Rule; 21] = [
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
    on_event: &'a mut (dyn FnMut(&CheckEvent) + Send),
    _data: tempfile::TempDir,
}

fn short(error: &AdapterError) -> String {
    let message: String = error.message.chars().take(160).collect();
    format!("{} {message:?}", error.error_code.as_str())
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
        let mut sources = crate::capabilities::secrets::source::default_sources();
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
                &crate::runtime::name_from_stem(&stem),
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
                    } else {
                        (Outcome::Skip, "the adapter did not load".to_owned())
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

    fn skip_all(&mut self, rules: &[Rule], why: &str) {
        for rule in rules {
            self.judge(*rule, Outcome::Skip, why);
        }
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

    /// The provider's resource count, when it can be known.
    async fn resources(&self) -> Option<u64> {
        let live = match (&self.provider, &self.cloud) {
            (ProviderChoice::BuiltIn, Some(cloud)) => Some(cloud.resource_count() as u64),
            (ProviderChoice::External(url), _) => admin_resource_count(url).await,
            _ => None,
        };
        self.stand_in.resources(live)
    }

    async fn all_rules(&mut self) {
        self.world();
        self.validate_config().await;
        if self.results.last().map(|r| r.outcome) != Some(Outcome::Pass) {
            let rest: Vec<Rule> = RULES[3..18].to_vec();
            self.skip_all(
                &rest,
                "the valid config was rejected, so no other operation can be judged",
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
                    let why = "create failed, so there is no resource to judge";
                    self.skip_all(
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
                    self.skip_all(&[DESTROY_IDEMPOTENT, STATUS_AFTER_DESTROY], why);
                }
            }
        }
        self.errors();
        self.no_secret();
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
                        short(&error)
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
                short(&error)
            )),
        };
        self.verdict(VALIDATE_ACCEPTS, verdict);
    }

    async fn create_idempotent(&mut self) -> Option<String> {
        let key = self.key("idempotent");
        let first = match self.create(&key, None).await.result {
            Ok(Output::Provisioned(result)) => result,
            Ok(other) => {
                self.judge(
                    CREATE_IDEMPOTENT,
                    Outcome::Fail,
                    format!("create returned {other:?}"),
                );
                return None;
            }
            Err(error) => {
                self.judge(
                    CREATE_IDEMPOTENT,
                    Outcome::Fail,
                    format!("create failed: {}", short(&error)),
                );
                return None;
            }
        };
        // The host answers a repeated key from its own record; set the record aside so
        // the repeat reaches the adapter, as it would after the record expired.
        let forgot = self.runtime.forget_records(self.adapter.name()).await;
        let second = self.create(&key, None).await;
        let verdict = match (&forgot, &second.result) {
            (Err(e), _) => Err(format!("cannot set the host's record aside: {e}")),
            (_, Err(error)) => Err(format!("the repeated create failed: {}", short(error))),
            (_, Ok(Output::Provisioned(again))) => judge_repeat(&key, &first, again),
            (_, Ok(other)) => Err(format!("the repeated create returned {other:?}")),
        };
        self.verdict(CREATE_IDEMPOTENT, verdict);
        Some(first.instance_id)
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
                    failure = Some(format!("status failed: {}", short(&error)));
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
                Outcome::Skip,
                "no terminal status was reached",
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
                                short(error)
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
                Some(status) => format!("the resource ended {}", status_name(status)),
                None => "the resource never finished provisioning".to_owned(),
            };
            self.judge(CREDENTIALS_EPHEMERAL, Outcome::Skip, why);
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
            Err(error) => (Err(format!("credentials failed: {}", short(&error))), None),
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
                (Err(error), _) => Err(format!("pause failed: {}", short(&error))),
                (_, Err(error)) => Err(format!("resume failed: {}", short(&error))),
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
                Err(error) => Err(format!("estimate-costs failed: {}", short(&error))),
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
                Err(error) => Err(format!("rotate-credentials failed: {}", short(&error))),
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
            let (outcome, evidence) = self.fault(fault, n).await;
            self.judge(rule, outcome, evidence);
        }
    }

    /// Create, status and destroy under `fault`; a create retried without it must make
    /// exactly one resource.
    async fn fault(&mut self, fault: Fault, n: usize) -> (Outcome, String) {
        let key = self.key(&format!("fault-{}", n + 1));
        let before = self.resources().await;
        let faulted = self.create(&key, Some(fault)).await;
        let seen = self
            .calls
            .last()
            .map(|c| c.seen.clone())
            .unwrap_or_default();
        if seen.is_empty() {
            return (
                Outcome::Skip,
                "the adapter made no HTTP request in create, so there is nothing to fault"
                    .to_owned(),
            );
        }
        let mut notes = Vec::new();
        if let Err(problem) = judge_fault("create", fault, &faulted, &seen, &mut notes) {
            return (Outcome::Fail, problem);
        }
        let retried = self.create(&key, None).await;
        let instance = match retried.result {
            Ok(Output::Provisioned(result)) => result.instance_id,
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
                        short(&error)
                    ),
                );
            }
        };
        let after = self.resources().await;
        match (before, after) {
            (Some(before), Some(after)) if after != before + 1 => {
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
            (Some(_), Some(_)) => notes.push(format!("retry gave {instance}, 1 resource")),
            _ => notes.push(format!(
                "retry gave {instance} (resources not counted: the provider cannot be asked)"
            )),
        }
        let id = || instance.clone();
        let status = self
            .call(Operation::Status { instance_id: id() }, Some(fault))
            .await;
        let seen = self
            .calls
            .last()
            .map(|c| c.seen.clone())
            .unwrap_or_default();
        if let Err(problem) = judge_fault("status", fault, &status, &seen, &mut notes) {
            return (Outcome::Fail, problem);
        }
        let destroy = self
            .call(Operation::Destroy { instance_id: id() }, Some(fault))
            .await;
        let seen = self
            .calls
            .last()
            .map(|c| c.seen.clone())
            .unwrap_or_default();
        if let Err(problem) = judge_fault("destroy", fault, &destroy, &seen, &mut notes) {
            return (Outcome::Fail, problem);
        }
        let cleanup = self
            .call(Operation::Destroy { instance_id: id() }, None)
            .await;
        if let Err(error) = cleanup.result {
            return (
                Outcome::Fail,
                format!(
                    "destroy of {instance} without a fault, after one under {}, failed: {}",
                    fault.describe(),
                    short(&error)
                ),
            );
        }
        (Outcome::Pass, notes.join("; "))
    }

    async fn destroy_rules(&mut self, instance: &str) {
        let id = || instance.to_owned();
        let first = self
            .call(Operation::Destroy { instance_id: id() }, None)
            .await;
        let forgot = self.runtime.forget_records(self.adapter.name()).await;
        let second = self
            .call(Operation::Destroy { instance_id: id() }, None)
            .await;
        let verdict = match (first.result, forgot, second.result) {
            (Err(error), _, _) => Err(format!("destroy failed: {}", short(&error))),
            (_, Err(e), _) => Err(format!("cannot set the host's record aside: {e}")),
            (_, _, Err(error)) => Err(format!(
                "the second destroy of {instance} failed: {}",
                short(&error)
            )),
            (Ok(_), Ok(_), Ok(_)) if !second.receipt.instantiated => {
                Err("the second destroy never reached the adapter".to_owned())
            }
            (Ok(_), Ok(_), Ok(_)) => Ok(format!(
                "destroyed {instance} twice; the second call reached the adapter (host record set aside)"
            )),
        };
        self.verdict(DESTROY_IDEMPOTENT, verdict);

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
                Ok(format!("status answered {}", short(&error)))
            }
            Err(error) => Err(format!(
                "status after destroy answered {}; expected CANCELLED/FAILED, or PERMANENT/VALIDATION for a resource that is gone",
                short(&error)
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
                    Some(format!("{during} was stopped by a limit: {}", short(error)))
                }
                ErrorOrigin::Trap => Some(format!("{during} trapped: {}", short(error))),
                ErrorOrigin::Contract => {
                    Some(format!("{during} broke the contract: {}", short(error)))
                }
            };
            if let Some(problem) = problem {
                verdict = Err(problem);
                break;
            }
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
        let leaks: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.invocation.receipt.redactions > 0)
            .map(|c| {
                format!(
                    "{} ({} replaced)",
                    c.operation, c.invocation.receipt.redactions
                )
            })
            .collect();
        if granted == 0 {
            self.judge(NO_SECRET, Outcome::Pass, "the policy grants no secret");
        } else if leaks.is_empty() {
            self.judge(
                NO_SECRET,
                Outcome::Pass,
                format!(
                    "{granted} granted secret(s) in no output of {} calls (results, errors, logs, progress, stdio)",
                    self.calls.len()
                ),
            );
        } else {
            self.judge(
                NO_SECRET,
                Outcome::Fail,
                format!(
                    "the adapter put a granted secret into its output; the leak guard replaced it in: {}",
                    leaks.join(", ")
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
        if too_close.is_empty() {
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

/// `GET {origin}/_admin/stats` → `resources`, as fakecloud answers it.
async fn admin_resource_count(origin: &url::Url) -> Option<u64> {
    let url = origin.join("/_admin/stats").ok()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let body = client.get(url).send().await.ok()?.bytes().await.ok()?;
    let stats: Value = serde_json::from_slice(&body).ok()?;
    stats.get("resources")?.as_u64()
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
            short(error)
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
    use crate::Progress;

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
    fn the_adapter_s_own_code_is_judged_not_the_host_s_correction() {
        let mut corrected = error(ErrorCode::Limit, "slow down");
        corrected.raw = Some(json!({ "adapterErrorCode": "RETRYABLE", "providerStatus": 429 }));
        assert_eq!(adapter_code(&corrected), ErrorCode::Retryable);
        assert_eq!(adapter_code(&error(ErrorCode::Auth, "no")), ErrorCode::Auth);
    }
}
