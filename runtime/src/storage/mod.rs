//! What the runtime persists, behind one interface with two backends.
//!
//! [`Storage`] is everything a call reads or writes that outlives it: adapter state (by
//! tenant and namespace, with its quotas), the claims and records of keyed creates, destroy
//! records, and which component a namespace belongs to. `sqlite` keeps it in one file
//! under the data directory (the default: nothing to run); `postgres` keeps it in a
//! PostgreSQL database shared by several Airlock nodes. Both pass one test suite
//! (`storage::suite`), so the call path cannot tell them apart.
//!
//! The service (`airlock serve`) keeps its own rows beside these, behind
//! [`ServiceStore`] ([`service`]), which both backends implement too.
//!
//! What is *not* here: the index of compiled artifacts. Whether native code may be loaded
//! from the cache is decided by a local file only (`sqlite::SqliteDb` under the data
//! directory), so a node never runs code because a shared database said so.
//!
//! Every row carries a tenant ([`Scope::tenant`]); the CLI and the library use
//! [`DEFAULT_TENANT`] until the service adds real ones. Times in the interface are
//! durations, never instants: each backend measures them with its own clock (SQLite: this
//! host's; PostgreSQL: the database server's `clock_timestamp()`, never a node's).

use std::fmt;
use std::time::Duration;

pub(crate) mod owner;
pub(crate) mod postgres;
pub mod service;
#[cfg(test)]
pub(crate) mod service_suite;
pub(crate) mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

pub use owner::Owner;
pub use service::{
    AdapterEntry, CallRecord, Event, InstanceFilter, InstanceRecord, NewVersion, PutVersion,
    ServiceStore, Tenant, VersionInfo, Wakeup,
};

/// The tenant of the CLI, the library's default, and every row written before tenants.
pub const DEFAULT_TENANT: &str = "default";

/// Whose rows: a tenant and an adapter's name (its state namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The tenant.
    pub tenant: String,
    /// The adapter's name, which is its state namespace.
    pub adapter: String,
}

impl Scope {
    /// `adapter` under `tenant`.
    pub fn new(tenant: impl Into<String>, adapter: impl Into<String>) -> Scope {
        Scope {
            tenant: tenant.into(),
            adapter: adapter.into(),
        }
    }
}

/// A storage failure: which database, and what went wrong (the driver's words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

/// What storage calls return.
pub type StorageResult<T> = Result<T, StorageError>;

/// The component a namespace is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceOwner {
    /// The canonical path it was loaded from, if it was loaded from a file.
    pub path: Option<String>,
    /// Its SHA-256.
    pub sha256: String,
}

/// What [`Storage::bind_namespace`] does with a namespace, whichever the backend.
pub(crate) enum Binding {
    /// Bound to this component already.
    Keep,
    /// Bound to another component, which keeps it.
    Refuse(NamespaceOwner),
    /// (Re)bind it to this component.
    Write,
}

/// The rule of [`Storage::bind_namespace`], given the namespace's current owner.
pub(crate) fn namespace_verdict(
    owner: Option<NamespaceOwner>,
    path: Option<&str>,
    sha256: &str,
    rebind: bool,
) -> Binding {
    let same_path = |owner: &NamespaceOwner| path.is_some() && owner.path.as_deref() == path;
    match owner {
        Some(owner) if owner.sha256 == sha256 && !rebind => Binding::Keep,
        Some(owner) if !rebind && !same_path(&owner) => Binding::Refuse(owner),
        _ => Binding::Write,
    }
}

/// Rows removed by one purge, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired state keys.
    pub state: usize,
    /// Expired idempotency records (and abandoned claims past their lease and window).
    pub keys: usize,
    /// Expired destroy records.
    pub destroyed: usize,
}

impl Purged {
    /// All rows removed.
    pub fn total(&self) -> usize {
        self.state + self.keys + self.destroyed
    }

    /// Whether a table gave a full batch, so more expired rows may be left in it.
    pub fn maybe_more(&self, batch: u32) -> bool {
        [self.state, self.keys, self.destroyed]
            .into_iter()
            .any(|removed| removed >= batch as usize)
    }
}

