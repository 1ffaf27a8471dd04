//! `airlock demo`: the newcomer's first run. The example and fakecloud adapters are
//! bundled into this binary at build time, so nothing needs building first.
//!
//! Part 1 runs the example adapter through its whole life. Part 2 starts fakecloud (a
//! provider API on 127.0.0.1), grants the fakecloud adapter that one destination and a
//! bearer token as a secret handle, and provisions a database through the sandbox.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use airlock::{Adapter, Invocation, Operation, Output, Policy, Runtime, RuntimeConfig, Status};
use clap::Args;
use fakecloud::{FakeCloud, FakeCloudConfig};
use serde_json::{Value, json};

use super::output::{error_json, receipt_line};

/// The example adapter component, built from adapters/example by build.rs.
const EXAMPLE_ADAPTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/example_adapter.wasm"));
/// The fakecloud adapter component, built from adapters/fakecloud by build.rs.
const FAKECLOUD_ADAPTER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fakecloud_adapter.wasm"));

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo's data here instead of in a fresh temporary directory.
    #[arg(long)]
    keep_data: Option<PathBuf>,
    /// Milliseconds per provisioning step, for both adapters.
    #[arg(long, default_value_t = 300)]
    step_millis: u64,
}

/// One adapter's walk through its operations, numbering the steps.
struct Demo {
    adapter: Adapter,
    config: Value,
    step: u32,
}

impl Demo {
    fn title(&mut self, title: &str) {
        self.step += 1;
        println!("\n{}. {title}", self.step);
    }

    /// A step that must succeed.
    async fn step(&mut self, title: &str, operation: Operation) -> Result<Output, ExitCode> {
        self.title(title);
        let invocation = self.adapter.invoke(&self.config, operation).await;
        print_invocation(&invocation);
        invocation
            .result
            .map_err(|e| ExitCode::from(e.error_code.exit_code()))
    }

    /// A step that shows an expected failure.
    async fn failing_step(&mut self, title: &str, config: &Value, operation: Operation) {
        self.title(title);
        print_invocation(&self.adapter.invoke(config, operation).await);
    }

    /// Poll `status` in separate calls, drawing progress, until a terminal status.
    async fn poll_until_done(&mut self, id: &str, pause: Duration) -> Result<(), ExitCode> {
        self.title("status, polled in separate calls until SUCCESS");
        let terminal = std::io::stdout().is_terminal();
        let mut last_line = String::new();
        loop {
            let invocation = self
                .adapter
                .invoke(
                    &self.config,
                    Operation::Status {
                        instance_id: id.to_owned(),
                    },
                )
                .await;
            let detail = match invocation.result {
                Ok(Output::Status(detail)) => detail,
                Ok(_) => unreachable!("status returns a status"),
                Err(error) => {
                    println!("   {}", error_json(&error));
                    return Err(ExitCode::from(error.error_code.exit_code()));
                }
            };
            let (current, total) = detail
                .progress
                .map(|p| (p.current, p.total))
                .unwrap_or((0, 0));
            let name = serde_json::to_value(detail.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let line = format!("   {name:<8} {}", progress_bar(current, total));
            let took = invocation.receipt.wall_time_us as f64 / 1000.0;
            if terminal {
                print!("\r{line}  ({took:.2} ms)   ");
                let _ = std::io::stdout().flush();
            } else if line != last_line {
                println!("{line}  ({took:.2} ms)");
            }
            last_line = line;
            if detail.status.is_terminal() {
                if terminal {
                    println!();
                }
                return if detail.status == Status::Success {
                    Ok(())
                } else {
                    Err(ExitCode::from(15))
                };
            }
            tokio::time::sleep(pause).await;
        }
    }
}

fn print_invocation(invocation: &Invocation) {
    for record in &invocation.logs {
        println!("   log [{}] {}", record.level, record.message);
    }
    let body = match &invocation.result {
        Ok(output) => output.to_json(),
        Err(error) => error_json(error),
    };
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    for line in text.lines() {
        println!("   {line}");
    }
    println!("   receipt: {}", receipt_line(&invocation.receipt));
}

fn progress_bar(current: u64, total: u64) -> String {
    let width: u64 = 30;
    let filled = (current.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    format!(
        "[{}{}] {current}/{total}",
        "#".repeat(filled as usize),
        ".".repeat((width - filled) as usize)
    )
}

fn created_id(output: Output) -> String {
    match output {
        Output::Provisioned(result) => result.instance_id,
        other => unreachable!("create returns a provision result, not {other:?}"),
    }
}

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    let temp = tempfile::tempdir();
    let data_dir = match (&args.keep_data, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Ok(temp)) => temp.path().to_owned(),
        (None, Err(e)) => return super::fail(&format!("cannot create a temporary directory: {e}")),
    };
    let runtime = match Runtime::new(RuntimeConfig::with_data_dir(&data_dir)) {
        Ok(r) => r,
        Err(e) => return super::fail(&e.to_string()),
    };
    println!(
        "Airlock demo: every step below runs in a fresh WebAssembly instance with fuel, memory and"
    );
    println!(
        "deadline limits. State lives in {}",
        runtime.database_path().display()
    );

    let outcome = async {
        example_part(&runtime, args.step_millis).await?;
        fakecloud_part(&runtime, &data_dir, args.step_millis).await
    }
    .await;
    match outcome {
        Ok(()) => {
            println!("\nDone: every step ran in its own sandbox, and the contract held.");
            ExitCode::SUCCESS
        }
        Err(code) => {
            println!("\nThe demo stopped at a failed step.");
            code
        }
    }
}

