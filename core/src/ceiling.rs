//! A tenant's ceiling: the most the operator lets one tenant's adapters have. It is TOML in
//! the policy's shape, read once per tenant, and [`Ceiling::check`] lists every way a
//! policy asks for more, each with the policy line that asks. The service's admission step
//! runs it on every uploaded version; `docs/ceiling.md` is the reference.
//!
//! ```toml
//! admission = "refuse"          # or "warn": a version failing conformance rules is stored, flagged
//!
//! [limits]                      # the most each policy limit may be, by its [limits] name
//! fuel = 2_000_000_000
//! memory_mib = 128
//! breaker_cooldown_ms = 10_000  # the one floor: a policy's cooldown may be no *shorter*
//!
//! [http]
//! max_requests_per_call = 32    # maxima of the policy's numeric [http] fields, same names
//! allow = ["https://api.example.com/v1/", "https://*.amazonaws.com/"]
//! addresses = ["10.20.0.0/16"]  # non-public ranges an [[http.allow]] entry may be granted
//! methods = ["GET", "POST"]     # methods an [[http.allow]] entry may allow; absent: any
//!
//! [secrets]                     # the secrets a policy may declare, each from one source
//! db_token = { source = "env:DB_TOKEN", reveal = false }
//!
//! [quotas]                      # enforced by the service, not by admission
//! concurrent_calls = 16
//! calls_per_second = 50
//! stored_bytes = 268_435_456
//! ```
//!
//! The default ceiling ([`Ceiling::default`], and an empty file) is the safe one: limits
//! and `[http]` bounds as wide as the policy validator allows, but **no outbound HTTP, no
//! non-public address and no secret**. An operator grants each of those on purpose.
//!
//! ```
//! use airlock_core::ceiling::Ceiling;
//! use airlock_core::policy::Policy;
//!
//! let ceiling = Ceiling::from_toml(
//!     "[limits]\nfuel = 2_000_000_000\n[http]\nallow = [\"https://api.example.com/v1/\"]\n",
//!     "acme.toml",
//! )?;
//! let policy = Policy::from_toml(
//!     "[limits]\nfuel = 5_000_000_000\n\n[[http.allow]]\nurl = \"https://api.example.com/v1/databases\"\n",
//!     "policy.toml",
//! )?;
//! let excesses = ceiling.check(&policy);
//! assert_eq!(excesses.len(), 1);
//! assert_eq!(
//!     excesses[0].to_string(),
//!     "limits.fuel = 5000000000 (line 2) is over the tenant's ceiling: at most 2000000000"
//! );
//! # Ok::<(), airlock_core::PolicyError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::http::pattern::UrlPattern;
use crate::http::policy::METHODS;
use crate::policy::{Bound, HttpConfig, Limits, Policy, PolicyError, describe_toml_error};

/// The `[limits]` whose ceiling is a floor: for these a *smaller* value is the more
/// permissive one, so a policy may ask no less than the ceiling's value.
/// `breaker_cooldown_ms` is how long an open circuit refuses calls; a shorter cooldown lets
/// a failing adapter hammer its provider sooner. Every other limit, and every `[http]`
/// bound, grants more as it grows (`breaker_failures` too: more failures before the
/// circuit opens).
pub const FLOORS: [&str; 1] = ["breaker_cooldown_ms"];

/// What admission does with a version the ceiling does not admit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// Refuse an upload that fails admission (the default).
    #[default]
    Refuse,
    /// Store a version that fails conformance rules, flagged (`admitted: false`) with the
    /// failures. A policy over the ceiling, a component that is not an adapter or too large
    /// is refused all the same: the ceiling is a security boundary, not advice.
    Warn,
}

/// A tenant's ceiling. Every table is optional; see the [module](self) docs for the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// What admission does with a version over the ceiling.
    #[serde(default)]
    pub admission: Admission,
    /// The most each policy limit may be, by its `[limits]` name (`fuel`, `memory_mib`, …);
    /// for the names in [`FLOORS`], the least. A limit absent here is bounded only by the
    /// policy validator's own range ([`Limits::bounds`]), which [`Ceiling::check`] does not
    /// repeat: admission runs [`Policy::validate`] as well.
    #[serde(default)]
    pub limits: BTreeMap<String, u64>,
    /// Outbound HTTP: the bounds, URL patterns, address ranges and methods a policy may ask.
    #[serde(default)]
    pub http: HttpCeiling,
    /// The secrets a policy may declare, by name. None by default.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretCeiling>,
    /// What the service enforces per tenant at run time; not part of admission.
    #[serde(default)]
    pub quotas: Quotas,
    /// Where the ceiling was read from.
    #[serde(skip)]
    pub origin: Option<String>,
}

