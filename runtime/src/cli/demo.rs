//! `airlock demo`: the newcomer's first run. The example adapter is bundled into this
//! binary at build time, so nothing needs building first.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use airlock::{Adapter, Invocation, Operation, Output, Policy, Runtime, RuntimeConfig, Status};
use clap::Args;
use serde_json::{Value, json};

use super::output::{error_json, receipt_line};

/// The example adapter component, built from adapters/example by build.rs.
const EXAMPLE_ADAPTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/example_adapter.wasm"));

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo's data here instead of in a fresh temporary directory.
    #[arg(long)]
    keep_data: Option<PathBuf>,
    /// Milliseconds per provisioning step of the example adapter.
    #[arg(long, default_value_t = 300)]
    step_millis: u64,
}

struct Demo {
    adapter: Adapter,
    config: Value,
    step: u32,
}

impl Demo {
    async fn step(&mut self, title: &str, operation: Operation) -> Result<Output, ExitCode> {
        self.step += 1;
        println!("\n{}. {title}", self.step);
        let invocation = self.adapter.invoke(&self.config, operation).await;
        print_invocation(&invocation);
        invocation
            .result
            .map_err(|e| ExitCode::from(e.error_code.exit_code()))
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
    let adapter = match runtime
        .load_bytes(
            "example",
            EXAMPLE_ADAPTER.to_vec(),
            Policy::default(),
            "bundled example adapter",
        )
        .await
    {
        Ok(a) => a,
        Err(e) => return super::fail(&e.to_string()),
    };
    let info = adapter.info();
    println!(
        "Airlock demo: the example adapter ({} KiB component, sha256 {}…)",
        info.size_bytes / 1024,
        &info.sha256[..12]
    );
    println!(
        "Every step below runs in a fresh WebAssembly instance with fuel, memory and deadline limits."
    );
    println!("State lives in {}", runtime.database_path().display());

    match run_steps(adapter, args.step_millis).await {
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

async fn run_steps(adapter: Adapter, step_millis: u64) -> Result<(), ExitCode> {
    let mut demo = Demo {
        adapter,
        config: json!({ "region": "mars-1" }),
        step: 0,
    };

    // A bad config first, to show what an author's validation error looks like.
    demo.step += 1;
    println!(
        "\n{}. validate-config with a bad region (expect VALIDATION)",
        demo.step
    );
    print_invocation(
        &demo
            .adapter
            .invoke(&demo.config, Operation::ValidateConfig)
            .await,
    );

    demo.config = json!({ "region": "eu-west-1", "plan": "medium", "stepMillis": step_millis });
    demo.step("validate-config", Operation::ValidateConfig)
        .await?;
    let params = json!({ "name": "orders-db", "steps": 5 });
    let create = || Operation::Create {
        params: params.clone(),
        idempotency_key: Some("demo-order-42".into()),
    };
    let Output::Provisioned(created) = demo
        .step("create (idempotency key demo-order-42)", create())
        .await?
    else {
        unreachable!("create returns a provision result")
    };
    demo.step(
        "create again with the same key (expect created: false, same instanceId)",
        create(),
    )
    .await?;
    let id = created.instance_id;

    demo.step += 1;
    println!(
        "\n{}. status, polled in separate calls until SUCCESS",
        demo.step
    );
    let terminal = std::io::stdout().is_terminal();
    let mut last_line = String::new();
    loop {
        let invocation = demo
            .adapter
            .invoke(
                &demo.config,
                Operation::Status {
                    instance_id: id.clone(),
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
        let line = format!(
            "   {:<8} {}",
            format!("{:?}", detail.status).to_uppercase(),
            progress_bar(current, total)
        );
        if terminal {
            print!(
                "\r{line}  ({:.2} ms)   ",
                invocation.receipt.wall_time_us as f64 / 1000.0
            );
            let _ = std::io::stdout().flush();
        } else if line != last_line {
            println!(
                "{line}  ({:.2} ms)",
                invocation.receipt.wall_time_us as f64 / 1000.0
            );
        }
        last_line = line;
        if detail.status.is_terminal() {
            if terminal {
                println!();
            }
            if detail.status != Status::Success {
                return Err(ExitCode::from(15));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(step_millis.clamp(50, 500) / 2)).await;
    }

    demo.step(
        "credentials (ephemeral, with an expiry)",
        Operation::Credentials {
            instance_id: id.clone(),
        },
    )
    .await?;
    demo.step(
        "estimate-costs (optional interface `costs`)",
        Operation::EstimateCosts {
            instance_id: id.clone(),
        },
    )
    .await?;
    demo.step(
        "rotate-credentials (optional interface `rotation`)",
        Operation::RotateCredentials {
            instance_id: id.clone(),
        },
    )
    .await?;
    demo.step(
        "destroy",
        Operation::Destroy {
            instance_id: id.clone(),
        },
    )
    .await?;
    demo.step(
        "destroy again (idempotent: succeeds)",
        Operation::Destroy {
            instance_id: id.clone(),
        },
    )
    .await?;
    demo.step(
        "status after destroy",
        Operation::Status { instance_id: id },
    )
    .await?;
    Ok(())
}