async fn load(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
    policy: Policy,
) -> Result<Adapter, ExitCode> {
    let adapter = runtime
        .load_bytes(
            name,
            bytes.to_vec(),
            policy,
            &format!("bundled {name} adapter"),
        )
        .await
        .map_err(|e| super::fail(&e.to_string()))?;
    let info = adapter.info();
    println!(
        "Loaded the {name} adapter ({} KiB component, sha256 {}…)",
        info.size_bytes / 1024,
        &info.sha256[..12]
    );
    Ok(adapter)
}

async fn example_part(runtime: &Runtime, step_millis: u64) -> Result<(), ExitCode> {
    println!("\n== Part 1: the example adapter (its provider is its own state store)");
    let adapter = load(runtime, "example", EXAMPLE_ADAPTER, Policy::default()).await?;
    let mut demo = Demo {
        adapter,
        config: json!({ "region": "eu-west-1", "plan": "medium", "stepMillis": step_millis }),
        step: 0,
    };

    demo.failing_step(
        "validate-config with a bad region (expect VALIDATION)",
        &json!({ "region": "mars-1" }),
        Operation::ValidateConfig,
    )
    .await;
    demo.step("validate-config", Operation::ValidateConfig)
        .await?;
    let create = || Operation::Create {
        params: json!({ "name": "orders-db", "steps": 5 }),
        idempotency_key: Some("demo-order-42".into()),
    };
    let id = created_id(
        demo.step("create (idempotency key demo-order-42)", create())
            .await?,
    );
    demo.step(
        "create again with the same key (expect created: false, same instanceId)",
        create(),
    )
    .await?;
    demo.poll_until_done(&id, Duration::from_millis(step_millis.clamp(50, 500) / 2))
        .await?;
    let steps = [
        (
            "credentials (ephemeral, with an expiry)",
            Operation::Credentials {
                instance_id: id.clone(),
            },
        ),
        (
            "estimate-costs (optional interface `costs`)",
            Operation::EstimateCosts {
                instance_id: id.clone(),
            },
        ),
        (
            "rotate-credentials (optional interface `rotation`)",
            Operation::RotateCredentials {
                instance_id: id.clone(),
            },
        ),
        (
            "destroy",
            Operation::Destroy {
                instance_id: id.clone(),
            },
        ),
        (
            "destroy again (idempotent: succeeds)",
            Operation::Destroy {
                instance_id: id.clone(),
            },
        ),
        (
            "status after destroy",
            Operation::Status { instance_id: id },
        ),
    ];
    for (title, operation) in steps {
        demo.step(title, operation).await?;
    }
    Ok(())
}

/// A token for this run only: nothing secret about it but that the guest never sees it.
fn fresh_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut token = String::from("demo-");
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        token.push_str(&format!("{:016x}", hasher.finish()));
    }
    token
}

async fn fakecloud_part(
    runtime: &Runtime,
    data_dir: &Path,
    step_millis: u64,
) -> Result<(), ExitCode> {
    println!("\n== Part 2: the fakecloud adapter against a provider API on 127.0.0.1");
    let token = fresh_token();
    let cloud = FakeCloud::start(FakeCloudConfig {
        token: token.clone(),
        step_millis,
        steps: 4,
        ..FakeCloudConfig::default()
    })
    .await
    .map_err(|e| super::fail(&format!("cannot start fakecloud: {e}")))?;
    let token_file = data_dir.join("fakecloud-token");
    std::fs::write(&token_file, &token)
        .map_err(|e| super::fail(&format!("cannot write the token file: {e}")))?;
    let base = cloud.base_url();
    let policy_text = format!(
        r#"name = "fakecloud"

[[http.allow]]
url = "{base}/v1/"
methods = ["GET", "POST", "DELETE"]
addresses = ["127.0.0.1/32"]   # a provider on this machine must be granted explicitly

[secrets.fakecloud-token]
source = "file:{}"
destinations = ["{base}/v1/"]
"#,
        token_file.display()
    );
    println!("fakecloud listens on {base}. The adapter's policy:\n");
    for line in policy_text.lines() {
        println!("   {line}");
    }
    let policy =
        Policy::from_toml(&policy_text, "demo policy").map_err(|e| super::fail(&e.to_string()))?;
    let adapter = load(runtime, "fakecloud", FAKECLOUD_ADAPTER, policy).await?;
    let mut demo = Demo {
        adapter,
        config: json!({ "endpoint": base, "plan": "small" }),
        step: 0,
    };

    demo.failing_step(
        "create against the cloud metadata address (expect AUTH: the host denies it)",
        &json!({ "endpoint": "http://169.254.169.254" }),
        Operation::Create {
            params: json!({ "name": "stolen" }),
            idempotency_key: None,
        },
    )
    .await;
    let create = || Operation::Create {
        params: json!({ "name": "billing-db" }),
        idempotency_key: Some("demo-order-43".into()),
    };
    let id = created_id(
        demo.step(
            "create (the key becomes the provider's client token)",
            create(),
        )
        .await?,
    );
    demo.step(
        "create again with the same key (the provider deduplicates)",
        create(),
    )
    .await?;
    println!("   fakecloud holds {} database(s)", cloud.resource_count());
    demo.poll_until_done(&id, Duration::from_millis(step_millis.clamp(50, 500) / 2))
        .await?;
    let steps = [
        (
            "credentials (issued by the provider, ephemeral)",
            Operation::Credentials {
                instance_id: id.clone(),
            },
        ),
        (
            "destroy",
            Operation::Destroy {
                instance_id: id.clone(),
            },
        ),
        (
            "destroy again (idempotent: succeeds)",
            Operation::Destroy { instance_id: id },
        ),
    ];
    for (title, operation) in steps {
        demo.step(title, operation).await?;
    }
    println!(
        "   fakecloud holds {} database(s); the bearer token never entered the sandbox",
        cloud.resource_count()
    );
    Ok(())
}