/// The ceiling's `[http]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCeiling {
    /// The most a policy's `http.max_requests_per_call` may be.
    pub max_requests_per_call: Option<u64>,
    /// The most a policy's `http.max_request_body_bytes` may be.
    pub max_request_body_bytes: Option<u64>,
    /// The most a policy's `http.max_response_body_bytes` may be.
    pub max_response_body_bytes: Option<u64>,
    /// The most a policy's `http.request_timeout_ms` may be.
    pub request_timeout_ms: Option<u64>,
    /// The most a policy's `http.max_url_bytes` may be.
    pub max_url_bytes: Option<u64>,
    /// The most a policy's `http.max_request_headers` may be.
    pub max_request_headers: Option<u64>,
    /// The most a policy's `http.max_request_header_bytes` may be.
    pub max_request_header_bytes: Option<u64>,
    /// URL patterns (the policy's syntax, `scheme://host[:port][/path-prefix]`) that every
    /// `[[http.allow]]` url of a policy must fall within ([`UrlPattern::within`]), and that
    /// a secret's `destinations` fall within unless the secret has its own. Empty (the
    /// default): no outbound HTTP at all.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Non-public ranges (CIDR, or a single address) that every entry of an
    /// `[[http.allow]]` `addresses` list must lie inside. Empty (the default): none.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Methods an `[[http.allow]]` entry may allow; an entry must then list its methods
    /// (no `methods` means every method). Absent (the default): any.
    pub methods: Option<Vec<String>>,
}

impl HttpCeiling {
    /// The ceiling's value for a policy's numeric `[http]` field, by name
    /// (`max_url_bytes`); `None` when the ceiling does not bound it.
    pub fn maximum(&self, name: &str) -> Option<u64> {
        match name {
            "max_requests_per_call" => self.max_requests_per_call,
            "max_request_body_bytes" => self.max_request_body_bytes,
            "max_response_body_bytes" => self.max_response_body_bytes,
            "request_timeout_ms" => self.request_timeout_ms,
            "max_url_bytes" => self.max_url_bytes,
            "max_request_headers" => self.max_request_headers,
            "max_request_header_bytes" => self.max_request_header_bytes,
            _ => None,
        }
    }
}

/// One secret of the ceiling's `[secrets]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretCeiling {
    /// The only source a policy may give this secret (`env:VARIABLE`, `file:/path`), as
    /// the policy spells it.
    pub source: String,
    /// Whether a policy may set `reveal = true` (let the guest read the value).
    #[serde(default)]
    pub reveal: bool,
    /// URL patterns the secret's policy `destinations` must fall within; absent: the
    /// ceiling's `[http] allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Vec<String>>,
}

/// What the service enforces for a tenant while it runs, outside admission.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Calls of the tenant's adapters running at once, all adapters together. Default 16.
    pub concurrent_calls: u32,
    /// Calls the tenant may start per second. Default 50.
    pub calls_per_second: u32,
    /// Bytes the tenant may store: components, policies and adapter state. Default 256 MiB.
    pub stored_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            concurrent_calls: 16,
            calls_per_second: 50,
            stored_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One way a policy asks for more than its tenant's ceiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excess {
    /// What asks: `limits.fuel`, `http.allow[1].url` (entries count from 0),
    /// `secrets.db_token.source`.
    pub item: String,
    /// Where in the policy: `line 4`; `default` when the policy text leaves the item at its
    /// default value; for a policy built in code, its table (`[limits]`,
    /// `[[http.allow]] entry 2`, `[secrets.db_token]`).
    pub line: String,
    /// What the policy asks, as TOML would spell it (`5000000000`, `"env:OTHER"`).
    pub asked: String,
    /// The most the ceiling allows, in words: `at most 2000000000`, `at least 30000`,
    /// `within one of "https://api.example.com/v1/"`.
    pub most: String,
}

impl fmt::Display for Excess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} ({}) is over the tenant's ceiling: {}",
            self.item, self.asked, self.line, self.most
        )
    }
}

impl Ceiling {
    /// Parse a ceiling from TOML text; `origin` names it in errors. Unknown keys, values of
    /// the wrong type, limits outside the policy validator's range, malformed URL patterns,
    /// address ranges, methods and secret sources, and zero quotas are refused with their
    /// line.
    pub fn from_toml(text: &str, origin: &str) -> Result<Ceiling, PolicyError> {
        let fail = |message: String| PolicyError {
            origin: origin.to_owned(),
            message,
        };
        let mut ceiling: Ceiling =
            toml::from_str(text).map_err(|e| fail(describe_toml_error(text, &e)))?;
        ceiling.validate(&Lines::parse(text)).map_err(fail)?;
        ceiling.origin = Some(origin.to_owned());
        Ok(ceiling)
    }

