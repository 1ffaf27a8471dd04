//! [`Runtime`]: one wasmtime engine, one linker, one database and one artifact cache,
//! shared by every adapter loaded into it. Create it once per process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::adapter::{Adapter, AdapterInfo};
use crate::cache::{ArtifactCache, sha256_hex};
use crate::capabilities::http::HttpGrant;
use crate::capabilities::http::policy::HttpPolicy;
use crate::capabilities::secrets::SecretGrants;
use crate::capabilities::secrets::source::{SecretSource, default_sources};
use crate::capabilities::{self, AdapterGrants, CallContext};
use crate::engine::{EngineSettings, build_engine, spawn_epoch_ticker};
use crate::error::Error;
use crate::policy::{Policy, validate_name};
use crate::storage::sqlite::SqliteDb;
use crate::storage::{DEFAULT_TENANT, DatabaseUrl, NamespaceOwner, Scope, ServiceStore, Storage};

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where the database file (`airlock.db`) and the compiled-artifact cache (`cache/`)
    /// live. Default: [`RuntimeConfig::default_data_dir`] (`$XDG_DATA_HOME/airlock`, else
    /// `$HOME/.local/share/airlock`), never the working directory: a checkout of someone
    /// else's repository could bring a database and compiled code of its own. Created 0700
    /// if missing; compiled code is loaded through it only while it, the database and
    /// `cache/` belong to this user and nobody else may write them.
    pub data_dir: PathBuf,
    /// Instances that may exist at once: the pooling allocator's size, so also the most
    /// calls in flight at once across all adapters (a call holds its instance while it
    /// waits on the network). What happens to a call beyond it is `pool_wait`'s to say.
    /// Each slot reserves virtual address space (not memory) for its linear memory, up to
    /// `max_memory_mib` plus guard pages; memory is committed only as guests touch it.
    /// Default: 128.
    pub pool_size: u32,
    /// How long a call may wait for an instance when all `pool_size` are in use. `None`
    /// (the default): it queues until one frees, which every call does by its deadline at
    /// the latest. `Some(limit)`: it waits at most `limit` and then fails with `LIMIT`
    /// ("instance pool full: …", `receipt.limitHit = "pool"`) without running;
    /// `Some(Duration::ZERO)` fails at once.
    pub pool_wait: Option<std::time::Duration>,
    /// The highest `limits.memory_mib` any policy may set. Default: 1024.
    pub max_memory_mib: u64,
    /// Keep compiled components on disk. Default: true.
    pub cache_compiled: bool,
    /// Where `[secrets.NAME] source = "scheme:…"` values come from. Default: `env:` and
    /// `file:`; add a source to support a secret manager.
    pub secret_sources: Vec<Arc<dyn SecretSource>>,
    /// How long idempotency keys and destroy records are kept. Default: 24 hours.
    pub idempotency_window: std::time::Duration,
    /// A hook on every outbound request a policy allowed: it may forward, answer or fail
    /// it (see [`crate::intercept`]). For test harnesses such as `airlock check`; default
    /// none, and a production runtime should have none.
    pub http_interceptor: Option<Arc<dyn crate::intercept::HttpInterceptor>>,
    /// Where state, idempotency claims and records, and destroy records live. `None` (the
    /// default): the SQLite file `airlock.db` in `data_dir`. `postgres://…` shares them
    /// between several Airlock nodes (see docs/scaling.md). Compiled artifacts and their
    /// index stay in `data_dir` whatever this is: a node never runs native code because a
    /// shared database said so.
    pub database: Option<DatabaseUrl>,
    /// How long a create's claim on its idempotency key lives without a heartbeat. The
    /// holder renews it every third of this while the call lives; a node that stops
    /// (crash, pause, partition) loses the key to the next caller this long after its last
    /// heartbeat (at once, on the same node, when its process is gone). Default: 6 s.
    pub claim_lease: std::time::Duration,
    /// This node's name in claims. Default: the host name and boot id. Two runtimes with
    /// the same node id judge each other's claims by process id, so give every machine
    /// (or container with its own process ids) its own.
    pub node_id: Option<String>,
    /// Mixed into every client token (see docs/idempotency.md), so that two installations
    /// sharing a provider account never receive each other's resources for the same tenant,
    /// adapter and key. Default: none. Changing it changes every token: set it once.
    pub client_token_salt: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            // Empty when there is no home to put it in: `Runtime::new` then says so.
            data_dir: RuntimeConfig::default_data_dir().unwrap_or_default(),
            pool_size: 128,
            pool_wait: None,
            max_memory_mib: 1024,
            cache_compiled: true,
            secret_sources: default_sources(),
            idempotency_window: std::time::Duration::from_secs(24 * 3600),
            http_interceptor: None,
            database: None,
            claim_lease: std::time::Duration::from_secs(6),
            node_id: None,
            client_token_salt: None,
        }
    }
}

