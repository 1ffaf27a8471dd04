//! The example adapter with one `airlock check` rule broken, chosen by a cargo feature.
//! Every operation delegates to the example adapter (its source, compiled here as `base`);
//! the feature that is on changes one answer. Without a feature it is the example adapter.

#[path = "../../../example/src/adapter.rs"]
mod base;

use base::Example;

use std::time::{SystemTime, UNIX_EPOCH};

use airlock_sdk::{
    Adapter, AdapterError, Config, CostEstimate, Costs, Credentials, Lifecycle, Params,
    ProvisionResult, Result, Rotation, Status, StatusDetail, state,
};
use serde::Deserialize;

/// The broken adapter.
pub struct Broken;

/// The part of the example's instance record the status breakages need.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Timing {
    created_at_ms: u64,
    steps: u64,
    step_millis: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn exists(instance_id: &str) -> Result<bool> {
    Ok(state::get(&format!("instance:{instance_id}"))?.is_some())
}

fn destroyed(instance_id: &str) -> Result<bool> {
    Ok(state::get(&format!("destroyed:{instance_id}"))?.is_some())
}

impl Adapter for Broken {
    fn validate_config(config: &Config) -> Result<()> {
        if cfg!(feature = "validate-config_rejects") {
            return Ok(());
        }
        if cfg!(feature = "validate-config_accepts") {
            return Err(AdapterError::validation("no config is good enough"));
        }
        if cfg!(feature = "errors_well-formed") {
            return Example::validate_config(config)
                .map_err(|_| AdapterError::validation("VALIDATION"));
        }
        if cfg!(feature = "resources") {
            let ballast = vec![1u8; 58 << 20];
            std::hint::black_box(&ballast);
        }
        Example::validate_config(config)
    }

    fn create(config: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        if cfg!(feature = "create_idempotent") {
            // Forgets the key: every call makes a new instance and says so.
            return Example::create(config, params, None).map(|r| r.with_idempotency_key(key));
        }
        Example::create(config, params, key)
    }

    fn status(config: &Config, instance_id: &str) -> Result<StatusDetail> {
        if cfg!(feature = "status_read-only") {
            state::set("last-status-call", now_ms().to_string().as_bytes(), None)?;
        }
        if cfg!(feature = "status_after-destroy") && destroyed(instance_id)? {
            return Ok(StatusDetail::new(Status::Success).with_progress(1, 1));
        }
        let mut detail = Example::status(config, instance_id)?;
        if cfg!(feature = "status_progress")
            && matches!(detail.status, Status::Pending | Status::Running)
            && let Some(progress) = detail.progress.as_mut()
        {
            progress.current = progress.total - progress.current;
        }
        if cfg!(feature = "status_terminal") && detail.status == Status::Success {
            let timing: Option<Timing> = state::get_json(&format!("instance:{instance_id}"))?;
            if let Some(t) = timing {
                let done = t.created_at_ms + t.steps * t.step_millis;
                if now_ms() > done + 400 {
                    detail = StatusDetail::new(Status::Running).with_message("maintenance");
                }
            }
        }
        Ok(detail)
    }

    fn destroy(config: &Config, instance_id: &str) -> Result<()> {
        if cfg!(feature = "destroy_idempotent") && !exists(instance_id)? {
            return Err(AdapterError::permanent(format!(
                "instance {instance_id:?} not found"
            )));
        }
        Example::destroy(config, instance_id)
    }

    fn credentials(config: &Config, instance_id: &str) -> Result<Credentials> {
        if cfg!(feature = "credentials_ephemeral") {
            return Err(AdapterError::permanent("credentials are not supported"));
        }
        Example::credentials(config, instance_id)
    }
}

impl Lifecycle for Broken {
    fn pause(config: &Config, instance_id: &str) -> Result<StatusDetail> {
        if cfg!(feature = "optional_lifecycle") {
            return Err(AdapterError::internal("pause is not implemented"));
        }
        Example::pause(config, instance_id)
    }

    fn resume(config: &Config, instance_id: &str) -> Result<StatusDetail> {
        Example::resume(config, instance_id)
    }
}

impl Costs for Broken {
    fn estimate_costs(config: &Config, instance_id: &str) -> Result<CostEstimate> {
        if cfg!(feature = "optional_costs") {
            return Err(AdapterError::internal("estimate-costs is not implemented"));
        }
        Example::estimate_costs(config, instance_id)
    }
}

impl Rotation for Broken {
    fn rotate_credentials(config: &Config, instance_id: &str) -> Result<Credentials> {
        if cfg!(feature = "optional_rotation") {
            return Err(AdapterError::internal(
                "rotate-credentials is not implemented",
            ));
        }
        Example::rotate_credentials(config, instance_id)
    }
}

airlock_sdk::export!(Broken);
