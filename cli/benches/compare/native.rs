//! The benchmark adapters' logic as plain Rust, for the "native" and "process per call"
//! rows of `cargo bench -p airlock-cli --bench compare`: the same steps the components take
//! (parse the config document, read the instance record from state, decode it, work out
//! the status), without a sandbox. Shared by the bench and by the
//! `airlock-bench-plugin` binary (`cli/src/bin/airlock-bench-plugin.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a resource is, as the contract's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Status {
    Pending,
    Running,
    Success,
}

/// The contract's status detail, the parts these adapters fill in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StatusDetail {
    pub(crate) status: Status,
    pub(crate) message: String,
    pub(crate) current: u64,
    pub(crate) total: u64,
}

/// What the example adapter keeps per instance (`adapters/example/src/lib.rs`).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Instance {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) plan: String,
    pub(crate) steps: u64,
    pub(crate) step_millis: u64,
    pub(crate) created_at_ms: u64,
    #[serde(default)]
    pub(crate) paused: bool,
    #[serde(default)]
    pub(crate) credential_generation: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn parse_config(config: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    if value.is_object() {
        Ok(value)
    } else {
        Err("config must be a JSON object".into())
    }
}

/// `bench-constant`'s `status`: parse the config, answer a constant.
pub(crate) fn constant_status(config: &str) -> Result<StatusDetail, String> {
    parse_config(config)?;
    Ok(StatusDetail {
        status: Status::Success,
        message: "ready".into(),
        current: 4,
        total: 4,
    })
}

/// The example adapter's `status`: the instance record under `instance:{id}` in `state`,
/// and where provisioning is from the time since creation.
pub(crate) fn example_status(
    config: &str,
    instance_id: &str,
    state: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<StatusDetail, String> {
    parse_config(config)?;
    let record = state(&format!("instance:{instance_id}"))
        .ok_or_else(|| format!("instance {instance_id:?} not found"))?;
    let instance: Instance = serde_json::from_slice(&record).map_err(|e| e.to_string())?;
    let elapsed = now_ms().saturating_sub(instance.created_at_ms);
    let done = elapsed
        .checked_div(instance.step_millis)
        .unwrap_or(instance.steps);
    let steps = instance.steps;
    Ok(if done >= steps {
        let message = if instance.paused { "paused" } else { "ready" };
        StatusDetail {
            status: Status::Success,
            message: message.into(),
            current: steps,
            total: steps,
        }
    } else if done == 0 {
        StatusDetail {
            status: Status::Pending,
            message: "queued".into(),
            current: 0,
            total: steps,
        }
    } else {
        StatusDetail {
            status: Status::Running,
            message: format!("provisioning step {done} of {steps}"),
            current: done,
            total: steps,
        }
    })
}
