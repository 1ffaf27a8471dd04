//! The fakecloud adapter with one `airlock check` rule broken, chosen by a cargo feature.
//! Every operation delegates to the fakecloud adapter (its source, compiled here as `base`);
//! the feature that is on maps one kind of provider failure to the wrong code, or leaks the
//! provider token.

#[path = "../../../fakecloud/src/adapter.rs"]
mod base;

use base::FakeCloud;

use airlock_sdk::{
    Adapter, AdapterError, Config, Credentials, ErrorCode, Params, ProvisionResult, Result,
    StatusDetail, log, secrets,
};

/// The broken adapter.
pub struct Broken;

/// The wrong code for one kind of failure, recognised by the SDK's messages for it.
fn misclassify(mut error: AdapterError) -> AdapterError {
    let message = error.message.as_str();
    let wrong =
        (cfg!(feature = "fault_rate-limited") && message.starts_with("provider answered HTTP 429"))
            .then_some(ErrorCode::Retryable)
            .or((cfg!(feature = "fault_server-error")
                && message.starts_with("provider answered HTTP 5"))
            .then_some(ErrorCode::Permanent))
            .or((cfg!(feature = "fault_unauthorized")
                && message.starts_with("provider answered HTTP 401"))
            .then_some(ErrorCode::Permanent))
            .or((cfg!(feature = "fault_reset-after-processing")
                && message.starts_with("HTTP connection failed"))
            .then_some(ErrorCode::Permanent))
            .or((cfg!(feature = "fault_slow-response")
                && message.starts_with("HTTP request timed out"))
            .then_some(ErrorCode::Permanent));
    if let Some(code) = wrong {
        error.code = code;
    }
    error
}

impl Adapter for Broken {
    fn validate_config(config: &Config) -> Result<()> {
        FakeCloud::validate_config(config)
    }

    fn create(config: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
        if cfg!(feature = "credentials_no-secret") {
            let token = secrets::get("fakecloud-token")?;
            log::info(&format!("creating with token {}", secrets::reveal(&token)?));
        }
        FakeCloud::create(config, params, key).map_err(misclassify)
    }

    fn status(config: &Config, instance_id: &str) -> Result<StatusDetail> {
        FakeCloud::status(config, instance_id).map_err(misclassify)
    }

    fn destroy(config: &Config, instance_id: &str) -> Result<()> {
        FakeCloud::destroy(config, instance_id).map_err(misclassify)
    }

    fn credentials(config: &Config, instance_id: &str) -> Result<Credentials> {
        FakeCloud::credentials(config, instance_id).map_err(misclassify)
    }
}

airlock_sdk::export!(Broken);
