//! The per-adapter policy: what an adapter may use and how much. Read from TOML, checked
//! when the adapter is loaded (unknown keys and out-of-range values fail the load with the
//! line they are on), enforced on every call.
//!
//! ```toml
//! # Every key is optional; these are the defaults.
//! name = "example"            # state namespace; default: the component's file stem
//!
//! [limits]
//! fuel = 1_000_000_000        # wasm instructions, roughly, per call
//! memory_mib = 64             # linear memory, all memories of the instance together
//! deadline_ms = 10_000        # wall clock per call, guest and host imports together
//! table_elements = 20_000     # elements per table
//! max_output_bytes = 1_048_576
//! max_json_bytes = 65_536     # each JSON document returned (connection, metadata, raw, …)
//! max_json_depth = 32         # nesting of arrays and objects in such a document
//! stdio_bytes = 65_536        # guest stdout and stderr kept, each; the rest is dropped
//! log_records = 256           # per call; more are counted and dropped
//! log_line_bytes = 4_096      # longer log messages are cut
//! progress_reports = 1_024    # per call
//! state_value_bytes = 65_536
//! state_key_bytes = 256
//! state_keys = 10_000         # per adapter
//! state_ops_per_call = 1_000
//! max_instance_id_bytes = 256
//! max_credential_ttl_secs = 43_200
//! max_concurrent_calls = 64   # per adapter; more wait their turn
//! breaker_failures = 10       # consecutive RETRYABLE/AUTH failures that open the circuit
//! breaker_cooldown_ms = 30_000
//!
//! [http]
//! max_requests_per_call = 32
//! max_request_body_bytes = 1_048_576
//! max_response_body_bytes = 4_194_304
//! request_timeout_ms = 10_000 # never past the call's deadline
//! max_url_bytes = 8_192       # longest request URL
//! max_request_headers = 64    # headers per request, secret headers included
//! max_request_header_bytes = 16_384 # names and values together, secrets in place
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::contract::ContractBounds;

/// A policy that cannot be read, parsed or accepted. `airlock::Error::Policy` carries the
/// same two fields and prints the same text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {origin}: {message}")]
pub struct PolicyError {
    /// The file (or other origin) of the policy.
    pub origin: String,
    /// What is wrong, with the line where there is one.
    pub message: String,
}

/// An adapter's policy. It serialises back to TOML (`toml::to_string`) that parses to the
/// same policy; where it was read from is not part of it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The adapter's name: its state namespace and its name in logs and receipts. Defaults
    /// to the component file's stem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resource limits per call.
    #[serde(default)]
    pub limits: Limits,
    /// Outbound HTTP: the allow-list and its bounds. Empty means deny all.
    #[serde(default)]
    pub http: HttpConfig,
    /// Secrets granted to the adapter, by the name the guest asks for.
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<SecretConfig>>,
    /// Where the policy was read from, for error messages.
    #[serde(skip)]
    pub origin: Option<String>,
    /// The TOML text, so that load-time errors can name lines.
    #[serde(skip)]
    source: Option<Arc<str>>,
}

/// The `[http]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `[[http.allow]]` entries; a request must match one.
    pub allow: Vec<Spanned<AllowConfig>>,
    /// Requests per call.
    pub max_requests_per_call: u32,
    /// Largest request body, in bytes.
    pub max_request_body_bytes: u64,
    /// Largest response body, in bytes.
    pub max_response_body_bytes: u64,
    /// Per-request timeout, in milliseconds (always inside the call's deadline).
    pub request_timeout_ms: u64,
    /// Longest request URL, in bytes, as the guest wrote it.
    pub max_url_bytes: u64,
    /// Headers per request, secret headers included. The host checks the count before it
    /// builds a single header, so a guest cannot make it hold more (past 32,768 entries
    /// the `http` crate's header map would abort the process).
    pub max_request_headers: u32,
    /// Bytes of all request headers together: every name and value, with each secret
    /// header counted as it will be sent (its secret in place of every `{secret}`).
    pub max_request_header_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow: Vec::new(),
            max_requests_per_call: 32,
            max_request_body_bytes: 1024 * 1024,
            max_response_body_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 10_000,
            max_url_bytes: 8 * 1024,
            max_request_headers: 64,
            max_request_header_bytes: 16 * 1024,
        }
    }
}

/// One `[[http.allow]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {
    /// `scheme://host[:port][/path-prefix]`; the host may start with `*.` to allow every
    /// subdomain (not the domain itself). The port defaults to the scheme's.
    pub url: String,
    /// Allowed methods (`GET`, `POST`, …); all if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Non-public address ranges (CIDR) this destination may resolve to, such as
    /// `127.0.0.1/32` for a provider on the same machine. Public addresses need no grant.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// One `[secrets.NAME]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// Where the value comes from: `env:VARIABLE` or `file:/path`.
    pub source: String,
    /// URL patterns (same syntax as `[[http.allow]]` urls) of the requests the host may
    /// place this secret into.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Let the guest read the value (for signing schemes); logged on every use.
    #[serde(default)]
    pub reveal: bool,
}