/// A call asking to run the create of `key`.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Whose key.
    pub scope: Scope,
    /// The idempotency key.
    pub key: String,
    /// SHA-256 of the canonical config and params: a key reused with other input is refused.
    pub input_hash: String,
    /// Who asks: this process and this call.
    pub owner: Owner,
    /// How long a claim lives without a heartbeat.
    pub lease: Duration,
    /// How long the finished record is kept.
    pub window: Duration,
    /// Take the claim from the holder at this epoch even if its lease runs, because the
    /// caller saw that the holder's process is gone (see [`Owner::is_dead`]). A claim that
    /// moved on since (another epoch) is not taken.
    pub take_over: Option<i64>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This call runs the create, holding `Lease`.
    Won(Lease),
    /// Already done: here is the recorded result (the provision result's seed JSON).
    Done {
        /// The recorded result.
        result: String,
    },
    /// Another live call holds the key.
    Busy {
        /// Who holds it.
        holder: Owner,
        /// At which epoch.
        epoch: i64,
    },
    /// The key was used with other config or params.
    InputMismatch,
}

/// A won claim: the fencing token every later write of it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Whose key.
    pub scope: Scope,
    /// The idempotency key.
    pub key: String,
    /// The fencing token: one more than the claim's previous holder's. Together with the
    /// owner's call id it names this holding; a write presenting another is refused.
    pub epoch: i64,
    /// The holder (this call).
    pub owner: Owner,
    /// Whether this call took the key over from an earlier holder that crashed or stalled.
    pub resumed: bool,
    /// How long the lease lives without a heartbeat.
    pub length: Duration,
    /// How long the finished record is kept.
    pub window: Duration,
    /// The input's hash, recorded with the result.
    pub input_hash: String,
}

/// The answer to recording a finished create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Recorded.
    Recorded,
    /// The lease was lost (another call took the key over): nothing was written. The
    /// key's record, if that call has finished by now.
    Fenced {
        /// The recorded result, if the key is done.
        recorded: Option<String>,
    },
}

/// Everything the runtime persists. Implemented by `sqlite::SqliteStorage` and
/// `postgres::PostgresStorage`; [`crate::Runtime`] holds one as `Arc<dyn Storage>`.
///
/// Methods never block the calling thread: a backend with a blocking driver runs it on a
/// blocking pool, so a call's deadline can always interrupt the wait.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The database, for messages: `sqlite:/path/airlock.db` or `postgres://user@host/db`
    /// (never a password).
    fn describe(&self) -> String;

    // --- adapter state ---

    /// The live value under `key`.
    async fn state_get(&self, scope: &Scope, key: &str) -> StorageResult<Option<Vec<u8>>>;

    /// Write `value` (expiring after `ttl`); `Ok(false)` if that would create a key past
    /// `max_keys` live keys in the scope.
    async fn state_set(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        max_keys: u64,
    ) -> StorageResult<bool>;

    /// Write only if `key` is absent or expired: `Ok(Some(inserted))`, or `Ok(None)` past
    /// `max_keys`.
    async fn state_insert_new(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        max_keys: u64,
    ) -> StorageResult<Option<bool>>;

    /// Remove `key`; whether a live value was removed.
    async fn state_delete(&self, scope: &Scope, key: &str) -> StorageResult<bool>;

    // --- namespaces ---

    /// Bind the scope's namespace to a component, or check the binding. With `rebind` (the
    /// policy names the namespace: its author says this is the same adapter) it is bound to
    /// this component whatever it was bound to. Without it, a namespace bound to another
    /// component is refused with that component as `Err`; the same file path (a rebuild in
    /// place) or the same digest (the same component elsewhere) counts as the same one.
    async fn bind_namespace(
        &self,
        scope: &Scope,
        path: Option<&str>,
        sha256: &str,
        rebind: bool,
    ) -> StorageResult<Result<(), NamespaceOwner>>;

    // --- claims of keyed creates ---

    /// Try to claim a key for a create; see [`Claim`].
    async fn claim(&self, request: &ClaimRequest) -> StorageResult<Claim>;

    /// Extend a held lease by its length from now; `Ok(false)` if it is no longer held
    /// (taken over, or finished by another holder).
    async fn renew(&self, lease: &Lease) -> StorageResult<bool>;

    /// Record the result of a held claim, if it is still held; see [`Completion`].
    async fn complete(
        &self,
        lease: &Lease,
        instance_id: &str,
        result: &str,
    ) -> StorageResult<Completion>;

    /// Give up a held claim (the create failed), so the next call with the key runs again.
    /// Nothing happens if it is no longer held.
    async fn release(&self, lease: &Lease) -> StorageResult<()>;

    // --- destroy records ---

    /// Record that destroying `instance_id` succeeded, for `window`.
    async fn record_destroyed(
        &self,
        scope: &Scope,
        instance_id: &str,
        window: Duration,
    ) -> StorageResult<()>;

    /// Whether a destroy of `instance_id` is recorded.
    async fn is_destroyed(&self, scope: &Scope, instance_id: &str) -> StorageResult<bool>;

    // --- upkeep ---

    /// Remove expired state rows, finished or abandoned idempotency records and destroy
    /// records, at most `batch` of each, each table in its own short transaction.
    async fn purge_expired(&self, batch: u32) -> StorageResult<Purged>;

    /// Remove the scope's finished idempotency records and destroy records (running claims
    /// stay); how many.
    async fn forget_records(&self, scope: &Scope) -> StorageResult<u64>;

    /// Rows in the idempotency table, live or expired (for tests and the soak).
    async fn idempotency_rows(&self) -> StorageResult<u64>;
}

