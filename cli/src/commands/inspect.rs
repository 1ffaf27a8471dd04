//! `airlock inspect ADAPTER.wasm`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// The adapter component (.wasm).
    adapter: PathBuf,
    /// Policy file (TOML), to check it loads with the component.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(config: &airlock::RuntimeConfig, args: InspectArgs) -> ExitCode {
    let policy = match super::policy(args.policy.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let runtime = match super::runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let adapter = match runtime.load_file(&args.adapter, policy).await {
        Ok(a) => a,
        Err(e) => return super::fail(&e.to_string()),
    };
    let info = adapter.info();
    if args.json {
        let mut value = serde_json::to_value(info).unwrap_or_default();
        value["world"] = "airlock:adapter/adapter@0.1.0".into();
        value["capabilities"] = serde_json::to_value(info.capabilities()).unwrap_or_default();
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("adapter      {}", info.name);
    println!(
        "component    {} ({} bytes, sha256 {})",
        args.adapter.display(),
        info.size_bytes,
        &info.sha256[..16]
    );
    println!("world        airlock:adapter/adapter@0.1.0");
    println!("operations   validate-config, create, status, destroy, credentials");
    println!(
        "optional     lifecycle (pause, resume): {}",
        yes(info.optional.lifecycle)
    );
    println!(
        "             costs (estimate-costs): {}",
        yes(info.optional.costs)
    );
    println!(
        "             rotation (rotate-credentials): {}",
        yes(info.optional.rotation)
    );
    let caps = info.capabilities();
    println!(
        "capabilities {}",
        if caps.is_empty() {
            "none".to_owned()
        } else {
            caps.join(", ")
        }
    );
    let wasi: Vec<&String> = info
        .imports
        .iter()
        .filter(|i| i.starts_with("wasi:"))
        .collect();
    println!(
        "wasi imports {} (no files, env, args or sockets are granted)",
        wasi.len()
    );
    for import in wasi {
        println!("             {import}");
    }
    ExitCode::SUCCESS
}