/// Resource limits, per call unless noted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel per call (about one unit per wasm instruction).
    pub fuel: u64,
    /// Linear memory of the instance, all memories together, in MiB.
    pub memory_mib: u64,
    /// Wall-clock deadline of a call, in milliseconds.
    pub deadline_ms: u64,
    /// Elements per table.
    pub table_elements: u64,
    /// Longest message, locator or amount the guest may return, in bytes.
    pub max_output_bytes: u64,
    /// Largest JSON document the guest may return (`connection`, `metadata`, `raw`,
    /// credential `values`, cost `breakdown`), in bytes as the guest serialized it.
    pub max_json_bytes: u64,
    /// Deepest nesting of arrays and objects in such a document (the document is 1).
    pub max_json_depth: u32,
    /// Bytes of guest stdout, and of stderr, kept per call.
    pub stdio_bytes: u64,
    /// Log records kept per call.
    pub log_records: u32,
    /// Longest log message kept, in bytes.
    pub log_line_bytes: u32,
    /// Progress reports kept per call.
    pub progress_reports: u32,
    /// Largest state value, in bytes.
    pub state_value_bytes: u64,
    /// Longest state key, in bytes.
    pub state_key_bytes: u32,
    /// State keys per adapter.
    pub state_keys: u64,
    /// State operations per call.
    pub state_ops_per_call: u32,
    /// Longest instance id, in bytes.
    pub max_instance_id_bytes: u32,
    /// Longest life of an ephemeral credential, in seconds.
    pub max_credential_ttl_secs: u64,
    /// Calls of this adapter running at once; more wait their turn.
    pub max_concurrent_calls: u32,
    /// Consecutive `RETRYABLE` or `AUTH` failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls, in milliseconds.
    pub breaker_cooldown_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            memory_mib: 64,
            deadline_ms: 10_000,
            table_elements: 20_000,
            max_output_bytes: 1024 * 1024,
            max_json_bytes: 64 * 1024,
            max_json_depth: 32,
            stdio_bytes: 64 * 1024,
            log_records: 256,
            log_line_bytes: 4096,
            progress_reports: 1024,
            state_value_bytes: 64 * 1024,
            state_key_bytes: 256,
            state_keys: 10_000,
            state_ops_per_call: 1000,
            max_instance_id_bytes: 256,
            max_credential_ttl_secs: 12 * 3600,
            max_concurrent_calls: 64,
            breaker_failures: 10,
            breaker_cooldown_ms: 30_000,
        }
    }
}

impl Limits {
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib * 1024 * 1024
    }

    /// The deadline as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The bounds the contract checks apply to this adapter's output.
    pub fn contract_bounds(&self) -> ContractBounds {
        ContractBounds {
            max_instance_id_bytes: self.max_instance_id_bytes as usize,
            max_credential_ttl: Duration::from_secs(self.max_credential_ttl_secs),
            max_message_bytes: self.max_output_bytes as usize,
            max_json_bytes: self.max_json_bytes as usize,
            max_json_depth: self.max_json_depth as usize,
        }
    }

    /// Every limit with its key (`limits.fuel`) and the range a policy may give it;
    /// `max_memory_bytes` is the runtime's memory ceiling per instance.
    pub fn bounds(&self, max_memory_bytes: u64) -> [Bound; 20] {
        [
            Bound::new(
                "limits.max_concurrent_calls",
                u64::from(self.max_concurrent_calls),
                1,
                100_000,
            ),
            Bound::new(
                "limits.breaker_failures",
                u64::from(self.breaker_failures),
                1,
                1_000_000,
            ),
            Bound::new(
                "limits.breaker_cooldown_ms",
                self.breaker_cooldown_ms,
                1,
                24 * 3600 * 1000,
            ),
            Bound::new("limits.fuel", self.fuel, 10_000, 1 << 50),
            Bound::new(
                "limits.memory_mib",
                self.memory_mib,
                1,
                max_memory_bytes / (1024 * 1024),
            ),
            Bound::new("limits.deadline_ms", self.deadline_ms, 1, 15 * 60 * 1000),
            Bound::new("limits.table_elements", self.table_elements, 16, 10_000_000),
            Bound::new(
                "limits.max_output_bytes",
                self.max_output_bytes,
                1024,
                64 * 1024 * 1024,
            ),
            Bound::new(
                "limits.max_json_bytes",
                self.max_json_bytes,
                2,
                16 * 1024 * 1024,
            ),
            // serde_json refuses documents deeper than 128 whatever the policy says.
            Bound::new(
                "limits.max_json_depth",
                u64::from(self.max_json_depth),
                1,
                128,
            ),
            Bound::new("limits.stdio_bytes", self.stdio_bytes, 0, 16 * 1024 * 1024),
            // What a guest may make the host keep per call: bounded so that no policy
            // lets one call hold gigabytes of logs or progress.
            Bound::new(
                "limits.log_records",
                u64::from(self.log_records),
                0,
                100_000,
            ),
            Bound::new(
                "limits.log_line_bytes",
                u64::from(self.log_line_bytes),
                16,
                1024 * 1024,
            ),
            Bound::new(
                "limits.progress_reports",
                u64::from(self.progress_reports),
                0,
                100_000,
            ),
            Bound::new(
                "limits.state_ops_per_call",
                u64::from(self.state_ops_per_call),
                1,
                1_000_000,
            ),
            Bound::new(
                "limits.state_value_bytes",
                self.state_value_bytes,
                1,
                16 * 1024 * 1024,
            ),
            Bound::new(
                "limits.state_key_bytes",
                u64::from(self.state_key_bytes),
                1,
                4096,
            ),
            Bound::new("limits.state_keys", self.state_keys, 1, 100_000_000),
            Bound::new(
                "limits.max_instance_id_bytes",
                u64::from(self.max_instance_id_bytes),
                1,
                65_536,
            ),
            Bound::new(
                "limits.max_credential_ttl_secs",
                self.max_credential_ttl_secs,
                1,
                31 * 24 * 3600,
            ),
        ]
    }

    /// Check every limit against its allowed range and the runtime's ceilings;
    /// `max_memory_bytes` is the runtime's memory ceiling per instance.
    pub fn validate(&self, max_memory_bytes: u64) -> Result<(), String> {
        self.bounds(max_memory_bytes)
            .iter()
            .try_for_each(Bound::check)
    }
}