/// Rows per table and statement in a purge, so no single write transaction runs long.
pub(crate) const PURGE_BATCH: u32 = 1000;

/// Purge in batches of `batch` per table until no table gives a full batch; the rows
/// removed. Each batch is a transaction of its own, so other writers get turns.
pub(crate) async fn purge_in_batches(storage: &dyn Storage, batch: u32) -> StorageResult<usize> {
    let mut total = 0;
    loop {
        let purged = storage.purge_expired(batch).await?;
        total += purged.total();
        if !purged.maybe_more(batch) {
            return Ok(total);
        }
    }
}

/// Where the runtime's storage lives, as `RuntimeConfig::database`, `--database` and
/// `AIRLOCK_DATABASE_URL` spell it.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:PATH`: one file on this machine.
    Sqlite(std::path::PathBuf),
    /// `postgres://…` or `postgresql://…`: a PostgreSQL database several nodes share.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parse `sqlite:PATH`, `sqlite://PATH` or `postgres://…`/`postgresql://…`.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(format!(
                    "database URL {url:?} names no file; write sqlite:/path/to/airlock.db"
                ));
            }
            return Ok(DatabaseUrl::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        Err(format!(
            "database URL {:?} is neither sqlite:PATH nor postgres://USER@HOST/DATABASE",
            redact_password(url)
        ))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// The URL with any password replaced by `***`.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            DatabaseUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`; a `password=` parameter
/// likewise.
pub(crate) fn redact_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(start) = out.find("password=") {
        let value = start + "password=".len();
        let end = out[value..].find('&').map_or(out.len(), |i| value + i);
        out.replace_range(value..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_a_password() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:/tmp/a.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/a.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/a.db".into())
        );
        let pg = DatabaseUrl::parse("postgres://airlock:s3cret@db:5432/airlock?sslmode=disable")
            .unwrap();
        assert_eq!(
            pg.to_string(),
            "postgres://airlock:***@db:5432/airlock?sslmode=disable"
        );
        assert_eq!(
            redact_password("postgresql://h/db?user=a&password=s3cret&x=1"),
            "postgresql://h/db?user=a&password=***&x=1"
        );
        let bad = DatabaseUrl::parse("mysql://u:pw@h/db").unwrap_err();
        assert_eq!(
            bad,
            "database URL \"mysql://u:***@h/db\" is neither sqlite:PATH nor postgres://USER@HOST/DATABASE"
        );
        assert!(DatabaseUrl::parse("sqlite:").is_err());
    }
}
