//! What the service (`airlock serve`) persists beside the runtime's own rows: tenants and
//! their API keys and ceilings, the adapter registry (immutable, content-addressed
//! versions and the active one), the instance registry (which version and config made an
//! instance, so `status`, `destroy` and `credentials`, which take no config in the seed,
//! get the one it was created with), each instance's event log, and each call's record.
//!
//! Same two backends as [`Storage`](super::Storage), same rules: every row carries its
//! tenant and every lookup names it, so no method can reach another tenant's rows; times
//! are measured by the backend's clock (SQLite: this host's; PostgreSQL: the server's);
//! the shared suite (`storage::service_suite`) runs against both.

use std::time::Duration;

use super::StorageResult;

/// A tenant as stored. The API key itself is never stored: only its SHA-256, which the
/// service compares in constant time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The tenant's name (`[a-z0-9][a-z0-9-]{0,62}`, checked by the service).
    pub name: String,
    /// The ceiling's TOML text, as the operator gave it; `None` for the default ceiling.
    pub ceiling: Option<String>,
    /// When the tenant was created, unix milliseconds of the backend's clock.
    pub created_ms: i64,
    /// When its key was last set (created or rotated), unix milliseconds.
    pub key_set_ms: i64,
}

/// An adapter version to store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Whose.
    pub tenant: String,
    /// The adapter's name.
    pub adapter: String,
    /// The version's label (immutable once stored).
    pub version: String,
    /// SHA-256 of `component`, hex.
    pub sha256: String,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The policy's TOML text.
    pub policy: String,
    /// An `airlock check --record` file, if one was uploaded.
    pub recording: Option<String>,
    /// The admission report, JSON.
    pub admission: String,
    /// Whether admission passed (a `warn` ceiling stores versions that failed it).
    pub admitted: bool,
}

/// What storing a version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutVersion {
    /// A new version.
    Created,
    /// The same bytes (component digest) were stored under this version already: nothing
    /// changed, and the stored version is answered.
    Same,
    /// The version exists with other bytes; it stays as it is.
    Conflict {
        /// The stored version's component digest.
        sha256: String,
    },
}

impl PutVersion {
    /// The answer to storing `sha256` where a version with `stored` exists already.
    pub(crate) fn against(stored: String, sha256: &str) -> PutVersion {
        if stored == sha256 {
            PutVersion::Same
        } else {
            PutVersion::Conflict { sha256: stored }
        }
    }
}

/// What [`ServiceStore::active_version`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveVersion {
    /// The tenant has no version of the adapter.
    NoAdapter,
    /// The adapter has versions, none chosen yet.
    NoneChosen,
    /// The active version.
    Active {
        /// Its label.
        version: String,
        /// Its component's digest, hex.
        sha256: String,
    },
}

/// A stored version, without its component's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The adapter's name.
    pub adapter: String,
    /// The version's label.
    pub version: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The component's size, bytes.
    pub size: u64,
    /// The policy's TOML text.
    pub policy: String,
    /// Whether a recording was uploaded with it.
    pub has_recording: bool,
    /// The admission report, JSON.
    pub admission: String,
    /// Whether admission passed.
    pub admitted: bool,
    /// When it was stored, unix milliseconds.
    pub created_ms: i64,
}

/// An adapter of a tenant's: its versions and which one calls run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterEntry {
    /// The adapter's name.
    pub adapter: String,
    /// The active version, if one was chosen.
    pub active: Option<String>,
    /// Its versions, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// An instance the service created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Whose.
    pub tenant: String,
    /// The adapter that created it.
    pub adapter: String,
    /// The instance id the adapter returned.
    pub instance_id: String,
    /// The adapter version that created it.
    pub version: String,
    /// The config it was created with, JSON.
    pub config: String,
    /// The last status the service saw (`PENDING`, `RUNNING`, `SUCCESS`, `FAILED`, …), if any.
    pub status: Option<String>,
    /// When it was created, unix milliseconds.
    pub created_ms: i64,
    /// When a destroy of it succeeded, unix milliseconds.
    pub destroyed_ms: Option<i64>,
}

/// Which instances [`ServiceStore::instances`] lists.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only this adapter's.
    pub adapter: Option<String>,
    /// Only those whose last status is this.
    pub status: Option<String>,
    /// Only those after this one in the listing's order (adapter, instance id): the
    /// previous page's last `(adapter, instance_id)`.
    pub after: Option<(String, String)>,
    /// At most this many (the store caps it at 1,000).
    pub limit: u32,
}

/// One event of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's sequence number: increasing across the whole store (so a stream may
    /// resume after any number it saw), not dense per instance.
    pub seq: i64,
    /// What happened: `progress`, `log`, `status`, `receipt`.
    pub kind: String,
    /// The event's body, JSON.
    pub data: String,
    /// When it was appended, unix milliseconds.
    pub at_ms: i64,
}