impl HttpConfig {
    /// Every numeric field with its key (`http.max_url_bytes`) and the range a policy may
    /// give it.
    pub fn bounds(&self) -> [Bound; 7] {
        [
            Bound::new(
                "http.max_requests_per_call",
                u64::from(self.max_requests_per_call),
                1,
                10_000,
            ),
            Bound::new(
                "http.max_request_body_bytes",
                self.max_request_body_bytes,
                0,
                64 * 1024 * 1024,
            ),
            Bound::new(
                "http.max_response_body_bytes",
                self.max_response_body_bytes,
                1,
                64 * 1024 * 1024,
            ),
            Bound::new(
                "http.request_timeout_ms",
                self.request_timeout_ms,
                1,
                15 * 60 * 1000,
            ),
            Bound::new("http.max_url_bytes", self.max_url_bytes, 64, 64 * 1024),
            // The `http` crate's header map holds at most 32,768 entries; 1,024 keeps every
            // policy far from it.
            Bound::new(
                "http.max_request_headers",
                u64::from(self.max_request_headers),
                1,
                1024,
            ),
            Bound::new(
                "http.max_request_header_bytes",
                self.max_request_header_bytes,
                256,
                1024 * 1024,
            ),
        ]
    }
}

/// One numeric field of a policy, with the range the policy validator accepts for it
/// (both ends inclusive). A tenant's [`Ceiling`](crate::ceiling::Ceiling) caps the same
/// fields by the same keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The field's key, `table.field` (`limits.fuel`, `http.max_url_bytes`).
    pub key: &'static str,
    /// The policy's value.
    pub value: u64,
    /// The least a policy may give it.
    pub min: u64,
    /// The most a policy may give it.
    pub max: u64,
}

impl Bound {
    fn new(key: &'static str, value: u64, min: u64, max: u64) -> Bound {
        Bound {
            key,
            value,
            min,
            max,
        }
    }

    /// `Err("limits.fuel = 5 is out of range (10000 to 1125899906842624)")` when the value
    /// is outside the range.
    pub fn check(&self) -> Result<(), String> {
        if self.value < self.min || self.value > self.max {
            Err(format!(
                "{} = {} is out of range ({} to {})",
                self.key, self.value, self.min, self.max
            ))
        } else {
            Ok(())
        }
    }
}

