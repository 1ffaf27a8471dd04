//! The seed's mock adapter, on the Airlock SDK. Its "provider" is its own state store: an
//! instance is a record under `instance:{id}`, an idempotency key a pointer under `key:{key}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_sdk::{
    Adapter, AdapterError, Config, Connection, CostEstimate, Costs, Credentials, Lifecycle, Params,
    ProvisionResult, Result, Rotation, Status, StatusDetail, json, log, progress, state,
};
use serde::{Deserialize, Serialize};

const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-south-1"];
const PLANS: &[&str] = &["small", "medium", "large"];
const CREDENTIAL_TTL: Duration = Duration::from_secs(15 * 60);

/// The adapter. Every operation is an associated function: each call is a fresh instance.
pub struct Example;

/// The validated provider config.
struct Settings {
    region: String,
    plan: String,
    step_millis: u64,
}

impl Settings {
    fn from_config(config: &Config) -> Result<Settings> {
        let region = config.require_str("region")?;
        if !REGIONS.contains(&region) {
            return Err(AdapterError::validation(format!(
                "config.region: unsupported region {region:?}; expected one of {REGIONS:?}"
            )));
        }
        let plan = config.optional_str("plan")?.unwrap_or("small");
        if !PLANS.contains(&plan) {
            return Err(AdapterError::validation(format!(
                "config.plan: unknown plan {plan:?}; expected one of {PLANS:?}"
            )));
        }
        let step_millis = config
            .optional_u64("stepMillis", 0..=60_000)?
            .unwrap_or(500);
        Ok(Settings {
            region: region.to_owned(),
            plan: plan.to_owned(),
            step_millis,
        })
    }
}

/// What the mock provider keeps per instance.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instance {
    name: String,
    region: String,
    plan: String,
    steps: u64,
    step_millis: u64,
    created_at_ms: u64,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    credential_generation: u64,
}

impl Instance {
    fn connection(&self, id: &str) -> Connection {
        Connection::new()
            .with("host", format!("{id}.{}.example.internal", self.region))
            .with("port", 5432)
            .with("database", self.name.clone())
    }

    fn metadata(&self) -> serde_json::Value {
        json!({ "plan": self.plan, "region": self.region })
    }