/// One backend as both of its interfaces.
fn both<B: Storage + ServiceStore + 'static>(
    backend: B,
) -> (Arc<dyn Storage>, Arc<dyn ServiceStore>) {
    let backend = Arc::new(backend);
    (backend.clone(), backend)
}

impl RuntimeConfig {
    /// The user's data directory for Airlock: `$XDG_DATA_HOME/airlock`, else
    /// `$HOME/.local/share/airlock` (`None` if neither is an absolute path).
    pub fn default_data_dir() -> Option<PathBuf> {
        crate::datadir::default_data_dir()
    }

    /// The default configuration with data kept in `dir`.
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            data_dir: dir.into(),
            ..RuntimeConfig::default()
        }
    }
}

/// The Airlock runtime. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallContext>,
    pub(crate) storage: Arc<dyn Storage>,
    /// The same backend as `storage`, as the service's rows.
    service: Arc<dyn ServiceStore>,
    /// The local database file: the artifact index, and with the default backend
    /// everything else too.
    local: SqliteDb,
    /// This node's id in claims.
    pub(crate) node_id: String,
    cache: Option<ArtifactCache>,
    pub(crate) slots: Semaphore,
    pub(crate) config: RuntimeConfig,
    /// Keyed creates so far; every 512th of them (the dedupe stage's `PURGE_EVERY_CREATES`)
    /// purge expired records.
    pub(crate) keyed_creates: std::sync::atomic::AtomicU64,
}

