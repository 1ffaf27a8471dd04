//! The `secrets` capability. A policy grants secrets to an adapter by name
//! (`[secrets.NAME]`), each from a source (`env:`, `file:`, or one an embedder adds), bound
//! to the request destinations the host may place it into, and optionally revealable. The
//! guest gets an opaque handle (a resource); the value stays in the host, which puts it into
//! an outgoing header only for a bound destination (see [`crate::capabilities::http`]).
//! Every granted value feeds the [`guard::LeakGuard`].

pub(crate) use airlock_core::guard;
pub(crate) mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use crate::bindings::airlock::adapter::secrets::{Host, HostSecret, SecretError};
use crate::capabilities::http::pattern::UrlPattern;
use crate::policy::Policy;
use guard::LeakGuard;
use source::{SecretSource, SecretValue};

/// Shortest value Airlock accepts: shorter ones could not be redacted without mangling
/// ordinary output.
const MIN_SECRET_BYTES: usize = 8;

/// Most secret handles one call may hold at once. A handle is a host table entry, so
/// without a bound a guest calling `get` in a loop would grow the host's table until
/// wasmtime's own limit (a million entries). One handle serves every request that needs its
/// secret, so an honest adapter holds one per secret it uses; 64 is far above any policy's
/// grants. A dropped handle frees its place.
pub(crate) const MAX_LIVE_SECRET_HANDLES: u32 = 64;

/// Longest secret name a message repeats; a longer one is named by its length (a name is
/// guest input, and a message must not copy megabytes of it).
const MAX_SHOWN_NAME_BYTES: usize = 128;

/// `name` for a message: quoted, or by its length when it is long.
fn shown(name: &str) -> String {
    if name.len() <= MAX_SHOWN_NAME_BYTES {
        format!("{name:?}")
    } else {
        format!("of {} bytes", name.len())
    }
}

/// The host's side of a secret handle: which granted secret it stands for.
pub struct SecretHandle {
    name: String,
}

impl SecretHandle {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// One granted secret, compiled at load.
#[derive(Debug)]
pub(crate) struct SecretGrant {
    pub(crate) value: SecretValue,
    pub(crate) destinations: Vec<UrlPattern>,
    pub(crate) reveal: bool,
    pub(crate) location: String,
}

/// Every secret granted to one adapter, and the guard built from their values.
#[derive(Debug, Default)]
pub(crate) struct SecretGrants {
    pub(crate) grants: BTreeMap<String, SecretGrant>,
    pub(crate) guard: LeakGuard,
}

impl SecretGrants {
    /// Resolve and check every `[secrets.NAME]` of `policy`; errors name the line.
    pub(crate) fn compile(
        policy: &Policy,
        sources: &[Arc<dyn SecretSource>],
    ) -> Result<SecretGrants, String> {
        let mut grants = BTreeMap::new();
        for (name, entry) in &policy.secrets {
            let location = policy.locate(entry.span(), &format!("[secrets.{name}]"));
            let fail = |message: String| format!("{location}: secret {name:?}: {message}");
            let config = entry.get_ref();
            let (scheme, locator) = config.source.split_once(':').ok_or_else(|| {
                fail(format!(
                    "source {:?} must be scheme:locator, such as env:TOKEN",
                    config.source
                ))
            })?;
            let source = sources
                .iter()
                .find(|s| s.scheme() == scheme)
                .ok_or_else(|| {
                    let known: Vec<&str> = sources.iter().map(|s| s.scheme()).collect();
                    fail(format!(
                        "unknown secret source `{scheme}:`; this runtime has {known:?}"
                    ))
                })?;
            let value = source
                .fetch(locator)
                .map_err(|e| fail(format!("source {}: {e}", config.source)))?;
            if value.expose().len() < MIN_SECRET_BYTES {
                return Err(fail(format!(
                    "the value is {} bytes; Airlock needs at least {MIN_SECRET_BYTES} to redact it reliably",
                    value.expose().len()
                )));
            }
            let destinations = config
                .destinations
                .iter()
                .map(|d| UrlPattern::parse(d).map_err(|e| fail(format!("destinations: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            grants.insert(
                name.clone(),
                SecretGrant {
                    value,
                    destinations,
                    reveal: config.reveal,
                    location,
                },
            );
        }
        let guard = LeakGuard::new(
            grants
                .iter()
                .map(|(name, g)| (name.as_str(), g.value.expose())),
        );
        Ok(SecretGrants { grants, guard })
    }
}

/// One call's secrets: the adapter's grants and who asked for what.
pub(crate) struct SecretBroker {
    adapter: String,
    pub(crate) grants: Arc<SecretGrants>,
    pub(crate) revealed: u32,
    /// Handles given out and not yet dropped, at most [`MAX_LIVE_SECRET_HANDLES`].
    live_handles: u32,
}

impl SecretBroker {
    pub(crate) fn new(adapter: &str, grants: Arc<SecretGrants>) -> Self {
        SecretBroker {
            adapter: adapter.to_owned(),
            grants,
            revealed: 0,
            live_handles: 0,
        }
    }
}

/// What the `secrets` host functions see of a call.
pub(crate) struct SecretsView<'a> {
    pub(crate) broker: &'a mut SecretBroker,
    pub(crate) table: &'a mut ResourceTable,
}

impl Host for SecretsView<'_> {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<SecretHandle>, SecretError>> {
        if !self.broker.grants.grants.contains_key(&name) {
            let table = if name.len() <= MAX_SHOWN_NAME_BYTES {
                name.as_str()
            } else {
                "NAME"
            };
            let table = format!("[secrets.{table}]");
            let name = shown(&name);
            tracing::info!(target: "airlock::secrets", adapter = %self.broker.adapter, secret = %name, "secret not granted");
            let hint = if self.broker.grants.grants.is_empty() {
                "the policy grants it no secrets".to_owned()
            } else {
                format!(
                    "it is granted {:?}",
                    self.broker.grants.grants.keys().collect::<Vec<_>>()
                )
            };
            return Ok(Err(SecretError::NotGranted(format!(
                "secret {name} is not granted to adapter {:?} ({hint}); a policy table {table} with a source would grant it",
                self.broker.adapter
            ))));
        }
        if self.broker.live_handles >= MAX_LIVE_SECRET_HANDLES {
            tracing::info!(target: "airlock::secrets", adapter = %self.broker.adapter, "secret handle bound reached");
            return Ok(Err(SecretError::Unavailable(format!(
                "this call already holds {MAX_LIVE_SECRET_HANDLES} secret handles, the most one call may hold at once; \
                 reuse the handle you have for {name:?} (one handle serves every request) or drop handles you no longer need"
            ))));
        }
        let handle = self.table.push(SecretHandle { name })?;
        self.broker.live_handles += 1;
        Ok(Ok(handle))
    }