    /// Read-only: where provisioning is, from the time elapsed since creation.
    fn status(&self, now_ms: u64) -> StatusDetail {
        let elapsed = now_ms.saturating_sub(self.created_at_ms);
        // With no step time, provisioning is instant.
        let done = elapsed.checked_div(self.step_millis).unwrap_or(self.steps);
        if done >= self.steps {
            let detail = StatusDetail::new(Status::Success).with_progress(self.steps, self.steps);
            if self.paused {
                detail.with_message("paused")
            } else {
                detail.with_message("ready")
            }
        } else if done == 0 {
            StatusDetail::new(Status::Pending)
                .with_progress(0, self.steps)
                .with_message("queued")
        } else {
            StatusDetail::new(Status::Running)
                .with_progress(done, self.steps)
                .with_message(format!("provisioning step {done} of {}", self.steps))
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn instance_key(id: &str) -> String {
    format!("instance:{id}")
}

fn tombstone_key(id: &str) -> String {
    format!("destroyed:{id}")
}

fn load(id: &str) -> Result<Instance> {
    state::get_json(&instance_key(id))?.ok_or_else(|| {
        if matches!(state::get(&tombstone_key(id)), Ok(Some(_))) {
            AdapterError::permanent(format!("instance {id:?} was destroyed"))
        } else {
            AdapterError::permanent(format!("instance {id:?} not found"))
        }
    })
}

/// A short, stable, non-cryptographic digest (FNV-1a) for ids and mock tokens.
fn fnv(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A new instance id: derived from the key when there is one (so even a lost pointer
/// yields the same id), otherwise claimed atomically from a counter.
fn new_instance_id(key: Option<&str>) -> Result<String> {
    if let Some(key) = key {
        return Ok(format!("ex-{:012x}", fnv(&["key", key]) & 0xffff_ffff_ffff));
    }
    for attempt in 0..64u64 {
        let seq: u64 = state::get_json("seq")?.unwrap_or(0) + 1 + attempt;
        if state::insert_new_json(&format!("seq-claim:{seq}"), &seq, None)? {
            state::set_json("seq", &seq, None)?;
            return Ok(format!("ex-{seq:06}"));
        }
    }
    Err(AdapterError::retryable(
        "could not claim an instance id; too many concurrent creates",
    ))
}

fn ephemeral(id: &str, instance: &Instance) -> Credentials {
    let issued = now_ms().to_string();
    let generation = instance.credential_generation.to_string();
    let token = format!("tok_{:016x}", fnv(&[id, &generation, &issued]));
    Credentials::ephemeral(
        json!({ "username": format!("app_{}", instance.name), "token": token }),
        CREDENTIAL_TTL,
    )
}

impl Adapter for Example {
    fn validate_config(config: &Config) -> Result<()> {
        Settings::from_config(config).map(|_| ())
    }

    fn create(config: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        let settings = Settings::from_config(config)?;
        let name = params.require_str("name")?.to_owned();
        let steps = params.optional_u64("steps", 1..=100)?.unwrap_or(4);
        let wait = match params.get("wait") {
            None => false,
            Some(value) => value
                .as_bool()
                .ok_or_else(|| AdapterError::validation("params.wait: expected true or false"))?,
        };

        if let Some(key) = key
            && let Some(id) = state::get_json::<String>(&format!("key:{key}"))?
        {
            let instance = load(&id)?;
            log::info(&format!(
                "idempotency key {key:?} seen before: returning {id}"
            ));
            return Ok(
                ProvisionResult::existing(id.clone(), instance.connection(&id))
                    .with_metadata(instance.metadata())
                    .with_idempotency_key(Some(key)),
            );
        }

        let id = new_instance_id(key)?;
        let instance = Instance {
            name,
            region: settings.region,
            plan: settings.plan,
            steps,
            step_millis: settings.step_millis,
            created_at_ms: now_ms(),
            paused: false,
            credential_generation: 0,
        };
        // `insert_new` makes a concurrent create with the same key lose cleanly: the second
        // one finds the record and reports it as existing.
        let created = state::insert_new_json(&instance_key(&id), &instance, None)?;
        if let Some(key) = key {
            state::set_json(
                &format!("key:{key}"),
                &id,
                Some(Duration::from_secs(7 * 24 * 3600)),
            )?;
        }
        let instance = if created { instance } else { load(&id)? };
        log::info(&format!("created {id} in {}", instance.region));
        if wait && created {
            // A provider whose create returns only when the resource is ready: report each
            // step as it completes.
            for step in 1..=instance.steps {
                std::thread::sleep(Duration::from_millis(instance.step_millis));
                progress::report(step, instance.steps, Some("provisioning"));
            }
        }
        let result = if created {
            ProvisionResult::created(id.clone(), instance.connection(&id))
        } else {
            ProvisionResult::existing(id.clone(), instance.connection(&id))
        };
        Ok(result
            .with_metadata(instance.metadata())
            .with_idempotency_key(key))
    }

    fn status(_config: &Config, instance_id: &str) -> Result<StatusDetail> {
        match load(instance_id) {
            Ok(instance) => Ok(instance.status(now_ms())),
            Err(_) if matches!(state::get(&tombstone_key(instance_id)), Ok(Some(_))) => {
                Ok(StatusDetail::new(Status::Cancelled).with_message("instance was destroyed"))
            }
            Err(error) => Err(error),
        }
    }

    fn destroy(_config: &Config, instance_id: &str) -> Result<()> {
        let existed = state::delete(&instance_key(instance_id))?;
        state::set(
            &tombstone_key(instance_id),
            b"1",
            Some(Duration::from_secs(7 * 24 * 3600)),
        )?;
        log::info(&if existed {
            format!("destroyed {instance_id}")
        } else {
            format!("{instance_id} already gone; nothing to do")
        });
        Ok(())
    }

    fn credentials(_config: &Config, instance_id: &str) -> Result<Credentials> {
        let instance = load(instance_id)?;
        if instance.status(now_ms()).status != Status::Success {
            return Err(AdapterError::retryable(format!(
                "instance {instance_id:?} is still provisioning; credentials come when it is ready"
            )));
        }
        Ok(ephemeral(instance_id, &instance))
    }
}

fn set_paused(instance_id: &str, paused: bool) -> Result<StatusDetail> {
    let mut instance = load(instance_id)?;
    let now = now_ms();
    if instance.status(now).status != Status::Success {
        return Err(AdapterError::validation(format!(
            "instance {instance_id:?} is still provisioning and cannot be paused or resumed yet"
        )));
    }
    instance.paused = paused;
    state::set_json(&instance_key(instance_id), &instance, None)?;
    Ok(instance.status(now))
}

impl Lifecycle for Example {
    fn pause(_config: &Config, instance_id: &str) -> Result<StatusDetail> {
        set_paused(instance_id, true)
    }

    fn resume(_config: &Config, instance_id: &str) -> Result<StatusDetail> {
        set_paused(instance_id, false)
    }
}

impl Costs for Example {
    fn estimate_costs(_config: &Config, instance_id: &str) -> Result<CostEstimate> {
        let instance = load(instance_id)?;
        let cents_per_hour: u64 = match instance.plan.as_str() {
            "small" => 4,
            "medium" => 16,
            _ => 64,
        };
        let cents = |c: u64| format!("{}.{:02}", c / 100, c % 100);
        // A paused instance still pays for its storage: a quarter of the price.
        let hourly = if instance.paused {
            cents_per_hour / 4
        } else {
            cents_per_hour
        };
        Ok(CostEstimate {
            currency: "USD".into(),
            hourly: cents(hourly),
            monthly: cents(hourly * 730),
            breakdown: Some(json!({ "plan": instance.plan, "paused": instance.paused })),
        })
    }
}

impl Rotation for Example {
    fn rotate_credentials(_config: &Config, instance_id: &str) -> Result<Credentials> {
        let mut instance = load(instance_id)?;
        instance.credential_generation += 1;
        state::set_json(&instance_key(instance_id), &instance, None)?;
        Ok(ephemeral(instance_id, &instance))
    }
}