    /// Read and parse a ceiling file.
    pub fn from_file(path: &Path) -> Result<Ceiling, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            origin: origin.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Ceiling::from_toml(&text, &origin)
    }

    fn validate(&self, lines: &Lines<'_>) -> Result<(), String> {
        use Step::{Index, Key};
        let at = |path: &[Step<'_>], message: String| match lines.line(path) {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        };
        let limits = Limits::default().bounds(u64::MAX);
        for (name, &value) in &self.limits {
            let Some(bound) = limits
                .iter()
                .find(|b| b.key.strip_prefix("limits.") == Some(name))
            else {
                let known: Vec<&str> = limits.iter().map(|b| &b.key["limits.".len()..]).collect();
                return Err(at(
                    &[Key("limits"), Key(name)],
                    format!("unknown limit `{name}`, expected one of {known:?}"),
                ));
            };
            Bound { value, ..*bound }
                .check()
                .map_err(|e| at(&[Key("limits"), Key(name)], e))?;
        }
        for bound in HttpConfig::default().bounds() {
            let name = &bound.key["http.".len()..];
            if let Some(value) = self.http.maximum(name) {
                Bound { value, ..bound }
                    .check()
                    .map_err(|e| at(&[Key("http"), Key(name)], e))?;
            }
        }
        for (i, pattern) in self.http.allow.iter().enumerate() {
            UrlPattern::parse(pattern).map_err(|e| {
                at(
                    &[Key("http"), Key("allow"), Index(i)],
                    format!("http.allow: {e}"),
                )
            })?;
        }
        for (i, range) in self.http.addresses.iter().enumerate() {
            parse_range(range).map_err(|e| {
                at(
                    &[Key("http"), Key("addresses"), Index(i)],
                    format!("http.addresses: {e}"),
                )
            })?;
        }
        for (i, method) in self.http.methods.iter().flatten().enumerate() {
            if !METHODS.contains(&method.to_ascii_uppercase().as_str()) {
                return Err(at(
                    &[Key("http"), Key("methods"), Index(i)],
                    format!(
                        "http.methods: unknown method {method:?}; expected some of {METHODS:?}"
                    ),
                ));
            }
        }
        for (name, secret) in &self.secrets {
            let path = [Key("secrets"), Key(name), Key("source")];
            match secret.source.split_once(':') {
                Some((scheme, locator)) if !scheme.is_empty() && !locator.is_empty() => {}
                _ => {
                    return Err(at(
                        &path,
                        format!(
                            "secrets.{name}.source = {:?} is not a source (scheme:locator, such as env:VARIABLE or file:/path)",
                            secret.source
                        ),
                    ));
                }
            }
            for (i, pattern) in secret.destinations.iter().flatten().enumerate() {
                UrlPattern::parse(pattern).map_err(|e| {
                    at(
                        &[Key("secrets"), Key(name), Key("destinations"), Index(i)],
                        format!("secrets.{name}.destinations: {e}"),
                    )
                })?;
            }
        }
        for (name, value) in [
            ("concurrent_calls", self.quotas.concurrent_calls),
            ("calls_per_second", self.quotas.calls_per_second),
        ] {
            if value == 0 {
                return Err(at(
                    &[Key("quotas"), Key(name)],
                    format!("quotas.{name} = 0 would let the tenant run nothing; the least is 1"),
                ));
            }
        }
        Ok(())
    }

    /// Every way `policy` asks for more than this ceiling, in policy order: limits, `[http]`
    /// bounds, `[[http.allow]]` entries (url, methods, addresses), then secrets (source,
    /// destinations, reveal). Empty when the policy is within the ceiling.
    ///
    /// A value the policy cannot even parse (a malformed URL pattern or range) is reported
    /// as an excess too, since it is not within anything; the policy's own range checks
    /// are [`Policy::validate`]'s, not repeated here.
    pub fn check(&self, policy: &Policy) -> Vec<Excess> {
        let lines = Lines::parse(policy.source_text().unwrap_or(""));
        let mut check = Check {
            policy,
            lines: &lines,
            excesses: Vec::new(),
        };
        self.check_bounds(&mut check);
        self.check_http_allow(&mut check);
        self.check_secrets(&mut check);
        check.excesses
    }

    fn check_bounds(&self, check: &mut Check<'_>) {
        use Step::Key;
        let limits = check.policy.limits.bounds(u64::MAX);
        let http = check.policy.http.bounds();
        for bound in limits.iter().chain(&http) {
            let (table, name) = bound.key.split_once('.').unwrap_or(("", bound.key));
            let ceiling = match table {
                "limits" => self.limits.get(name).copied(),
                _ => self.http.maximum(name),
            };
            let Some(most) = ceiling else { continue };
            let over = if table == "limits" && FLOORS.contains(&name) {
                (bound.value < most).then(|| format!("at least {most}"))
            } else {
                (bound.value > most).then(|| format!("at most {most}"))
            };
            if let Some(most) = over {
                let line = check.line(&[Key(table), Key(name)], || format!("[{table}]"), true);
                check.push(bound.key.to_owned(), line, bound.value.to_string(), most);
            }
        }
    }

    fn check_http_allow(&self, check: &mut Check<'_>) {
        use Step::{Index, Key};
        let allowed: Vec<UrlPattern> = self
            .http
            .allow
            .iter()
            .filter_map(|p| UrlPattern::parse(p).ok())
            .collect();
        let ranges: Vec<IpNet> = self
            .http
            .addresses
            .iter()
            .filter_map(|r| parse_range(r).ok())
            .collect();
        let policy = check.policy;
        for (i, entry) in policy.http.allow.iter().enumerate() {
            let entry_line =
                || policy.locate(entry.span(), &format!("[[http.allow]] entry {}", i + 1));
            let config = entry.get_ref();
            let item = format!("http.allow[{i}]");
            let path = [Key("http"), Key("allow"), Index(i)];

            if let Some(most) =
                pattern_over(&config.url, &allowed, &self.http.allow, "no outbound HTTP")
            {
                let line = check.line(&[&path[..], &[Key("url")]].concat(), entry_line, false);
                check.push(
                    format!("{item}.url"),
                    line,
                    format!("{:?}", config.url),
                    most,
                );
            }

            if let Some(ceiling_methods) = &self.http.methods {
                let allowed_method =
                    |m: &String| ceiling_methods.iter().any(|c| c.eq_ignore_ascii_case(m));
                let asked = match &config.methods {
                    None => Some("every method (no `methods`)".to_owned()),
                    Some(methods) if !methods.iter().all(allowed_method) => {
                        Some(format!("{methods:?}"))
                    }
                    Some(_) => None,
                };
                if let Some(asked) = asked {
                    let line =
                        check.line(&[&path[..], &[Key("methods")]].concat(), entry_line, false);
                    let upper: Vec<String> = ceiling_methods
                        .iter()
                        .map(|m| m.to_ascii_uppercase())
                        .collect();
                    check.push(
                        format!("{item}.methods"),
                        line,
                        asked,
                        format!("only some of {upper:?}"),
                    );
                }
            }

            for (j, range) in config.addresses.iter().enumerate() {
                let inside = match parse_range(range) {
                    Ok(net) => ranges.iter().any(|outer| outer.contains(&net)),
                    Err(_) => false,
                };
                if !inside {
                    let most = if ranges.is_empty() {
                        "no non-public address ranges".to_owned()
                    } else {
                        format!(
                            "a range inside one of {}",
                            quoted_list(&self.http.addresses)
                        )
                    };
                    let line = check.line(
                        &[&path[..], &[Key("addresses"), Index(j)]].concat(),
                        entry_line,
                        false,
                    );
                    check.push(
                        format!("{item}.addresses[{j}]"),
                        line,
                        format!("{range:?}"),
                        most,
                    );
                }
            }
        }
    }

    fn check_secrets(&self, check: &mut Check<'_>) {
        use Step::{Index, Key};
        let policy = check.policy;
        for (name, secret) in &policy.secrets {
            let table_line = || policy.locate(secret.span(), &format!("[secrets.{name}]"));
            let config = secret.get_ref();
            let path = [Key("secrets"), Key(name)];
            let source_line =
                check.line(&[&path[..], &[Key("source")]].concat(), table_line, false);
            let Some(ceiling) = self.secrets.get(name) else {
                check.push(
                    format!("secrets.{name}.source"),
                    source_line,
                    format!("{:?}", config.source),
                    format!("no secret named {name:?}"),
                );
                continue;
            };
            if config.source != ceiling.source {
                check.push(
                    format!("secrets.{name}.source"),
                    source_line,
                    format!("{:?}", config.source),
                    format!("only {:?}", ceiling.source),
                );
            }
            let (texts, patterns): (&[String], Vec<UrlPattern>) = match &ceiling.destinations {
                Some(own) => (
                    own,
                    own.iter()
                        .filter_map(|p| UrlPattern::parse(p).ok())
                        .collect(),
                ),
                None => (
                    &self.http.allow,
                    self.http
                        .allow
                        .iter()
                        .filter_map(|p| UrlPattern::parse(p).ok())
                        .collect(),
                ),
            };
            for (j, destination) in config.destinations.iter().enumerate() {
                if let Some(most) = pattern_over(destination, &patterns, texts, "no destinations") {
                    let line = check.line(
                        &[&path[..], &[Key("destinations"), Index(j)]].concat(),
                        table_line,
                        false,
                    );
                    check.push(
                        format!("secrets.{name}.destinations[{j}]"),
                        line,
                        format!("{destination:?}"),
                        most,
                    );
                }
            }
            if config.reveal && !ceiling.reveal {
                let line = check.line(&[&path[..], &[Key("reveal")]].concat(), table_line, false);
                check.push(
                    format!("secrets.{name}.reveal"),
                    line,
                    "true".to_owned(),
                    "false (the guest may not read this secret)".to_owned(),
                );
            }
        }
    }
}

