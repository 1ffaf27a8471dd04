//! # Airlock
//!
//! Airlock runs *untrusted* provisioning adapters as WebAssembly components. Each call gets
//! a fresh instance under fuel, memory and wall-clock limits, and the guest reaches the
//! world only through capability imports its policy grants (`state`, `log`, `progress`,
//! allow-listed `http`, and `secrets` as opaque handles). Adapter errors, exhausted limits,
//! traps and broken contracts all come back in the contract's six error codes.
//!
//! ```no_run
//! use airlock::{Policy, Runtime, RuntimeConfig};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::with_data_dir("/var/lib/airlock"))?;
//! let adapter = runtime.load_file("example_adapter.wasm", Policy::default()).await?;
//!
//! let config = json!({ "region": "eu-west-1" });
//! adapter.validate_config(&config).await?;
//! let created = adapter.create(&config, &json!({ "name": "db1" }), Some("order-42")).await?;
//! let status = adapter.status(&config, &created.instance_id).await?;
//! println!("{} is {:?}", created.instance_id, status.status);
//! # Ok(()) }
//! ```
//!
//! For the receipt of a call (fuel, memory, wall time, which limit fired) and the guest's
//! logs, use [`Adapter::invoke`], which returns an [`Invocation`].
//!
//! This crate is the runtime alone. The `airlock` command is the `airlock-cli` crate and
//! the conformance checker the `airlock-conformance` crate, so that an embedder compiles
//! none of their dependencies (clap, tracing-subscriber, fakecloud) and builds no adapter.

mod adapter;
mod bindings;
mod breaker;
mod cache;
mod call;
mod capabilities;
mod contract;
mod datadir;
mod engine;
mod error;
mod operation;
mod retry;
mod runtime;
pub mod storage;

// The policy file and the checks on untrusted input live in `airlock-core` (no wasmtime),
// so that they can be fuzzed on their own; the paths inside this crate stay the same.
use airlock_core::policy;

pub use adapter::{Adapter, AdapterInfo, CallOptions, OptionalInterfaces};
pub use cache::CacheOutcome;
pub use capabilities::http::intercept;
pub use capabilities::log::LogRecord;
pub use capabilities::progress::ProgressReport;
pub use capabilities::secrets::SecretHandle;
pub use capabilities::secrets::source::{EnvSource, FileSource, SecretSource, SecretValue};
pub use contract::{
    AdapterError, CostEstimate, Credential, ErrorCode, ErrorOrigin, LimitKind, Progress,
    ProvisionResult, SecretManager, Status, StatusDetail,
};
pub use error::Error;
pub use operation::{Invocation, OPERATION_NAMES, Operation, Output, Receipt};
pub use policy::{AllowConfig, HttpConfig, Limits, Policy, PolicyError, SecretConfig};
pub use retry::RetryPolicy;
pub use runtime::{Runtime, RuntimeConfig, name_from_stem};
pub use storage::DatabaseUrl;