impl Runtime {
    /// Build the engine, link the capabilities, open the database.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, Error> {
        if config.data_dir.as_os_str().is_empty() {
            return Err(Error::NoDataDir);
        }
        if config.pool_size == 0 {
            return Err(Error::Config("pool_size must be at least 1".into()));
        }
        let engine = build_engine(&EngineSettings {
            pool_size: config.pool_size,
            max_memory_bytes: config.max_memory_mib * 1024 * 1024,
        })?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker)
            .map_err(|e| Error::Engine(format!("linking capabilities: {e:#}")))?;
        if config.claim_lease < std::time::Duration::from_millis(300) {
            return Err(Error::Config(format!(
                "claim_lease must be at least 300 ms (it is {} ms): a heartbeat renews it every third",
                config.claim_lease.as_millis()
            )));
        }
        let local = SqliteDb::open(&config.data_dir.join("airlock.db"))?;
        let (storage, service) = match &config.database {
            None => both(crate::storage::sqlite::SqliteStorage::new(local.clone())),
            Some(DatabaseUrl::Sqlite(path)) if *path == local.path() => {
                both(crate::storage::sqlite::SqliteStorage::new(local.clone()))
            }
            Some(DatabaseUrl::Sqlite(path)) => both(crate::storage::sqlite::SqliteStorage::new(
                SqliteDb::open(path)?,
            )),
            Some(DatabaseUrl::Postgres(url)) => both(
                crate::storage::postgres::PostgresStorage::connect_blocking(url)?,
            ),
        };
        // Expired state and records are removed at start-up, in bounded batches, off the
        // call path (when there is a tokio runtime to do it on; else at the 512th create).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let storage = storage.clone();
            handle.spawn(async move {
                if let Err(error) =
                    crate::storage::purge_in_batches(&*storage, crate::storage::PURGE_BATCH).await
                {
                    tracing::warn!(target: "airlock::database", %error, "could not purge expired records");
                }
            });
        }
        let cache = config
            .cache_compiled
            .then(|| ArtifactCache::new(config.data_dir.join("cache"), local.clone(), &engine));
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(crate::storage::owner::default_node_id);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                slots: Semaphore::new(config.pool_size as usize),
                engine,
                linker,
                storage,
                service,
                local,
                node_id,
                cache,
                config,
                keyed_creates: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The local database file: the index of compiled artifacts, and with the default
    /// backend (no [`RuntimeConfig::database`]) state and records too.
    pub fn database_path(&self) -> &Path {
        self.inner.local.path()
    }

    /// Where state and records live, for messages: `sqlite:PATH` or the PostgreSQL URL
    /// without its password.
    pub fn database(&self) -> String {
        self.inner.storage.describe()
    }

    /// The service's rows (tenants, the adapter registry, instances, events, call
    /// records) in the same database as the runtime's state and records: the SQLite file
    /// or the PostgreSQL database of [`RuntimeConfig::database`]. Failures name the
    /// database.
    pub fn service_store(&self) -> Arc<dyn ServiceStore> {
        self.inner.service.clone()
    }

    /// This runtime's node id in claims ([`RuntimeConfig::node_id`] or the default).
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    fn storage_error(&self, error: crate::storage::StorageError) -> Error {
        Error::Database {
            database: self.inner.storage.describe(),
            message: error.0,
        }
    }

    /// Remove expired state, idempotency and destroy records now. The runtime does this
    /// at start and every few hundred creates, off the call path; embedders may also call it.
    pub async fn purge_expired(&self) -> Result<usize, Error> {
        crate::storage::purge_in_batches(&*self.inner.storage, crate::storage::PURGE_BATCH)
            .await
            .map_err(|e| self.storage_error(e))
    }

    /// Forget what the idempotency layer recorded for `adapter` of the default tenant:
    /// finished creates and successful destroys. The next create with one of those keys,
    /// or destroy of one of those instances, reaches the guest again instead of being
    /// answered from the record. Claims of calls still running are kept. Returns the
    /// records removed.
    ///
    /// An operator's tool after an incident, and how `airlock check` tests an adapter's
    /// *own* idempotency beneath the host's.
    pub async fn forget_records(&self, adapter: &str) -> Result<u64, Error> {
        self.inner
            .storage
            .forget_records(&Scope::new(DEFAULT_TENANT, adapter))
            .await
            .map_err(|e| self.storage_error(e))
    }

    /// How many idempotency records the database holds (live or expired, not yet purged).
    pub async fn idempotency_records(&self) -> Result<u64, Error> {
        self.inner
            .storage
            .idempotency_rows()
            .await
            .map_err(|e| self.storage_error(e))
    }

    /// Bind the adapter's namespace for `tenant` (see [`Storage::bind_namespace`]).
    pub(crate) async fn bind_namespace(
        &self,
        scope: &Scope,
        binding: &NamespaceBinding,
        origin: &str,
    ) -> Result<(), Error> {
        let verdict = self
            .inner
            .storage
            .bind_namespace(
                scope,
                binding.path.as_deref(),
                &binding.sha256,
                binding.rebind,
            )
            .await
            .map_err(|e| self.storage_error(e))?;
        verdict.map_err(|owner| namespace_taken(&scope.adapter, binding, &owner, origin))
    }

    /// Load the component at `path` under `policy`. The adapter's name (its state
    /// namespace) is the policy's `name`, or else the file stem; a name taken from the file
    /// stem is refused if the namespace belongs to another component (see
    /// [`Error::Namespace`]).
    pub async fn load_file(
        &self,
        path: impl AsRef<Path>,
        policy: Policy,
    ) -> Result<Adapter, Error> {
        let path = path.as_ref().to_owned();
        let bytes = tokio::fs::read(&path).await.map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The namespace binding remembers where the component came from, so that a rebuild
        // in place keeps its state; the canonical path, so that `./a.wasm` and its absolute
        // spelling are one place.
        let canonical = tokio::fs::canonicalize(&path).await.unwrap_or(path.clone());
        let default = DefaultName {
            name: name_from_stem(&stem),
            from: NameFrom::FileStem {
                path: canonical.display().to_string(),
            },
        };
        self.load(default, bytes, policy, path.display().to_string())
            .await
    }

    /// Load a component from memory. `default_name` is used when the policy names none (and
    /// is refused if that namespace belongs to a component with another digest);
    /// `origin` names the component in errors.
    pub async fn load_bytes(
        &self,
        default_name: &str,
        bytes: Vec<u8>,
        policy: Policy,
        origin: &str,
    ) -> Result<Adapter, Error> {
        let default = DefaultName {
            name: default_name.to_owned(),
            from: NameFrom::Embedder,
        };
        self.load(default, bytes, policy, origin.to_owned()).await
    }

    /// Load `bytes` as `tenant`'s adapter `name`, for a registry that owns the names (the
    /// service's): the adapter's state and records are the tenant's, under `name`, whatever
    /// component binds it now — a new version of the adapter takes over the namespace (and
    /// the state) of the one before, as when a policy names its adapter. Nothing is bound
    /// for the default tenant. A policy that names another adapter is refused.
    pub async fn load_for_tenant(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
        mut policy: Policy,
        origin: &str,
    ) -> Result<Adapter, Error> {
        if let Some(named) = &policy.name
            && named != name
        {
            return Err(Error::Policy {
                origin: policy.origin_or(origin).to_owned(),
                message: format!(
                    "the policy names the adapter {named:?}, but it is registered as {name:?}; remove `name` from the policy or make it {name:?}"
                ),
            });
        }
        policy.name = Some(name.to_owned());
        let default = DefaultName {
            name: name.to_owned(),
            from: NameFrom::Embedder,
        };
        let runtime = self.clone();
        let origin_owned = origin.to_owned();
        let adapter = tokio::task::spawn_blocking(move || {
            runtime.load_blocking(default, &bytes, policy, &origin_owned)
        })
        .await
        .map_err(|e| Error::Engine(format!("load task failed: {e}")))??;
        adapter.for_tenant(tenant).await
    }

    /// Compile (or find in the cache) and prepare on the blocking pool, then bind the
    /// namespace: only once the component proved to be an adapter, so a broken one never
    /// takes a namespace.
    async fn load(
        &self,
        default: DefaultName,
        bytes: Vec<u8>,
        policy: Policy,
        origin: String,
    ) -> Result<Adapter, Error> {
        let runtime = self.clone();
        let adapter = tokio::task::spawn_blocking(move || {
            runtime.load_blocking(default, &bytes, policy, &origin)
        })
        .await
        .map_err(|e| Error::Engine(format!("load task failed: {e}")))??;
        self.bind_namespace(adapter.scope(), adapter.binding(), adapter.origin())
            .await?;
        Ok(adapter)
    }

    fn load_blocking(
        &self,
        default: DefaultName,
        bytes: &[u8],
        policy: Policy,
        origin: &str,
    ) -> Result<Adapter, Error> {
        let inner = &self.inner;
        policy.validate(origin, inner.config.max_memory_mib * 1024 * 1024)?;
        let named_by_policy = policy.name.is_some();
        let name = policy.name.clone().unwrap_or_else(|| default.name.clone());
        validate_name(&name).map_err(|message| Error::Policy {
            origin: policy.origin.clone().unwrap_or_else(|| origin.to_owned()),
            message,
        })?;
        let policy_error = |message: String| Error::Policy {
            origin: policy.origin_or(origin).to_owned(),
            message,
        };
        let http = HttpPolicy::compile(&policy)
            .and_then(|http| HttpGrant::new(http, inner.config.http_interceptor.clone()))
            .map_err(policy_error)?;
        let secrets =
            SecretGrants::compile(&policy, &inner.config.secret_sources).map_err(policy_error)?;
        let grants = AdapterGrants {
            http: Arc::new(http),
            secrets: Arc::new(secrets),
        };
        check_component_header(bytes, origin)?;
        let digest = sha256_hex(bytes);
        let (component, cache) = match &inner.cache {
            Some(cache) => cache.load(&inner.engine, bytes, &digest, origin)?,
            None => (
                wasmtime::component::Component::new(&inner.engine, bytes).map_err(|e| {
                    Error::InvalidComponent {
                        origin: origin.to_owned(),
                        message: format!("{e:#}"),
                    }
                })?,
                crate::cache::CacheOutcome::Compiled,
            ),
        };
        let info = AdapterInfo::describe(
            &inner.engine,
            &component,
            name.clone(),
            digest.clone(),
            bytes.len(),
            cache,
        );
        let binding = NamespaceBinding {
            path: match &default.from {
                NameFrom::FileStem { path } => Some(path.clone()),
                NameFrom::Embedder => None,
            },
            sha256: digest,
            rebind: named_by_policy,
            from: default.from,
        };
        let scope = Scope::new(DEFAULT_TENANT, name);
        let adapter = Adapter::prepare(
            self.clone(),
            component,
            policy,
            grants,
            info,
            crate::adapter::Placement {
                scope,
                binding,
                origin: origin.to_owned(),
            },
        )?;
        Ok(adapter)
    }
}