/// Why `text`, a policy URL pattern, is not within one of `allowed` (parsed from
/// `allowed_texts`), in words; `None` when it is. `none` says what an empty list means.
fn pattern_over(
    text: &str,
    allowed: &[UrlPattern],
    allowed_texts: &[String],
    none: &str,
) -> Option<String> {
    let within = if allowed_texts.is_empty() {
        none.to_owned()
    } else {
        format!("within one of {}", quoted_list(allowed_texts))
    };
    match UrlPattern::parse(text) {
        Ok(pattern) if allowed.iter().any(|outer| pattern.within(outer)) => None,
        Ok(_) => Some(within),
        Err(e) => Some(format!("{within}, and this is no URL pattern ({e})")),
    }
}

/// A CIDR range, or one address as its own range (as `[[http.allow]] addresses` reads them).
fn parse_range(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("{text:?} is not an address range (CIDR such as 10.20.0.0/16 or fd00::/8)")
        })
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The excesses found so far, and how to name policy lines.
struct Check<'a> {
    policy: &'a Policy,
    lines: &'a Lines<'a>,
    excesses: Vec<Excess>,
}

impl Check<'_> {
    /// The policy line of `path`. When the text has no such key: `default` if the key has
    /// a default (`defaulted`), else `fallback()` (the line of the entry the key belongs
    /// to). A policy built in code has no lines: `fallback()` names its table.
    fn line(
        &self,
        path: &[Step<'_>],
        fallback: impl FnOnce() -> String,
        defaulted: bool,
    ) -> String {
        match (self.policy.source_text(), self.lines.span(path)) {
            (Some(_), Some(span)) => self.policy.locate(span, ""),
            (Some(_), None) if defaulted => "default".to_owned(),
            _ => fallback(),
        }
    }

    fn push(&mut self, item: String, line: String, asked: String, most: String) {
        self.excesses.push(Excess {
            item,
            line,
            asked,
            most,
        });
    }
}

