//! # airlock-conformance
//!
//! The conformance checker behind `airlock check` (and, next, the service's admission
//! step): it runs an adapter through the contract's rules in a sandbox of its own and says, rule by rule, what held and what did
//! not, with the evidence.
//!
//! Every effect of an adapter goes through a host import, so the checker can test the
//! contract itself, deterministically and with no cloud: requests the policy allows go to a
//! stand-in provider (the built-in fakecloud, or `--provider URL`), faults are injected
//! through the `http` capability without changing the adapter, and the host's own
//! idempotency records are set aside ([`airlock::Runtime::forget_records`]) where a rule is
//! about the adapter's own idempotency. See [`RULES`] for the rules.
//!
//! ```no_run
//! # async fn demo() -> Result<(), airlock::Error> {
//! use airlock_conformance::{self as conformance, CheckOptions};
//! let wasm = std::fs::read("example_adapter.wasm").unwrap();
//! let options = CheckOptions::new(serde_json::json!({ "region": "eu-west-1", "stepMillis": 0 }));
//! let report = conformance::check(&wasm, "example_adapter.wasm", airlock::Policy::default(), options, &mut |_| {}).await?;
//! assert!(report.passed());
//! # Ok(()) }
//! ```

mod provider;
mod recording;
mod rules;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock::{Error, Policy, SecretSource, SecretValue};
use serde::Serialize;
use serde_json::{Value, json};
use url::Url;

pub use provider::Fault;
pub use rules::{RULES, Rule};

/// Where the checker's provider is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderChoice {
    /// Start fakecloud on 127.0.0.1 for the run; every secret the policy grants resolves
    /// to the token it accepts.
    BuiltIn,
    /// A provider already running at this origin: every request the policy allows goes to
    /// its scheme, host and port, with the request's own path and query. Secrets resolve
    /// from their policy sources. If it answers `GET /_admin/stats` with
    /// `{"resources": N}` (the live resources it holds), the fault rules count resources;
    /// if not, the rules that rest on that count are not judged.
    External(Url),
    /// No provider: answers come from a recording made with [`CheckOptions::record`].
    Replay(PathBuf),
}

/// What the checker runs the adapter with.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// A config the adapter accepts.
    pub config: Value,
    /// Create params.
    pub params: Value,
    /// Configs the adapter must reject with `VALIDATION`, beyond the built-in malformed
    /// ones (non-objects).
    pub invalid_configs: Vec<Value>,
    /// The provider.
    pub provider: ProviderChoice,
    /// Write the provider's answers here, for `ProviderChoice::Replay` later.
    pub record: Option<PathBuf>,
    /// How long to wait for a created resource to reach a terminal status.
    pub wait: Duration,
}

impl CheckOptions {
    /// Defaults around a valid `config`: params `{"name": "airlock-check"}`, the built-in
    /// provider, no recording, 60 s for provisioning.
    pub fn new(config: Value) -> CheckOptions {
        CheckOptions {
            config,
            params: json!({ "name": "airlock-check" }),
            invalid_configs: Vec::new(),
            provider: ProviderChoice::BuiltIn,
            record: None,
            wait: Duration::from_secs(60),
        }
    }
}

/// How a rule came out.
///
/// `Skip` and `NotJudged` both mean "no verdict", for different reasons: a skipped rule
/// does not apply to this adapter (it exports no such interface, or imports no `http` to
/// fault); a rule not judged applies but the checker could not measure what it asks (an
/// earlier step failed, the provider cannot count its resources, the adapter sent no
/// request to fault). Only `Fail` fails a run; `--strict` fails `NotJudged` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// It held, on evidence the checker measured.
    #[serde(rename = "pass")]
    Pass,
    /// It held, but the evidence shows a risk the author should know about (a secret the
    /// policy reveals to the adapter). Never fails a run.
    #[serde(rename = "warn")]
    Warn,
    /// It did not; the evidence says how.
    #[serde(rename = "fail")]
    Fail,
    /// It does not apply to this adapter (an optional interface not exported, no `http`
    /// import, no secret granted); the evidence says why.
    #[serde(rename = "skip")]
    Skip,
    /// It applies, but the checker could not measure it; the evidence says what was missing.
    /// A pass here would claim what nobody saw.
    #[serde(rename = "not-judged")]
    NotJudged,
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    /// The rule's id, e.g. `create.idempotent`.
    pub rule: &'static str,
    /// What the rule asks, in a line.
    pub title: &'static str,
    /// Pass, warn, fail, skip or not judged.
    pub outcome: Outcome,
    /// What was seen; for a skip or a rule not judged, why there is no verdict.
    pub evidence: String,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The adapter's name.
    pub adapter: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// Where the provider was.
    pub provider: String,
    /// Every rule, in the order it ran.
    pub results: Vec<RuleResult>,
}

impl Report {
    /// Whether no rule failed. Rules not judged do not count against it; see
    /// [`Report::passed_strictly`].
    pub fn passed(&self) -> bool {
        self.count(Outcome::Fail) == 0
    }

    /// Whether no rule failed and every rule that applies was judged (`--strict`).
    pub fn passed_strictly(&self) -> bool {
        self.passed() && self.count(Outcome::NotJudged) == 0
    }

    /// How many rules came out as `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }
}

/// What the checker reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckEvent {
    /// A rule is done.
    Rule(RuleResult),
    /// Something long is under way (waiting for provisioning).
    Waiting(String),
}

/// Run every rule against the component `wasm` under `policy`. `origin` names the
/// component in messages. Returns an error only when the check cannot run at all (the
/// provider cannot start, a recording cannot be read); an adapter that does not load is a
/// failed `world` rule.
pub async fn check(
    wasm: &[u8],
    origin: &str,
    policy: Policy,
    options: CheckOptions,
    on_event: &mut (dyn FnMut(&CheckEvent) + Send),
) -> Result<Report, Error> {
    rules::Checker::run(wasm, origin, policy, options, on_event).await
}

/// A secret source that answers every locator with the built-in provider's token.
#[derive(Debug)]
struct CheckSecrets(Arc<str>);

impl SecretSource for CheckSecrets {
    fn scheme(&self) -> &'static str {
        "airlock-check"
    }

    fn fetch(&self, _locator: &str) -> Result<SecretValue, String> {
        Ok(SecretValue::new(self.0.to_string()))
    }
}
