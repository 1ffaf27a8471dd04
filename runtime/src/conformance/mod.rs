//! The conformance checker behind `airlock check`: it runs an adapter through the
//! contract's rules in a sandbox of its own and says, rule by rule, what held and what did
//! not, with the evidence.
//!
//! Every effect of an adapter goes through a host import, so the checker can test the
//! contract itself, deterministically and with no cloud: requests the policy allows go to a
//! stand-in provider (the built-in fakecloud, or `--provider URL`), faults are injected
//! through the `http` capability without changing the adapter, and the host's own
//! idempotency records are set aside ([`crate::Runtime::forget_records`]) where a rule is
//! about the adapter's own idempotency. See [`RULES`] for the rules.
//!
//! ```no_run
//! # async fn demo() -> Result<(), airlock::Error> {
//! use airlock::conformance::{self, CheckOptions};
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

use serde::Serialize;
use serde_json::{Value, json};
use url::Url;

pub use provider::Fault;
pub use rules::{RULES, Rule};

use crate::error::Error;
use crate::policy::Policy;

/// Where the checker's provider is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderChoice {
    /// Start fakecloud on 127.0.0.1 for the run; every secret the policy grants resolves
    /// to the token it accepts.
    BuiltIn,
    /// A provider already running at this base URL (scheme, host, port). Secrets resolve
    /// from their policy sources. If it answers `GET /_admin/stats` like fakecloud does,
    /// resources are counted.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It held.
    Pass,
    /// It did not; the evidence says how.
    Fail,
    /// It could not be judged (an optional interface not exported, an adapter that makes
    /// no HTTP requests, an earlier step that failed); the evidence says why.
    Skip,
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    /// The rule's id, e.g. `create.idempotent`.
    pub rule: &'static str,
    /// What the rule asks, in a line.
    pub title: &'static str,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What was seen.
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
    /// Whether no rule failed.
    pub fn passed(&self) -> bool {
        self.count(Outcome::Fail) == 0
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

impl crate::SecretSource for CheckSecrets {
    fn scheme(&self) -> &'static str {
        "airlock-check"
    }

    fn fetch(&self, _locator: &str) -> Result<crate::SecretValue, String> {
        Ok(crate::SecretValue::new(self.0.to_string()))
    }
}