/// A key's span and its value.
fn key_in<'a, 't>(table: &'a DeTable<'t>, key: &str) -> Option<(Range<usize>, &'a DeValue<'t>)> {
    let (k, v) = table.get_key_value(key)?;
    Some((k.span(), v.get_ref()))
}

/// A step of a path into a TOML document.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    /// A key of a table.
    Key(&'a str),
    /// An element of an array (or array of tables), from 0.
    Index(usize),
}

/// A TOML text parsed with the span of every key and value, to name lines the typed
/// structs (whose fields carry no spans) cannot.
struct Lines<'t> {
    text: &'t str,
    root: Option<DeTable<'t>>,
}

impl<'t> Lines<'t> {
    fn parse(text: &'t str) -> Lines<'t> {
        Lines {
            text,
            root: DeTable::parse(text).ok().map(Spanned::into_inner),
        }
    }

    /// The span of the last step of `path`: a key's own span, an element's span.
    fn span(&self, path: &[Step<'_>]) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut current: Option<&DeValue<'t>> = None;
        let mut span = None;
        for step in path {
            let (at, value) = match (*step, current) {
                (Step::Key(key), None) => key_in(root, key)?,
                (Step::Key(key), Some(DeValue::Table(table))) => key_in(table, key)?,
                (Step::Index(i), Some(DeValue::Array(items))) => {
                    let item = items.get(i)?;
                    (item.span(), item.get_ref())
                }
                _ => return None,
            };
            span = Some(at);
            current = Some(value);
        }
        span
    }

    /// The 1-based line of `path`'s last step.
    fn line(&self, path: &[Step<'_>]) -> Option<usize> {
        let span = self.span(path)?;
        Some(
            self.text[..span.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEILING: &str = r#"admission = "warn"

[limits]
fuel = 2_000_000_000
memory_mib = 128
breaker_cooldown_ms = 10_000

[http]
max_requests_per_call = 32
request_timeout_ms = 5_000
allow = ["https://api.example.com/v1/", "https://*.amazonaws.com/"]
addresses = ["10.20.0.0/16"]
methods = ["GET", "POST"]

[secrets]
db_token = { source = "env:DB_TOKEN", reveal = false }
signing_key = { source = "file:/run/keys/signing", reveal = true, destinations = ["https://api.example.com/v1/sign"] }

[quotas]
concurrent_calls = 4
"#;

    fn ceiling() -> Ceiling {
        Ceiling::from_toml(CEILING, "acme.toml").unwrap()
    }

    fn excesses(policy: &str) -> Vec<String> {
        let policy = Policy::from_toml(policy, "policy.toml").unwrap();
        ceiling()
            .check(&policy)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_policy_within_the_ceiling_has_no_excess() {
        let policy = r#"
[limits]
fuel = 2_000_000_000
memory_mib = 128
breaker_cooldown_ms = 10_000

[http]
max_requests_per_call = 32
request_timeout_ms = 5_000

[[http.allow]]
url = "https://api.example.com/v1/databases"
methods = ["get", "POST"]

[[http.allow]]
url = "https://*.rds.amazonaws.com:443/"
methods = ["GET"]
addresses = ["10.20.3.0/24", "10.20.9.9"]

[secrets.db_token]
source = "env:DB_TOKEN"
destinations = ["https://api.example.com/v1/"]

[secrets.signing_key]
source = "file:/run/keys/signing"
destinations = ["https://api.example.com/v1/sign/eu"]
reveal = true
"#;
        assert_eq!(excesses(policy), Vec::<String>::new());
    }

    #[test]
    fn the_ceiling_file_parses_with_its_defaults() {
        let ceiling = ceiling();
        assert_eq!(ceiling.admission, Admission::Warn);
        assert_eq!(ceiling.limits.get("fuel"), Some(&2_000_000_000));
        assert_eq!(ceiling.http.maximum("max_requests_per_call"), Some(32));
        assert_eq!(ceiling.http.maximum("max_url_bytes"), None);
        assert_eq!(
            ceiling.secrets["signing_key"].destinations.as_deref(),
            Some(&["https://api.example.com/v1/sign".to_owned()][..])
        );
        assert_eq!(
            ceiling.quotas,
            Quotas {
                concurrent_calls: 4,
                ..Quotas::default()
            }
        );
        assert_eq!(ceiling.origin.as_deref(), Some("acme.toml"));
        let empty = Ceiling::from_toml("", "empty.toml").unwrap();
        assert_eq!(
            Ceiling {
                origin: None,
                ..empty
            },
            Ceiling::default()
        );
        assert_eq!(
            Quotas::default(),
            Quotas {
                concurrent_calls: 16,
                calls_per_second: 50,
                stored_bytes: 268_435_456
            }
        );
    }

    #[test]
    fn limits_over_the_ceiling_name_their_line() {
        let policy = "name = \"acme-db\"\n\n[limits]\nfuel = 5_000_000_000\nmemory_mib = 128\n\n[http]\nrequest_timeout_ms = 5_000\n";
        assert_eq!(
            excesses(policy),
            ["limits.fuel = 5000000000 (line 4) is over the tenant's ceiling: at most 2000000000"]
        );
        let policy = Policy::from_toml(policy, "policy.toml").unwrap();
        assert_eq!(
            ceiling().check(&policy),
            [Excess {
                item: "limits.fuel".into(),
                line: "line 4".into(),
                asked: "5000000000".into(),
                most: "at most 2000000000".into(),
            }]
        );
    }

    #[test]
    fn a_shorter_breaker_cooldown_is_more_and_needs_a_floor() {
        assert_eq!(
            excesses(&format!(
                "{WITHIN_HTTP}[limits]\nbreaker_cooldown_ms = 1_000\n"
            )),
            [
                "limits.breaker_cooldown_ms = 1000 (line 4) is over the tenant's ceiling: at least 10000"
            ]
        );
        assert_eq!(
            excesses(&format!(
                "{WITHIN_HTTP}[limits]\nbreaker_cooldown_ms = 60_000\n"
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_default_value_over_the_ceiling_is_an_excess_too() {
        let ceiling = Ceiling::from_toml("[limits]\nfuel = 500_000_000\n", "c.toml").unwrap();
        let policy = Policy::from_toml("[limits]\nmemory_mib = 32\n", "p.toml").unwrap();
        assert_eq!(
            ceiling.check(&policy)[0].to_string(),
            "limits.fuel = 1000000000 (default) is over the tenant's ceiling: at most 500000000"
        );
        let mut in_code = Policy::default();
        in_code.limits.fuel = 600_000_000;
        assert_eq!(
            ceiling.check(&in_code)[0].to_string(),
            "limits.fuel = 600000000 ([limits]) is over the tenant's ceiling: at most 500000000"
        );
    }

    #[test]
    fn numeric_http_fields_over_the_ceiling() {
        assert_eq!(
            excesses("[http]\nmax_requests_per_call = 100\nrequest_timeout_ms = 4_000\n"),
            ["http.max_requests_per_call = 100 (line 2) is over the tenant's ceiling: at most 32"]
        );
        assert_eq!(
            excesses(""),
            [
                "http.request_timeout_ms = 10000 (default) is over the tenant's ceiling: at most 5000"
            ]
        );
    }

    const WITHIN_HTTP: &str = "[http]\nrequest_timeout_ms = 5_000\n";

    #[test]
    fn each_allowed_url_must_be_within_a_ceiling_pattern() {
        let policy = format!(
            "{WITHIN_HTTP}\n[[http.allow]]\nurl = \"https://api.example.com/v1/\"\nmethods = [\"GET\"]\n\n[[http.allow]]\nmethods = [\"GET\"]\nurl = \"https://api.example.com/v2/\"\n\n[[http.allow]]\nurl = \"https://amazonaws.com/\"\nmethods = [\"GET\"]\n"
        );
        assert_eq!(
            excesses(&policy),
            [
                r#"http.allow[1].url = "https://api.example.com/v2/" (line 10) is over the tenant's ceiling: within one of "https://api.example.com/v1/", "https://*.amazonaws.com/""#,
                r#"http.allow[2].url = "https://amazonaws.com/" (line 13) is over the tenant's ceiling: within one of "https://api.example.com/v1/", "https://*.amazonaws.com/""#,
            ]
        );
    }

    #[test]
    fn a_url_that_is_no_pattern_is_over_the_ceiling() {
        let policy = format!(
            "{WITHIN_HTTP}[[http.allow]]\nurl = \"ftp://api.example.com/v1/\"\nmethods = [\"GET\"]\n"
        );
        assert_eq!(
            excesses(&policy),
            [
                r#"http.allow[0].url = "ftp://api.example.com/v1/" (line 4) is over the tenant's ceiling: within one of "https://api.example.com/v1/", "https://*.amazonaws.com/", and this is no URL pattern ("ftp://api.example.com/v1/": scheme must be http or https, not "ftp")"#
            ]
        );
    }

    #[test]
    fn the_default_ceiling_allows_no_http_and_no_secret() {
        let policy = Policy::from_toml(
            "[[http.allow]]\nurl = \"https://api.example.com/\"\naddresses = [\"127.0.0.1/32\"]\n\n[secrets.token]\nsource = \"env:TOKEN\"\n",
            "p.toml",
        )
        .unwrap();
        let found: Vec<String> = Ceiling::default()
            .check(&policy)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                r#"http.allow[0].url = "https://api.example.com/" (line 2) is over the tenant's ceiling: no outbound HTTP"#,
                r#"http.allow[0].addresses[0] = "127.0.0.1/32" (line 3) is over the tenant's ceiling: no non-public address ranges"#,
                r#"secrets.token.source = "env:TOKEN" (line 6) is over the tenant's ceiling: no secret named "token""#,
            ]
        );
        assert_eq!(Ceiling::default().check(&Policy::default()), []);
    }

    #[test]
    fn methods_must_be_listed_and_among_the_ceiling_s() {
        let policy = format!(
            "{WITHIN_HTTP}[[http.allow]]\nurl = \"https://api.example.com/v1/\"\n\n[[http.allow]]\nurl = \"https://api.example.com/v1/\"\nmethods = [\"GET\", \"DELETE\"]\n"
        );
        assert_eq!(
            excesses(&policy),
            [
                r#"http.allow[0].methods = every method (no `methods`) (line 3) is over the tenant's ceiling: only some of ["GET", "POST"]"#,
                r#"http.allow[1].methods = ["GET", "DELETE"] (line 8) is over the tenant's ceiling: only some of ["GET", "POST"]"#,
            ]
        );
    }

    #[test]
    fn address_grants_must_lie_inside_a_ceiling_range() {
        let policy = format!(
            "{WITHIN_HTTP}[[http.allow]]\nurl = \"https://db.amazonaws.com/\"\nmethods = [\"GET\"]\naddresses = [\n  \"10.20.1.0/24\",\n  \"10.0.0.0/8\",\n  \"10.30.0.1\",\n  \"nowhere\",\n]\n"
        );
        let inside = r#"a range inside one of "10.20.0.0/16""#;
        assert_eq!(
            excesses(&policy),
            [
                format!(
                    r#"http.allow[0].addresses[1] = "10.0.0.0/8" (line 8) is over the tenant's ceiling: {inside}"#
                ),
                format!(
                    r#"http.allow[0].addresses[2] = "10.30.0.1" (line 9) is over the tenant's ceiling: {inside}"#
                ),
                format!(
                    r#"http.allow[0].addresses[3] = "nowhere" (line 10) is over the tenant's ceiling: {inside}"#
                ),
            ]
        );
    }

    #[test]
    fn secrets_must_be_granted_with_their_source_destinations_and_reveal() {
        let policy = format!(
            "{WITHIN_HTTP}
[secrets.db_token]
source = \"env:OTHER\"
destinations = [\"https://api.example.com/v1/\", \"https://evil.example/\"]
reveal = true

[secrets.signing_key]
source = \"file:/run/keys/signing\"
destinations = [\"https://api.example.com/v1/\"]
reveal = true

[secrets.stray]
source = \"env:STRAY\"
"
        );
        assert_eq!(
            excesses(&policy),
            [
                r#"secrets.db_token.source = "env:OTHER" (line 5) is over the tenant's ceiling: only "env:DB_TOKEN""#,
                r#"secrets.db_token.destinations[1] = "https://evil.example/" (line 6) is over the tenant's ceiling: within one of "https://api.example.com/v1/", "https://*.amazonaws.com/""#,
                r#"secrets.db_token.reveal = true (line 7) is over the tenant's ceiling: false (the guest may not read this secret)"#,
                r#"secrets.signing_key.destinations[0] = "https://api.example.com/v1/" (line 11) is over the tenant's ceiling: within one of "https://api.example.com/v1/sign""#,
                r#"secrets.stray.source = "env:STRAY" (line 15) is over the tenant's ceiling: no secret named "stray""#,
            ]
        );
    }

    #[test]
    fn a_secret_may_go_nowhere_the_ceiling_does_not_allow() {
        let ceiling =
            Ceiling::from_toml("[secrets]\nt = { source = \"env:T\" }\n", "c.toml").unwrap();
        let policy = Policy::from_toml(
            "[secrets.t]\nsource = \"env:T\"\ndestinations = [\"https://api.example.com/\"]\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(
            ceiling.check(&policy)[0].to_string(),
            r#"secrets.t.destinations[0] = "https://api.example.com/" (line 3) is over the tenant's ceiling: no destinations"#
        );
        let without = Policy::from_toml("[secrets.t]\nsource = \"env:T\"\n", "p.toml").unwrap();
        assert_eq!(ceiling.check(&without), []);
    }

    /// The reference page's ceiling, example policy and excesses are what the code says.
    #[test]
    fn the_reference_page_example_holds() {
        let page = include_str!("../../docs/ceiling.md");
        let blocks: Vec<&str> = page
            .split("```")
            .skip(1)
            .step_by(2)
            .map(|block| block.split_once('\n').map_or("", |(_, body)| body))
            .collect();
        let ceiling = Ceiling::from_toml(blocks[0], "docs ceiling").unwrap();
        let policy = Policy::from_toml(blocks[2], "docs policy").unwrap();
        let found: Vec<String> = ceiling
            .check(&policy)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, blocks[3].lines().collect::<Vec<_>>());
    }

    #[test]
    fn ceiling_errors_name_their_line() {
        let err = |text: &str| {
            Ceiling::from_toml(text, "acme.toml")
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("admission = \"refuse\"\n[limits]\nfuell = 5\n")
                .starts_with("policy acme.toml: line 3: unknown limit `fuell`, expected one of ["),
        );
        assert!(
            err("[http]\nmax_requests = 5\n")
                .starts_with("policy acme.toml: line 2: unknown field `max_requests`"),
        );
        assert_eq!(
            err("admission = \"maybe\"\n"),
            "policy acme.toml: line 1: unknown variant `maybe`, expected `refuse` or `warn` (`admission = \"maybe\"`)"
        );
        assert_eq!(
            err("[limits]\nfuel = 5\n"),
            "policy acme.toml: line 2: limits.fuel = 5 is out of range (10000 to 1125899906842624)"
        );
        assert_eq!(
            err("[http]\nmax_url_bytes = 10\n"),
            "policy acme.toml: line 2: http.max_url_bytes = 10 is out of range (64 to 65536)"
        );
        assert_eq!(
            err("[http]\nallow = [\n  \"https://ok.example.com/\",\n  \"https://*.com/\",\n]\n"),
            "policy acme.toml: line 4: http.allow: \"https://*.com/\": a wildcard needs a domain of two labels or more (*.example.com)"
        );
        assert_eq!(
            err("[http]\naddresses = [\"10.0.0.0/33\"]\n"),
            "policy acme.toml: line 2: http.addresses: \"10.0.0.0/33\" is not an address range (CIDR such as 10.20.0.0/16 or fd00::/8)"
        );
        assert_eq!(
            err("[http]\nmethods = [\"GET\", \"FETCH\"]\n"),
            "policy acme.toml: line 2: http.methods: unknown method \"FETCH\"; expected some of [\"GET\", \"HEAD\", \"POST\", \"PUT\", \"PATCH\", \"DELETE\", \"OPTIONS\"]"
        );
        assert_eq!(
            err("[secrets]\na = { source = \"env:A\" }\nb = { source = \"B\" }\n"),
            "policy acme.toml: line 3: secrets.b.source = \"B\" is not a source (scheme:locator, such as env:VARIABLE or file:/path)"
        );
        assert_eq!(
            err("[quotas]\ncalls_per_second = 0\n"),
            "policy acme.toml: line 2: quotas.calls_per_second = 0 would let the tenant run nothing; the least is 1"
        );
        assert!(
            err("[secrets.a]\nsource = \"env:A\"\nshow = true\n")
                .starts_with("policy acme.toml: line 3: unknown field `show`"),
        );
    }
}