/// What [`ServiceStore::event_wakeups`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// An event was appended to this instance's log.
    Appended {
        /// Whose.
        tenant: String,
        /// The adapter that created the instance.
        adapter: String,
        /// The instance.
        instance_id: String,
    },
    /// Wake-ups may have been missed (PostgreSQL: the listener connected, or connected
    /// again after losing its connection): re-read every stream.
    Missed,
}

/// A finished call's record, answered by `GET /v1/calls/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The call id (`Airlock-Call-Id`).
    pub call_id: String,
    /// Whose.
    pub tenant: String,
    /// The adapter called.
    pub adapter: String,
    /// The operation's name.
    pub operation: String,
    /// The receipt, JSON.
    pub receipt: String,
    /// The call's log records (already redacted), JSON array.
    pub logs: String,
    /// When it finished, unix milliseconds.
    pub at_ms: i64,
}

/// A finished call as the service records it after answering: its record, the status it
/// saw, and its events, written together by [`ServiceStore::calls_finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedCall {
    /// The call's record (its tenant and adapter are its events' too).
    pub record: CallRecord,
    /// How long to keep the record.
    pub window: Duration,
    /// A status the call saw, recorded (with its event) only if it differs from the
    /// instance's last one; before `events`.
    pub status: Option<StatusSeen>,
    /// The call's events, in order: each on its stream (an instance id, or a create's key
    /// stream).
    pub events: Vec<NewEvent>,
}

/// A status a call saw of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSeen {
    /// The instance.
    pub instance_id: String,
    /// The status (`RUNNING`, …).
    pub status: String,
    /// The `status` event's body, JSON, appended when the status changed.
    pub data: String,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The stream: an instance id, or a create's key stream.
    pub stream: String,
    /// `progress`, `log`, `status`, `receipt`.
    pub kind: String,
    /// The event's body, JSON.
    pub data: String,
}

/// The service's rows. Every method names the tenant whose rows it touches.
#[async_trait::async_trait]
pub trait ServiceStore: Send + Sync {
    // --- tenants ---

    /// Create `name` with the SHA-256 (hex) of its API key; `false` if it exists.
    async fn tenant_create(
        &self,
        name: &str,
        key_sha256: &str,
        ceiling: Option<&str>,
    ) -> StorageResult<bool>;

    /// One tenant.
    async fn tenant(&self, name: &str) -> StorageResult<Option<Tenant>>;

    /// Every tenant, by name.
    async fn tenants(&self) -> StorageResult<Vec<Tenant>>;

    /// The tenant whose key hashes to `key_sha256`. The caller compares the stored hash
    /// with its own in constant time before trusting the answer.
    async fn tenant_by_key(&self, key_sha256: &str) -> StorageResult<Option<(Tenant, String)>>;

    /// Replace `name`'s key hash; `false` if there is no such tenant.
    async fn tenant_set_key(&self, name: &str, key_sha256: &str) -> StorageResult<bool>;

    /// Replace `name`'s ceiling (`None`: the default); `false` if there is no such tenant.
    async fn tenant_set_ceiling(&self, name: &str, ceiling: Option<&str>) -> StorageResult<bool>;

    // --- the adapter registry ---

    /// Store a version; versions are immutable (see [`PutVersion`]).
    async fn version_put(&self, version: &NewVersion) -> StorageResult<PutVersion>;

    /// A version with its component's bytes.
    async fn version_get(
        &self,
        tenant: &str,
        adapter: &str,
        version: &str,
    ) -> StorageResult<Option<(VersionInfo, Vec<u8>)>>;

    /// One adapter of `tenant`'s, with its versions; `None` if it has none.
    async fn adapter(&self, tenant: &str, adapter: &str) -> StorageResult<Option<AdapterEntry>>;

    /// Which version of `tenant`'s adapter calls run, and its component digest: one small
    /// row, for every call (see [`ActiveVersion`]).
    async fn active_version(&self, tenant: &str, adapter: &str) -> StorageResult<ActiveVersion>;

    /// Every adapter of `tenant`'s, by name.
    async fn adapters(&self, tenant: &str) -> StorageResult<Vec<AdapterEntry>>;

    /// Make `version` the one calls run; `false` if there is no such version.
    async fn set_active(&self, tenant: &str, adapter: &str, version: &str) -> StorageResult<bool>;

    /// The bytes of every component `tenant` stored (for its stored-bytes quota).
    async fn stored_bytes(&self, tenant: &str) -> StorageResult<u64>;

    // --- the instance registry ---

