//! The decisions behind the `http` capability: which URLs an adapter's `[[http.allow]]`
//! entries allow ([`pattern`], [`policy`]) and which IP addresses it may reach
//! ([`address`]). The client that sends requests lives in the `airlock` crate.

pub mod address;
pub mod pattern;
pub mod policy;
