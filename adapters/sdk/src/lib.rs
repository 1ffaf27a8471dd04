//! # airlock-sdk: write Airlock provisioning adapters in Rust
//!
//! An adapter is a type that implements [`Adapter`] (the contract's five operations) and is
//! exported with [`export!`]. It compiles to a WebAssembly component with
//! `cargo build --target wasm32-wasip2` or `cargo component build`, and the Airlock runtime
//! runs each call in a fresh sandbox: nothing survives between calls but what the adapter
//! keeps through [`state`].
//!
//! ```ignore
//! use airlock_sdk::{Adapter, Config, Params, ProvisionResult, StatusDetail, Credentials, Result};
//!
//! struct MyCloud;
//!
//! impl Adapter for MyCloud {
//!     fn validate_config(config: &Config) -> Result<()> {
//!         config.require_str("region")?;
//!         Ok(())
//!     }
//!     fn create(config: &Config, params: &Params, key: Option<&str>) -> Result<ProvisionResult> {
//!         # todo!()
//!     }
//!     fn status(config: &Config, instance_id: &str) -> Result<StatusDetail> { todo!() }
//!     fn destroy(config: &Config, instance_id: &str) -> Result<()> { todo!() }
//!     fn credentials(config: &Config, instance_id: &str) -> Result<Credentials> { todo!() }
//! }
//!
//! airlock_sdk::export!(MyCloud);
//! ```
//!
//! ## Optional interfaces
//! The contract's optional operations are opt-in, one cargo feature each; the runtime
//! detects at load time which ones a component exports:
//!
//! | feature | trait to implement | operations |
//! |---|---|---|
//! | `lifecycle` | [`Lifecycle`] | `pause`, `resume` |
//! | `costs` | [`Costs`] | `estimate_costs` |
//! | `rotation` | [`Rotation`] | `rotate_credentials` |
//!
//! [`export!`] exports every interface whose feature is on, so enabling a feature without
//! implementing its trait is a compile error that names the trait.
//!
//! ## Errors
//! Every operation returns [`Result`]; the six error kinds of the contract have one
//! constructor each on [`AdapterError`]. Capability errors convert with `?` into the kind
//! the caller should see (a state quota becomes `LIMIT`, a denied HTTP request `AUTH`, …).

mod bindings;
mod contract;
mod error;
mod export;
mod json;

pub mod http;
pub mod invocation;
pub mod log;
pub mod progress;
pub mod secrets;
pub mod state;

pub use contract::{
    Adapter, CostEstimate, Costs, Credentials, Lifecycle, Progress, ProvisionResult, Rotation,
    SecretManager, Status, StatusDetail,
};
pub use error::{AdapterError, ErrorCode, Result};
pub use json::{Config, Connection, Params};
pub use serde_json::{Value, json};

/// Implementation details used by [`export!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::*;
}
