//! `airlock invoke ADAPTER.wasm OPERATION …`

use std::path::PathBuf;
use std::process::ExitCode;

use airlock::{OPERATION_NAMES, Operation};
use clap::Args;
use serde_json::Value;

use super::output::{error_json, receipt_line};

#[derive(Args)]
pub(crate) struct InvokeArgs {
    /// The adapter component (.wasm).
    adapter: PathBuf,
    /// The operation.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(OPERATION_NAMES))]
    operation: String,
    /// Provider config: inline JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    config: String,
    /// Create params: inline JSON, or @FILE.
    #[arg(long)]
    params: Option<String>,
    /// Idempotency key for create.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Instance id, for every operation but validate-config and create.
    #[arg(long)]
    instance: Option<String>,
    /// Policy file (TOML). Default: the built-in defaults.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Retry RETRYABLE and LIMIT errors, up to this many attempts in all (exponential
    /// backoff with full jitter, honouring Retry-After; a create keeps its key).
    #[arg(long, default_value_t = 1)]
    retry: u32,
    /// Print the full receipt as JSON on stderr instead of a one-line summary.
    #[arg(long)]
    receipt: bool,
    /// Print no guest logs and no receipt on stderr (the host's own warnings, already
    /// redacted, still go there; `--log off` silences them too).
    #[arg(long, short)]
    quiet: bool,
}

/// Inline JSON, or `@FILE`.
pub(crate) fn json_argument(name: &str, text: &str) -> Result<Value, String> {
    let (source, body) = match text.strip_prefix('@') {
        Some(file) => (
            file.to_owned(),
            std::fs::read_to_string(file)
                .map_err(|e| format!("--{name} @{file}: cannot read: {e}"))?,
        ),
        None => ("inline".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&body).map_err(|e| format!("--{name} ({source}) is not valid JSON: {e}"))
}

pub(crate) async fn run(runtime_config: &airlock::RuntimeConfig, args: InvokeArgs) -> ExitCode {
    let usage = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    let config = match json_argument("config", &args.config) {
        Ok(v) => v,
        Err(e) => return usage(e),
    };
    let params = match args
        .params
        .as_deref()
        .map(|p| json_argument("params", p))
        .transpose()
    {
        Ok(v) => v,
        Err(e) => return usage(e),
    };
    let operation =
        match Operation::from_parts(&args.operation, args.instance, params, args.idempotency_key) {
            Ok(op) => op,
            Err(e) => return usage(e),
        };
    let policy = match super::policy(args.policy.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let runtime = match super::runtime(runtime_config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let adapter = match runtime.load_file(&args.adapter, policy).await {
        Ok(a) => a,
        Err(e) => return super::fail(&e.to_string()),
    };

    let retry = airlock::RetryPolicy {
        max_attempts: args.retry.max(1),
        ..airlock::RetryPolicy::default()
    };
    let invocation = adapter.invoke_with_retry(&config, operation, &retry).await;
    if !args.quiet {
        for record in &invocation.logs {
            eprintln!("[{} {}] {}", adapter.name(), record.level, record.message);
        }
        if args.receipt {
            eprintln!(
                "{}",
                serde_json::to_string(&invocation.receipt).unwrap_or_default()
            );
        } else {
            eprintln!("# {}", receipt_line(&invocation.receipt));
        }
    }
    match invocation.result {
        Ok(output) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output.to_json()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&error_json(&error)).unwrap_or_default()
            );
            ExitCode::from(error.error_code.exit_code())
        }
    }
}