/// What binds an adapter's namespace to its component, per tenant (see
/// [`Storage::bind_namespace`]).
#[derive(Debug, Clone)]
pub(crate) struct NamespaceBinding {
    /// The component file's canonical path, if it came from a file.
    pub(crate) path: Option<String>,
    /// The component's digest.
    pub(crate) sha256: String,
    /// Whether the policy named the namespace (which rebinds it).
    pub(crate) rebind: bool,
    /// Where the name came from, for the refusal's message.
    pub(crate) from: NameFrom,
}

/// The name an adapter gets when its policy has no `name`, and where it came from.
struct DefaultName {
    name: String,
    from: NameFrom,
}

#[derive(Debug, Clone)]
pub(crate) enum NameFrom {
    /// The component file's stem; `path` is the file's canonical path.
    FileStem { path: String },
    /// The `default_name` an embedder passed to [`Runtime::load_bytes`].
    Embedder,
}

fn namespace_taken(
    name: &str,
    binding: &NamespaceBinding,
    owner: &NamespaceOwner,
    origin: &str,
) -> Error {
    let source = match binding.from {
        NameFrom::FileStem { .. } => "taken from the file name, as the policy sets no `name`",
        NameFrom::Embedder => "the default name it was loaded with, as the policy sets no `name`",
    };
    let short = &owner.sha256[..owner.sha256.len().min(12)];
    let belongs = match &owner.path {
        Some(path) => format!("the component loaded from {path} (sha256 {short}…)"),
        None => format!("another component (sha256 {short}…)"),
    };
    Error::Namespace {
        origin: origin.to_owned(),
        message: format!(
            "its state namespace {name:?} ({source}) belongs to {belongs}, and a different component must not read its state or replay its creates; set `name = {name:?}` in the policy to share that state deliberately (an upgrade of the same adapter, say), or pick another name"
        ),
    }
}

