//! `airlock check ADAPTER.wasm`: the conformance checker. One line per rule, exit status 1
//! if any rule failed (or, with `--strict`, was not judged), `--json` for CI.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::invoke::json_argument;
use airlock_conformance::{
    self as conformance, CheckEvent, CheckOptions, Outcome, ProviderChoice, Report,
};

/// Exit status when a rule failed, or with `--strict` was not judged.
const EXIT_FAILED: u8 = 1;

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The adapter component (.wasm).
    adapter: PathBuf,
    /// Policy file (TOML), as an operator would grant it.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A provider config the adapter accepts: inline JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    config: String,
    /// Create params: inline JSON, or @FILE.
    #[arg(long, default_value = r#"{"name":"airlock-check"}"#)]
    params: String,
    /// A config the adapter must reject with VALIDATION (inline JSON or @FILE); repeatable.
    /// Non-object configs are always tried.
    #[arg(long = "invalid-config")]
    invalid_configs: Vec<String>,
    /// Send every request the policy allows to this provider instead of a built-in
    /// fakecloud: its scheme, host and port replace the request's (path and query kept).
    /// Secrets then come from the policy's own sources. Resources are counted if it serves
    /// GET /_admin/stats; if not, the rules that need the count are not judged.
    #[arg(long, conflicts_with = "replay")]
    provider: Option<String>,
    /// Keep the provider's answers in FILE, to replay this run with --replay.
    #[arg(long, conflicts_with = "replay")]
    record: Option<PathBuf>,
    /// Answer the adapter's requests from a recording instead of a provider.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Seconds to wait for a created resource to finish provisioning.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Fail (exit status 1) when a rule that applies could not be judged, e.g. a fault
    /// rule against a provider that cannot count its resources.
    #[arg(long)]
    strict: bool,
}

pub(crate) async fn run(args: CheckArgs) -> ExitCode {
    let usage = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    let json_of = |name: &str, text: &str| json_argument(name, text);
    let (config, params) = match (
        json_of("config", &args.config),
        json_of("params", &args.params),
    ) {
        (Ok(config), Ok(params)) => (config, params),
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    let mut invalid_configs = Vec::new();
    for text in &args.invalid_configs {
        match json_of("invalid-config", text) {
            Ok(value) => invalid_configs.push(value),
            Err(e) => return usage(e),
        }
    }
    let provider = match (&args.provider, &args.replay) {
        (Some(url), _) => match url::Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                ProviderChoice::External(url)
            }
            Ok(_) => return usage(format!("--provider {url}: need an http(s) base URL")),
            Err(e) => return usage(format!("--provider {url}: {e}")),
        },
        (None, Some(path)) => ProviderChoice::Replay(path.clone()),
        (None, None) => ProviderChoice::BuiltIn,
    };
    let policy = match super::policy(args.policy.as_deref()) {
        Ok(policy) => policy,
        Err(code) => return code,
    };
    let wasm = match std::fs::read(&args.adapter) {
        Ok(bytes) => bytes,
        Err(e) => {
            return super::fail(&format!("cannot read {}: {e}", args.adapter.display()));
        }
    };
    let options = CheckOptions {
        config,
        params,
        invalid_configs,
        provider,
        record: args.record.clone(),
        wait: Duration::from_secs(args.wait),
    };
    let origin = args.adapter.display().to_string();
    if !args.json {
        println!("airlock check {origin}");
    }
    let json = args.json;
    let live = std::io::stderr().is_terminal();
    let mut on_event = move |event: &CheckEvent| match event {
        CheckEvent::Rule(result) => {
            if live {
                eprint!("\r\x1b[2K");
            }
            if json {
                eprintln!("{} {}", label(result.outcome), result.rule);
            } else {
                print_rule(result);
            }
        }
        CheckEvent::Waiting(what) if live => {
            eprint!("\r\x1b[2K  ....  {what}");
            let _ = std::io::stderr().flush();
        }
        CheckEvent::Waiting(_) => {}
    };
    let report = match conformance::check(&wasm, &origin, policy, options, &mut on_event).await {
        Ok(report) => report,
        Err(e) => return super::fail(&e.to_string()),
    };
    let passed = if args.strict {
        report.passed_strictly()
    } else {
        report.passed()
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&report, args.strict, passed))
                .unwrap_or_default()
        );
    } else {
        print_summary(&report, args.record.as_deref());
    }
    if !json && args.strict && report.passed() && !passed {
        println!(
            "--strict: {} rule(s) not judged count as failed",
            report.count(Outcome::NotJudged)
        );
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// The verdict as printed; the JSON report spells it `pass`, `warn`, `fail`, `skip`,
/// `not-judged`.
fn label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "PASS",
        Outcome::Warn => "WARN",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "SKIP",
        Outcome::NotJudged => "NOT JUDGED",
    }
}

fn print_rule(result: &conformance::RuleResult) {
    println!(
        "  {:<10}  {:<30} {}",
        label(result.outcome),
        result.rule,
        result.title
    );
    for line in result.evidence.lines() {
        println!("  {:<10}  {:<30} {line}", "", "");
    }
}

fn print_summary(report: &Report, record: Option<&std::path::Path>) {
    println!(
        "\n{} ({}) against {}: {}",
        report.adapter,
        &report.sha256[..16],
        report.provider,
        summary(report)
    );
    if let Some(path) = record {
        println!(
            "recorded the provider's answers in {}; replay with --replay {}",
            path.display(),
            path.display()
        );
    }
}

/// The counts of the summary line: `18 passed, 0 failed, 2 not judged, 3 skipped`, with
/// `, 1 warning` when a rule warned.
fn summary(report: &Report) -> String {
    let mut line = format!(
        "{} passed, {} failed, {} not judged, {} skipped",
        report.count(Outcome::Pass),
        report.count(Outcome::Fail),
        report.count(Outcome::NotJudged),
        report.count(Outcome::Skip)
    );
    match report.count(Outcome::Warn) {
        0 => {}
        1 => line.push_str(", 1 warning"),
        n => line.push_str(&format!(", {n} warnings")),
    }
    line
}

/// The report as `--json` prints it: the library's report, plus the summary line's counts
/// (`counts`), whether `--strict` was on, and the verdict the exit status follows
/// (`passed`).
fn json_report(report: &Report, strict: bool, passed: bool) -> Value {
    let mut value = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    value["counts"] = json!({
        "passed": report.count(Outcome::Pass),
        "failed": report.count(Outcome::Fail),
        "notJudged": report.count(Outcome::NotJudged),
        "skipped": report.count(Outcome::Skip),
        "warnings": report.count(Outcome::Warn),
    });
    value["strict"] = json!(strict);
    value["passed"] = json!(passed);
    value
}
