//! # airlock-core
//!
//! The parts of [Airlock](https://example.invalid/airlock) that judge untrusted input
//! without running it: the per-adapter [`policy`] file, a tenant's [`ceiling`] over it,
//! the outbound-HTTP allow-list ([`http::pattern`], [`http::policy`]) and address rules
//! ([`http::address`]), the secret leak [`guard`], and the [`contract`] checks on what a
//! guest returned. None of it needs wasmtime or an async runtime, which is what lets
//! `fuzz/` build these functions with coverage instrumentation in seconds. The `airlock` crate re-exports what embedders use.
//!
//! ```
//! use airlock_core::policy::Policy;
//! use airlock_core::http::policy::HttpPolicy;
//!
//! let policy = Policy::from_toml(
//!     "[[http.allow]]\nurl = \"https://api.example.com/v1/\"\nmethods = [\"GET\"]\n",
//!     "example.toml",
//! )?;
//! let http = HttpPolicy::compile(&policy)?;
//! let url = url::Url::parse("https://API.example.com/v1/databases")?;
//! assert_eq!(http.decide("GET", &url)?.location, "line 1");
//! assert!(http.decide("DELETE", &url).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ceiling;
pub mod contract;
pub mod guard;
pub mod http;
pub mod policy;

pub use policy::PolicyError;