    /// Record a created instance. A second record of the same (tenant, adapter, instance
    /// id) — a replayed create — keeps the first. The backend's clock sets `created_ms`
    /// (the record's is ignored), and a new record is never destroyed (`destroyed_ms` is
    /// ignored too).
    async fn instance_put(&self, instance: &InstanceRecord) -> StorageResult<()>;

    /// One instance.
    async fn instance(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
    ) -> StorageResult<Option<InstanceRecord>>;

    /// Record the last status seen; `false` if there is no such instance.
    async fn instance_set_status(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
        status: &str,
    ) -> StorageResult<bool>;

    /// Record that a destroy succeeded (the first time only); `false` if there is no such
    /// instance.
    async fn instance_destroyed(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
    ) -> StorageResult<bool>;

    /// `tenant`'s instances, by (adapter, instance id).
    async fn instances(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
    ) -> StorageResult<Vec<InstanceRecord>>;

    // --- events ---

    /// Append an event to an instance's log; its sequence number. The backend's clock
    /// sets its time.
    async fn event_append(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
        kind: &str,
        data: &str,
    ) -> StorageResult<i64>;

    /// An instance's events after `after` (exclusive), oldest first, at most `limit` (the
    /// store caps it at 1,000). A reader that resumes after the last sequence number it
    /// saw misses none: a number is never visible before a smaller one of the same
    /// instance.
    async fn events_after(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
        after: i64,
        limit: u32,
    ) -> StorageResult<Vec<Event>>;

    /// Wake-ups: a message each time an event is appended, by any node (PostgreSQL:
    /// LISTEN/NOTIFY; SQLite: any handle on the same file in this process, since SQLite
    /// serves one node). See [`Wakeup`]: a receiver that lagged
    /// (`RecvError::Lagged`) or got [`Wakeup::Missed`] should re-read every stream it
    /// serves. Call it from inside a tokio runtime: PostgreSQL starts its listener on the
    /// first call.
    fn event_wakeups(&self) -> tokio::sync::broadcast::Receiver<Wakeup>;

    // --- calls ---

    /// Keep a finished call's record for `window`. The backend's clock sets `at_ms` (the
    /// record's is ignored); a second record of the same call id replaces the first.
    async fn call_put(&self, call: &CallRecord, window: Duration) -> StorageResult<()>;

    /// Record finished calls in one transaction: for each, in order, its status if it
    /// changed (with a `status` event), its events, and its record (as
    /// [`call_put`](Self::call_put) does). Events get sequence numbers in the order given,
    /// with the same guarantee as [`event_append`](Self::event_append)'s, and wake their
    /// streams once committed.
    async fn calls_finished(&self, calls: &[FinishedCall]) -> StorageResult<()>;

    /// A call's record, if it is `tenant`'s and not expired.
    async fn call(&self, tenant: &str, call_id: &str) -> StorageResult<Option<CallRecord>>;

    // --- upkeep ---

    /// Delete events older than `events` and expired call records, at most `batch` rows of
    /// each; how many were deleted.
    async fn purge_service(&self, events: Duration, batch: u32) -> StorageResult<u64>;
}

/// The most rows one listing answers ([`InstanceFilter::limit`],
/// [`ServiceStore::events_after`]).
pub(crate) const MAX_PAGE: u32 = 1000;

/// Wake-ups a receiver may fall behind by before it lags (and re-reads everything).
pub(crate) const WAKEUP_BACKLOG: usize = 1024;

/// A listing's row limit, capped at [`MAX_PAGE`].
pub(crate) fn page(limit: u32) -> u32 {
    limit.min(MAX_PAGE)
}

/// Group versions (ordered by adapter, then oldest first) into adapters, each with its
/// active version from `active` (adapter → version).
pub(crate) fn group_adapters(
    versions: Vec<VersionInfo>,
    active: &std::collections::HashMap<String, String>,
) -> Vec<AdapterEntry> {
    let mut entries: Vec<AdapterEntry> = Vec::new();
    for version in versions {
        match entries.last_mut() {
            Some(entry) if entry.adapter == version.adapter => entry.versions.push(version),
            _ => entries.push(AdapterEntry {
                adapter: version.adapter.clone(),
                active: active.get(&version.adapter).cloned(),
                versions: vec![version],
            }),
        }
    }
    entries
}

/// The JSON a wake-up travels as between nodes (PostgreSQL's `NOTIFY` payload):
/// `["tenant","adapter","instance id"]`. `None` for anything else.
pub(crate) fn wakeup_from_json(payload: &str) -> Option<Wakeup> {
    let [tenant, adapter, instance_id]: [String; 3] = serde_json::from_str(payload).ok()?;
    Some(Wakeup::Appended {
        tenant,
        adapter,
        instance_id,
    })
}
