//! Loaded adapters, kept between calls: a call of a tenant's adapter finds its active
//! version here, compiled and prepared, instead of loading it from the registry each time.
//!
//! An entry is keyed by (tenant, adapter, version, component digest): versions are
//! immutable, so an entry never goes stale; choosing another active version simply makes
//! calls use another entry. Concurrent first calls of one version load it once. The cache
//! holds at most [`CAPACITY`] entries; past that, an entry unused the longest is dropped
//! (calls holding it finish on their own clone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock::storage::service::{ActiveVersion, ServiceStore};
use airlock::{Adapter, Policy, Runtime};
use tokio::sync::OnceCell;

use crate::http::ApiError;

/// Most loaded adapter versions a node keeps.
pub const CAPACITY: usize = 512;

type Key = (String, String, String, String);

struct Entry {
    adapter: Arc<OnceCell<Adapter>>,
    last_used: u64,
}

/// The loaded-adapter cache of a node.
#[derive(Clone)]
pub struct Loaded {
    runtime: Runtime,
    store: Arc<dyn ServiceStore>,
    entries: Arc<Mutex<(u64, HashMap<Key, Entry>)>>,
}

/// An adapter ready to call, and which version it is.
#[derive(Clone)]
pub struct Resolved {
    /// The adapter, for the tenant.
    pub adapter: Adapter,
    /// Its version's label.
    pub version: String,
}

impl Loaded {
    /// An empty cache on `runtime` and its registry.
    pub fn new(runtime: Runtime, store: Arc<dyn ServiceStore>) -> Loaded {
        Loaded {
            runtime,
            store,
            entries: Arc::new(Mutex::new((0, HashMap::new()))),
        }
    }

    /// `tenant`'s adapter `name` at its active version. 404 when the tenant has no such
    /// adapter (another tenant's is as absent as one that does not exist), 409 when it has
    /// no active version yet.
    pub async fn active(&self, tenant: &str, name: &str) -> Result<Resolved, ApiError> {
        // One small row per call: which version is active, and its digest.
        let (version, sha256) = match self.store.active_version(tenant, name).await? {
            ActiveVersion::Active { version, sha256 } => (version, sha256),
            ActiveVersion::NoAdapter => {
                return Err(ApiError::not_found(format!("no adapter {name:?}")));
            }
            ActiveVersion::NoneChosen => {
                return Err(ApiError::conflict(format!(
                    "adapter {name:?} has no active version; choose one with POST /v1/adapters/{name}/active"
                )));
            }
        };
        let key = (tenant.to_owned(), name.to_owned(), version.clone(), sha256);
        let cell = self.cell(key);
        let adapter = cell
            .get_or_try_init(|| self.load(tenant, name, &version))
            .await?
            .clone();
        Ok(Resolved { adapter, version })
    }

    /// The cell of `key`, made if absent; marks it used.
    fn cell(&self, key: Key) -> Arc<OnceCell<Adapter>> {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (clock, entries) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if !entries.contains_key(&key)
            && entries.len() >= CAPACITY
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| key.clone())
        {
            entries.remove(&oldest);
        }
        let entry = entries.entry(key).or_insert_with(|| Entry {
            adapter: Arc::new(OnceCell::new()),
            last_used: now,
        });
        entry.last_used = now;
        entry.adapter.clone()
    }

    /// Load a stored version for its tenant.
    async fn load(&self, tenant: &str, name: &str, version: &str) -> Result<Adapter, ApiError> {
        let (info, component) = self
            .store
            .version_get(tenant, name, version)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no version {version:?} of {name:?}")))?;
        let origin = format!("{name}@{version}");
        // Admission parsed and checked this policy; failing now means the stored row changed
        // under the service, which the caller cannot fix.
        let policy = Policy::from_toml(&info.policy, &format!("{origin} policy"))
            .map_err(|e| ApiError::internal(format!("the stored policy of {origin}: {e}")))?;
        self.runtime
            .load_for_tenant(tenant, name, component, policy, &origin)
            .await
            .map_err(|e| ApiError::internal(format!("loading {origin}: {e}")))
    }
}