    async fn reveal(
        &mut self,
        secret: Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<String, SecretError>> {
        let name = self.table.get(&secret)?.name.clone();
        // A handle is only made for a granted name, and an adapter's grants never change;
        // still, a missing grant is the guest's answer, never a host panic.
        let Some(grant) = self.broker.grants.grants.get(&name) else {
            return Ok(Err(SecretError::NotGranted(format!(
                "secret {name:?} is not granted to adapter {:?}",
                self.broker.adapter
            ))));
        };
        if !grant.reveal {
            return Ok(Err(SecretError::RevealDenied(format!(
                "secret {name:?} may not be revealed to adapter {:?}; `reveal = true` in its policy table ({}) would allow it",
                self.broker.adapter, grant.location
            ))));
        }
        self.broker.revealed += 1;
        tracing::warn!(target: "airlock::secrets", adapter = %self.broker.adapter, secret = %name, "secret revealed to the guest");
        Ok(Ok(grant.value.expose().to_owned()))
    }
}

impl HostSecret for SecretsView<'_> {
    async fn name(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&secret)?.name.clone())
    }

    async fn drop(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(secret)?;
        self.broker.live_handles = self.broker.live_handles.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<SecretGrants, String> {
        SecretGrants::compile(
            &Policy::from_toml(text, "p.toml").unwrap(),
            &source::default_sources(),
        )
    }

    #[test]
    fn grants_resolve_from_files_and_feed_the_guard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-secret-value\n").unwrap();
        let grants = compile(&format!(
            "[secrets.token]\nsource = \"file:{}\"\ndestinations = [\"https://api.example.com/\"]\n",
            path.display()
        ))
        .unwrap();
        let grant = &grants.grants["token"];
        assert_eq!(grant.value.expose(), "file-secret-value");
        assert!(!grant.reveal);
        let mut text = "x file-secret-value y".to_owned();
        assert_eq!(grants.guard.redact(&mut text), 1);
        assert_eq!(format!("{:?}", grant.value), "SecretValue(<17 bytes>)");
    }

    #[test]
    fn bad_grants_fail_the_load_naming_the_line() {
        let err = compile("\n[secrets.token]\nsource = \"vault:kv/token\"\n").unwrap_err();
        assert_eq!(
            err,
            "line 2: secret \"token\": unknown secret source `vault:`; this runtime has [\"env\", \"file\"]"
        );
        let err = compile("[secrets.token]\nsource = \"env:AIRLOCK_TEST_SURELY_UNSET_VARIABLE\"\n")
            .unwrap_err();
        assert_eq!(
            err,
            "line 1: secret \"token\": source env:AIRLOCK_TEST_SURELY_UNSET_VARIABLE: environment variable AIRLOCK_TEST_SURELY_UNSET_VARIABLE is not set"
        );
        let err = compile("[secrets.token]\nsource = \"token\"\n").unwrap_err();
        assert_eq!(
            err,
            "line 1: secret \"token\": source \"token\" must be scheme:locator, such as env:TOKEN"
        );
    }
}