impl Policy {
    /// Parse a policy from TOML text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let mut policy: Policy = toml::from_str(text).map_err(|e| PolicyError {
            origin: origin.to_owned(),
            message: describe_toml_error(text, &e),
        })?;
        policy.origin = Some(origin.to_owned());
        policy.source = Some(Arc::from(text));
        Ok(policy)
    }

    /// Read and parse a policy file.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            origin: origin.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Policy::from_toml(&text, &origin)
    }

    /// The TOML text the policy was parsed from; `None` for a policy built in code.
    pub fn source_text(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Where a spanned item starts: `line N`, or `fallback` for a policy built in code.
    pub fn locate(&self, span: std::ops::Range<usize>, fallback: &str) -> String {
        match &self.source {
            Some(text) => format!(
                "line {}",
                text[..span.start.min(text.len())].matches('\n').count() + 1
            ),
            None => fallback.to_owned(),
        }
    }

    /// The name used in errors for this policy: its origin, else `component`.
    pub fn origin_or<'a>(&'a self, component: &'a str) -> &'a str {
        self.origin.as_deref().unwrap_or(component)
    }

    /// Check the policy for an adapter load; errors name the policy file, or else the
    /// component (`origin`) the policy came with. `max_memory_bytes` is the runtime's
    /// memory ceiling per instance.
    pub fn validate(&self, origin: &str, max_memory_bytes: u64) -> Result<(), PolicyError> {
        let origin = self.origin_or(origin);
        let fail = |message: String| PolicyError {
            origin: origin.to_owned(),
            message,
        };
        self.http
            .bounds()
            .iter()
            .try_for_each(Bound::check)
            .map_err(fail)?;
        if let Some(name) = &self.name {
            validate_name(name).map_err(fail)?;
        }
        self.limits.validate(max_memory_bytes).map_err(fail)
    }
}

/// Check an adapter name: 1 to 64 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name = {name:?} is not a valid adapter name (1 to 64 of a-z, 0-9, '-', '_', starting with a letter or digit)"
        ))
    }
}

pub(crate) fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().to_owned();
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {message} (`{source}`)")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_is_all_defaults() {
        let policy = Policy::from_toml("", "p.toml").unwrap();
        assert_eq!(policy.limits, Limits::default());
        assert_eq!(
            (policy.name, policy.origin.as_deref()),
            (None, Some("p.toml"))
        );
        assert_eq!(policy.limits.memory_bytes(), 64 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let err = Policy::from_toml("name = \"a\"\n[limits]\nfuell = 5\n", "p.toml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("policy p.toml: line 3: unknown field `fuell`"),
            "{text}"
        );
    }

    #[test]
    fn wrong_type_names_its_line() {
        let err = Policy::from_toml("[limits]\nmemory_mib = \"lots\"\n", "p.toml").unwrap_err();
        assert!(
            err.to_string()
                .contains("line 2: invalid type: string \"lots\""),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_limits_are_refused() {
        let policy = Policy::from_toml("[limits]\nmemory_mib = 100000\n", "p.toml").unwrap();
        let err = policy.validate("p.toml", 4 << 30).unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy p.toml: limits.memory_mib = 100000 is out of range (1 to 4096)"
        );
    }

    #[test]
    fn http_bounds_have_defaults_and_ranges() {
        let policy = Policy::from_toml("", "p.toml").unwrap();
        assert_eq!(
            (
                policy.http.max_url_bytes,
                policy.http.max_request_headers,
                policy.http.max_request_header_bytes
            ),
            (8192, 64, 16384)
        );
        for (text, message) in [
            (
                "[http]\nmax_request_headers = 0\n",
                "policy p.toml: http.max_request_headers = 0 is out of range (1 to 1024)",
            ),
            (
                "[http]\nmax_request_headers = 40000\n",
                "policy p.toml: http.max_request_headers = 40000 is out of range (1 to 1024)",
            ),
            (
                "[http]\nmax_request_header_bytes = 100\n",
                "policy p.toml: http.max_request_header_bytes = 100 is out of range (256 to 1048576)",
            ),
            (
                "[http]\nmax_url_bytes = 1000000\n",
                "policy p.toml: http.max_url_bytes = 1000000 is out of range (64 to 65536)",
            ),
        ] {
            let policy = Policy::from_toml(text, "p.toml").unwrap();
            assert_eq!(
                policy.validate("p.toml", 4 << 30).unwrap_err().to_string(),
                message
            );
        }
        let policy = Policy::from_toml(
            "[http]\nmax_url_bytes = 512\nmax_request_headers = 1024\nmax_request_header_bytes = 1048576\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(policy.validate("p.toml", 4 << 30), Ok(()));
    }

    #[test]
    fn what_a_guest_may_make_the_host_keep_is_bounded() {
        let policy = Policy::from_toml("[limits]\nlog_records = 4294967295\n", "p.toml").unwrap();
        assert_eq!(
            policy.validate("p.toml", 4 << 30).unwrap_err().to_string(),
            "policy p.toml: limits.log_records = 4294967295 is out of range (0 to 100000)"
        );
        let policy = Policy::from_toml("[limits]\nlog_line_bytes = 8\n", "p.toml").unwrap();
        assert_eq!(
            policy.validate("p.toml", 4 << 30).unwrap_err().to_string(),
            "policy p.toml: limits.log_line_bytes = 8 is out of range (16 to 1048576)"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("fake-cloud_2").is_ok());
        for bad in ["", "Upper", "-x", "a/b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
