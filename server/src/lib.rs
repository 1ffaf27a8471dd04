//! Airlock as a multi-tenant service.
//!
//! A tenant is a team or customer of the platform that embeds Airlock: it publishes and
//! runs adapters of its own, isolated from every other tenant's. This crate holds what the
//! service knows of tenants — their API keys ([`apikey`]) and the operator's administration
//! of them ([`tenants`]: create, list, rotate a key, set a ceiling) — on the runtime's
//! storage ([`airlock::storage::service::ServiceStore`]), so the `airlock tenant` commands
//! and a running service see the same rows, on SQLite or on PostgreSQL — and the service
//! itself over HTTP ([`http`], `airlock serve`; docs/service.md), with the registry's
//! [`admission`] of uploaded versions, per-tenant call [`quotas`] and Prometheus
//! [`metrics`].

pub mod admission;
pub mod apikey;
pub mod http;
pub mod loaded;
pub mod metrics;
pub mod quotas;
pub mod recorder;
pub mod tenants;
pub mod upkeep;

pub use apikey::ApiKey;
pub use tenants::{TenantError, Tenants};
