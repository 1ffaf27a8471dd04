//! `airlock tenant`: the operator's administration of the service's tenants, on the same
//! data directory or database as `airlock serve` (and safe while it runs: every change is
//! one storage write the service reads on its next request).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock::RuntimeConfig;
use airlock_server::{ApiKey, TenantError, Tenants};
use clap::{Args, Subcommand};
use serde_json::json;

/// Exit status of a tenant operation the store refused (no such tenant, one exists
/// already, a bad name or ceiling).
const EXIT_REFUSED: u8 = 1;

/// `airlock tenant …`
#[derive(Args)]
pub(crate) struct TenantArgs {
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its API key, which is shown this once and never stored.
    Create {
        /// The tenant's name: lowercase letters, digits and '-'.
        name: String,
        /// The tenant's ceiling (TOML, see docs/ceiling.md) [default: the default ceiling].
        #[arg(long, value_name = "FILE")]
        ceiling: Option<PathBuf>,
    },
    /// List the tenants (names, when created, when their key was set, their ceiling).
    List,
    /// Give a tenant a new API key; the old one stops working at once.
    RotateKey {
        /// The tenant's name.
        name: String,
    },
    /// Replace a tenant's ceiling; applies to the next upload.
    SetCeiling {
        /// The tenant's name.
        name: String,
        /// The new ceiling (TOML); `--default` instead puts back the default ceiling.
        #[arg(required_unless_present = "default", conflicts_with = "default")]
        file: Option<PathBuf>,
        /// Put back the default ceiling.
        #[arg(long)]
        default: bool,
    },
}

/// Run `airlock tenant`.
pub(crate) async fn run(config: &RuntimeConfig, args: TenantArgs) -> ExitCode {
    let runtime = match super::runtime(config) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let tenants = Tenants::new(runtime.service_store());
    let printed = match args.command {
        TenantCommand::Create { name, ceiling } => match read(ceiling.as_deref()) {
            Ok(ceiling) => {
                let ceiling = ceiling
                    .as_ref()
                    .map(|(text, origin)| (text.as_str(), origin.as_str()));
                tenants
                    .create(&name, ceiling)
                    .await
                    .map(|key| key_json(&name, &key))
            }
            Err(code) => return code,
        },
        TenantCommand::List => tenants.list().await.map(|list| {
            json!(
                list.iter()
                    .map(|t| json!({
                        "tenant": t.name,
                        "createdMs": t.created_ms,
                        "keySetMs": t.key_set_ms,
                        "ceiling": if t.ceiling.is_some() { "custom" } else { "default" },
                    }))
                    .collect::<Vec<_>>()
            )
        }),
        TenantCommand::RotateKey { name } => tenants
            .rotate_key(&name)
            .await
            .map(|key| key_json(&name, &key)),
        TenantCommand::SetCeiling {
            name,
            file,
            default: _,
        } => match read(file.as_deref()) {
            Ok(ceiling) => {
                let ceiling = ceiling
                    .as_ref()
                    .map(|(text, origin)| (text.as_str(), origin.as_str()));
                let custom = ceiling.is_some();
                tenants.set_ceiling(&name, ceiling).await.map(|()| {
                    json!({ "tenant": name, "ceiling": if custom { "custom" } else { "default" } })
                })
            }
            Err(code) => return code,
        },
    };
    match printed {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(error @ TenantError::Storage(_)) => super::fail(&error.to_string()),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

fn key_json(name: &str, key: &ApiKey) -> serde_json::Value {
    json!({ "tenant": name, "apiKey": key.reveal() })
}

/// A ceiling file's text and its name for messages.
fn read(path: Option<&Path>) -> Result<Option<(String, String)>, ExitCode> {
    let Some(path) = path else { return Ok(None) };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some((text, path.display().to_string()))),
        Err(e) => Err(super::fail(&format!(
            "cannot read ceiling {}: {e}",
            path.display()
        ))),
    }
}