/// The adapter name [`Runtime::load_file`] gives a component whose policy sets no `name`:
/// its file stem made into a valid adapter name. ASCII letters are lowercased, any other
/// character but digits, `-` and `_` becomes `-`, the name is cut at 64 characters and
/// loses leading `-` and `_`; `adapter` if nothing is left. For a caller of
/// [`Runtime::load_bytes`] who wants the name the same bytes would get from a file.
///
/// ```
/// assert_eq!(airlock::name_from_stem("Example_Adapter"), "example_adapter");
/// assert_eq!(airlock::name_from_stem("my adapter"), "my-adapter");
/// ```
pub fn name_from_stem(stem: &str) -> String {
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let name = name.trim_start_matches(['-', '_']).to_owned();
    if name.is_empty() {
        "adapter".to_owned()
    } else {
        name
    }
}

/// Tell a core module, a component and something else apart before wasmtime does, so the
/// author gets an actionable message.
fn check_component_header(bytes: &[u8], origin: &str) -> Result<(), Error> {
    let fail = |message: &str| Error::InvalidComponent {
        origin: origin.to_owned(),
        message: message.to_owned(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(fail(
            "it does not start with the WebAssembly magic bytes (\\0asm)",
        ));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(fail(
            "it is a core WebAssembly module, not a component; build with `cargo build --target wasm32-wasip2` or `cargo component build`",
        )),
        other => Err(fail(&format!(
            "unknown WebAssembly version or layer {other:02x?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_service_store_is_the_runtimes_database() {
        use crate::storage::sqlite::SqliteStorage;
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            pool_size: 1,
            ..RuntimeConfig::with_data_dir(dir.path())
        })
        .unwrap();
        let store = runtime.service_store();
        assert!(store.tenant_create("acme", "hash", None).await.unwrap());
        let same_file = SqliteStorage::new(SqliteDb::open(runtime.database_path()).unwrap());
        assert_eq!(
            same_file.tenant("acme").await.unwrap().map(|t| t.name),
            Some("acme".to_owned())
        );
    }

    #[test]
    fn names_from_file_stems() {
        assert_eq!(name_from_stem("example_adapter"), "example_adapter");
        assert_eq!(name_from_stem("My Adapter.v2"), "my-adapter-v2");
        assert_eq!(name_from_stem("__"), "adapter");
    }

    #[test]
    fn headers() {
        assert!(check_component_header(b"\0asm\x0d\x00\x01\x00", "x").is_ok());
        let core = check_component_header(b"\0asm\x01\x00\x00\x00", "x.wasm")
            .unwrap_err()
            .to_string();
        assert!(
            core.contains("is a core WebAssembly module, not a component"),
            "{core}"
        );
        let junk = check_component_header(b"hello world", "x.wasm")
            .unwrap_err()
            .to_string();
        assert_eq!(
            junk,
            "x.wasm is not a valid WebAssembly component: it does not start with the WebAssembly magic bytes (\\0asm)"
        );
    }
}
