//! The embedded backend: one SQLite file, shared safely by every `airlock` process on this
//! machine that points at it (WAL mode, busy timeout).
//!
//! rusqlite rather than sqlx: the file is local, every statement takes microseconds, and a
//! synchronous driver lets a statement that cannot wait run where the call is, where
//! sqlx's SQLite driver adds a worker thread and a channel of its own to every statement;
//! rusqlite also bundles SQLite, so the default needs nothing installed.
//!
//! A statement never waits on a tokio worker ([`SqliteDb::run`]): it runs there only with
//! an idle connection whose busy timeout is zero, and commits never sync or checkpoint
//! there (a thread of its own checkpoints); a lock held elsewhere sends it to tokio's
//! blocking pool, where it waits up to the busy timeout while the call's deadline can
//! still interrupt the call. Purges and counts, whose time grows with the data, always run
//! on the blocking pool.
//!
//! The same file (under the data directory) also holds the index of compiled artifacts,
//! which stays local whatever the storage backend is; [`SqliteDb`] serves both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Claim, ClaimRequest, Completion, Lease, NamespaceOwner, Owner, Purged, Scope, Storage,
    StorageError, StorageResult,
};
use crate::error::Error;

mod service;

/// The schema this build writes. Version 4 added tenants, epochs and owners; version 5 the
/// per-namespace key counts; version 6 the service's rows. Older files are migrated on
/// open, a newer one is refused.
pub(crate) const SCHEMA_VERSION: i64 = 6;

/// The migrations, in order: each brings the schema from the version before it to its own.
/// Version 4's first creates what is missing of versions 1–3, as those were applied.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (4, &[SCHEMA_V3, MIGRATE_V4]),
    (5, &[MIGRATE_V5]),
    (6, &[MIGRATE_V6]),
];

/// The schema of versions 1–3, each table created if absent (how they were applied).
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS adapter_state (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    expires_at INTEGER, updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS compiled_artifacts (
    cache_key TEXT PRIMARY KEY, sha256 TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    adapter TEXT NOT NULL, key TEXT NOT NULL, input_hash TEXT NOT NULL, state TEXT NOT NULL,
    owner TEXT, lease_until INTEGER, instance_id TEXT, result TEXT,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    PRIMARY KEY (adapter, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS destroyed (
    adapter TEXT NOT NULL, instance_id TEXT NOT NULL,
    destroyed_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    PRIMARY KEY (adapter, instance_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS namespaces (
    namespace TEXT PRIMARY KEY, path TEXT, sha256 TEXT NOT NULL, bound_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 3 → 4: every row gets a tenant (`default` for what came before), claims get an
/// epoch and an owner. Times are unix milliseconds of this host's clock.
const MIGRATE_V4: &str = "
DROP INDEX IF EXISTS adapter_state_expiry;
DROP INDEX IF EXISTS idempotency_expiry;
DROP INDEX IF EXISTS destroyed_expiry;

CREATE TABLE adapter_state_v4 (
    tenant     TEXT    NOT NULL,
    namespace  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    expires_at INTEGER,          -- NULL never expires
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, namespace, key)
) WITHOUT ROWID;
INSERT INTO adapter_state_v4
    SELECT 'default', namespace, key, value, expires_at, updated_at FROM adapter_state;
DROP TABLE adapter_state;
ALTER TABLE adapter_state_v4 RENAME TO adapter_state;
CREATE INDEX adapter_state_expiry ON adapter_state (expires_at) WHERE expires_at IS NOT NULL;

-- Host-owned idempotency of create: one row per (tenant, adapter, key).
CREATE TABLE idempotency_v4 (
    tenant      TEXT    NOT NULL,
    adapter     TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    input_hash  TEXT    NOT NULL,     -- SHA-256 of the canonical config and params
    state       TEXT    NOT NULL,     -- 'running' or 'done'
    epoch       INTEGER NOT NULL,     -- the fencing token of the current holder
    owner_node  TEXT,                 -- the holder of a running claim: its node,
    owner_call  TEXT,                 -- and its pid.start.call
    lease_until INTEGER,              -- past it without a heartbeat, the claim is abandoned
    instance_id TEXT,
    result      TEXT,                 -- the ProvisionResult, seed JSON, once done
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, adapter, key)
) WITHOUT ROWID;
INSERT INTO idempotency_v4
    SELECT 'default', adapter, key, input_hash, state, 0, NULL, owner, lease_until,
           instance_id, result, created_at, expires_at FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_v4 RENAME TO idempotency;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);

-- Instances a destroy succeeded for, so destroying them again succeeds without the guest.
CREATE TABLE destroyed_v4 (
    tenant       TEXT    NOT NULL,
    adapter      TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL,
    destroyed_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant, adapter, instance_id)
) WITHOUT ROWID;
INSERT INTO destroyed_v4
    SELECT 'default', adapter, instance_id, destroyed_at, expires_at FROM destroyed;
DROP TABLE destroyed;
ALTER TABLE destroyed_v4 RENAME TO destroyed;
CREATE INDEX destroyed_expiry ON destroyed (expires_at);

-- Which component a state namespace belongs to.
CREATE TABLE namespaces_v4 (
    tenant    TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    path      TEXT,                -- the component file's canonical path, if from a file
    sha256    TEXT    NOT NULL,    -- the component's digest
    bound_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, namespace)
) WITHOUT ROWID;
INSERT INTO namespaces_v4 SELECT 'default', namespace, path, sha256, bound_at FROM namespaces;
DROP TABLE namespaces;
ALTER TABLE namespaces_v4 RENAME TO namespaces;
";

/// Version 4 → 5: how many rows each namespace holds, kept by triggers, so the key quota is
/// checked in one lookup instead of a count that grows with the namespace. The count
/// includes rows whose TTL ran out but that are not purged yet, so it is never below the
/// live count: under the quota by it is under the quota for sure, and only a namespace at
/// its quota pays for an exact answer (see [`quota_allows`]).
const MIGRATE_V5: &str = "
CREATE TABLE state_counts (
    tenant    TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    keys      INTEGER NOT NULL,
    PRIMARY KEY (tenant, namespace)
) WITHOUT ROWID;
INSERT INTO state_counts SELECT tenant, namespace, COUNT(*) FROM adapter_state GROUP BY 1, 2;
CREATE TRIGGER adapter_state_counted AFTER INSERT ON adapter_state BEGIN
    INSERT INTO state_counts (tenant, namespace, keys) VALUES (NEW.tenant, NEW.namespace, 1)
    ON CONFLICT (tenant, namespace) DO UPDATE SET keys = keys + 1;
END;
CREATE TRIGGER adapter_state_uncounted AFTER DELETE ON adapter_state BEGIN
    UPDATE state_counts SET keys = keys - 1
    WHERE tenant = OLD.tenant AND namespace = OLD.namespace;
END;
";

/// Version 5 → 6: the service's rows ([`super::service`]), each keyed by tenant first.
/// Times are unix milliseconds of this host's clock.
const MIGRATE_V6: &str = "
CREATE TABLE tenants (
    name       TEXT    NOT NULL PRIMARY KEY,
    key_sha256 TEXT    NOT NULL,     -- SHA-256 of the API key, hex; never the key
    ceiling    TEXT,                 -- the ceiling's TOML; NULL for the default
    created_at INTEGER NOT NULL,
    key_set_at INTEGER NOT NULL
) WITHOUT ROWID;
-- A request's key is looked up by its hash; two tenants never share one.
CREATE UNIQUE INDEX tenants_by_key ON tenants (key_sha256);

-- Immutable adapter versions. A rowid table (large rows do poorly WITHOUT ROWID), its id
-- the order they were stored in; the component last, so reading the columns before it
-- never walks the blob's overflow pages.
CREATE TABLE adapter_versions (
    id         INTEGER PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    adapter    TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    size       INTEGER NOT NULL,     -- the component's length, bytes
    policy     TEXT    NOT NULL,
    recording  TEXT,
    admission  TEXT    NOT NULL,
    admitted   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    component  BLOB    NOT NULL,
    UNIQUE (tenant, adapter, version)
);

-- The version calls run, per adapter.
CREATE TABLE active_versions (
    tenant  TEXT    NOT NULL,
    adapter TEXT    NOT NULL,
    version TEXT    NOT NULL,
    set_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, adapter)
) WITHOUT ROWID;

-- Instances the service created, listed by (tenant, adapter, instance id).
CREATE TABLE instances (
    tenant       TEXT    NOT NULL,
    adapter      TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    config       TEXT    NOT NULL,
    status       TEXT,
    created_at   INTEGER NOT NULL,
    destroyed_at INTEGER,
    PRIMARY KEY (tenant, adapter, instance_id)
) WITHOUT ROWID;

-- Each instance's event log. AUTOINCREMENT: a number is never reused, even after the
-- newest events are purged, so a stream resuming after it cannot skip a new event.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT    NOT NULL,
    adapter     TEXT    NOT NULL,
    instance_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX events_by_instance ON events (tenant, adapter, instance_id, seq);
CREATE INDEX events_by_age ON events (at);

-- Finished calls' records, kept for their window.
CREATE TABLE call_records (
    tenant     TEXT    NOT NULL,
    call_id    TEXT    NOT NULL,
    adapter    TEXT    NOT NULL,
    operation  TEXT    NOT NULL,
    receipt    TEXT    NOT NULL,
    logs       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, call_id)
) WITHOUT ROWID;
CREATE INDEX call_records_expiry ON call_records (expires_at);
";

/// A handle to one SQLite file; cheap to clone. Connections are pooled.
#[derive(Clone)]
pub(crate) struct SqliteDb {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

/// How many idle connections to keep.
const POOL_IDLE: usize = 8;

/// How long a statement on the blocking pool waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the checkpointer folds the write-ahead log back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn db_error(error: rusqlite::Error) -> StorageError {
    StorageError(error.to_string())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

fn ms(duration: Duration) -> i64 {
    duration.as_millis().min(i64::MAX as u128) as i64
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| now_ms().saturating_add(ms(ttl)))
}

impl SqliteDb {
    /// Open (creating if needed) the database file, private to this user, and bring its
    /// schema up to date; a schema newer than this build is refused.
    pub(crate) fn open(path: &Path) -> Result<SqliteDb, Error> {
        let fail = |message: String| Error::Database {
            database: format!("sqlite:{}", path.display()),
            message,
        };
        // The directory 0700 and the file 0600 before SQLite opens it: SQLite creates its
        // -wal, -shm and journal files with the database file's mode.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::datadir::create_private_dir(parent)
                .map_err(|e| fail(format!("cannot create directory: {e}")))?;
        }
        crate::datadir::create_private_file(path)
            .map_err(|e| fail(format!("cannot create the database file 0600: {e}")))?;
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut companion = path.as_os_str().to_owned();
            companion.push(suffix);
            crate::datadir::tighten(Path::new(&companion))
                .map_err(|e| fail(format!("cannot make {suffix} file private: {e}")))?;
        }
        let db = SqliteDb {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool: Mutex::new(Vec::new()),
            }),
        };
        let mut conn = db.connect().map_err(|e| fail(e.0))?;
        migrate(&mut conn).map_err(fail)?;
        db.release(conn);
        db.start_checkpointer();
        Ok(db)
    }

    /// Commits never checkpoint (`wal_autocheckpoint = 0` on every connection): a
    /// checkpoint syncs the file, milliseconds a call would wait for. This thread does it
    /// instead, every [`CHECKPOINT_EVERY`], and ends once the last handle is dropped. A
    /// passive checkpoint never blocks a writer.
    fn start_checkpointer(&self) {
        let inner = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("airlock-sqlite-checkpoint".into())
            .spawn(move || {
                let mut conn = None;
                loop {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    let Some(inner) = inner.upgrade() else { return };
                    if conn.is_none() {
                        conn = SqliteDb { inner }.connect().ok();
                    }
                    let Some(c) = &conn else { continue };
                    if let Err(error) =
                        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(target: "airlock::storage", %error, "checkpoint failed");
                    }
                }
            });
        if let Err(error) = spawned {
            // Without the thread the log grows until the last connection closes (SQLite
            // checkpoints then); calls work the same.
            tracing::warn!(target: "airlock::storage", %error, "could not start the checkpoint thread");
        }
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    fn connect(&self) -> StorageResult<Connection> {
        let conn = Connection::open(&self.inner.path).map_err(db_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(db_error)?;
        Ok(conn)
    }

    fn release(&self, conn: Connection) {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_IDLE {
            pool.push(conn);
        }
    }

    /// Run `f` with a pooled connection, on the calling thread (which must be allowed to
    /// block: a blocking-pool thread, or a thread of the caller's own).
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> StorageResult<R> {
        let pooled = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = f(&mut conn).map_err(db_error);
        self.release(conn);
        result
    }

    /// Run `f` with a pooled connection without blocking the calling tokio worker: on the
    /// worker itself when that cannot wait ([`SqliteDb::try_inline`]), else on tokio's
    /// blocking pool. `f` may run twice (a first try that found the database locked rolled
    /// back), so it must be a transaction or safe to repeat.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> StorageResult<R> {
        match self.try_inline(&f) {
            Some(result) => result,
            None => self.run_blocking(f).await,
        }
    }

    /// Run `f` on tokio's blocking pool: for statements whose time grows with the data
    /// (purges, counts), which must never hold a worker.
    pub(crate) async fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> StorageResult<R> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.with(f))
            .await
            .map_err(|e| StorageError(format!("database task failed: {e}")))?
    }

    /// Run `f` on the calling thread if it cannot wait: with an idle pooled connection
    /// (none idle: `None`) whose busy timeout is zero, so a lock held by another
    /// connection or process fails at once and `None` sends `f` to the blocking pool.
    /// Commits do not checkpoint (see [`SqliteDb::start_checkpointer`]) and WAL commits
    /// with `synchronous = NORMAL` do not sync, so what is left is a few page reads and
    /// writes to the OS cache: microseconds, where a hop to the blocking pool and back is
    /// two thread wake-ups.
    fn try_inline<R>(
        &self,
        f: &impl Fn(&mut Connection) -> rusqlite::Result<R>,
    ) -> Option<StorageResult<R>> {
        let mut conn = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()?;
        if conn.busy_timeout(Duration::ZERO).is_err() {
            return None;
        }
        let result = f(&mut conn);
        if conn.busy_timeout(BUSY_TIMEOUT).is_ok() {
            self.release(conn);
        }
        match result {
            Err(error) if is_busy(&error) => None,
            result => Some(result.map_err(db_error)),
        }
    }

    // --- the compiled-artifact index (local whatever the storage backend) ---

    /// The digest recorded for a cached artifact. Blocking: the loader runs on the
    /// blocking pool.
    pub(crate) fn artifact_digest(&self, cache_key: &str) -> StorageResult<Option<String>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT sha256 FROM compiled_artifacts WHERE cache_key = ?1",
                params![cache_key],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Record a cached artifact's digest. Blocking, like [`SqliteDb::artifact_digest`].
    pub(crate) fn record_artifact(&self, cache_key: &str, sha256: &str) -> StorageResult<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO compiled_artifacts (cache_key, sha256, created_at) VALUES (?1, ?2, ?3)",
                params![cache_key, sha256, now_ms()],
            )
            .map(|_| ())
        })
    }
}

fn migrate(conn: &mut Connection) -> Result<(), String> {
    // IMMEDIATE: two processes opening a fresh file at once migrate one after the other,
    // and the second sees the first's version.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the database's schema is version {version}, newer than this airlock's ({SCHEMA_VERSION}); a newer airlock wrote it: run that version, or point this one at another database"
        ));
    }
    if version < SCHEMA_VERSION {
        let step = |sql: &str| tx.execute_batch(sql).map_err(|e| e.to_string());
        for (to, steps) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
            for sql in *steps {
                step(sql).map_err(|e| format!("migrating to schema version {to}: {e}"))?;
            }
        }
        step(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    tx.commit().map_err(|e| e.to_string())
}

/// [`Storage`] and [`ServiceStore`](super::ServiceStore) on a [`SqliteDb`].
pub(crate) struct SqliteStorage {
    db: SqliteDb,
    /// Event wake-ups, shared by every handle on the same file in this process.
    wakeups: Arc<tokio::sync::broadcast::Sender<super::Wakeup>>,
}

impl SqliteStorage {
    pub(crate) fn new(db: SqliteDb) -> SqliteStorage {
        let wakeups = service::wakeups_for(db.path());
        SqliteStorage { db, wakeups }
    }

    /// The database this storage writes.
    #[cfg(test)]
    pub(crate) fn db(&self) -> &SqliteDb {
        &self.db
    }
}

/// Whether one more key fits in `scope` under `max_keys`. The kept count (see
/// [`MIGRATE_V5`]) answers at once while it is under the quota; at the quota, the scope's
/// expired rows are deleted first (which the count follows), so the answer is exact.
fn quota_allows(
    conn: &Connection,
    scope: &Scope,
    now: i64,
    max_keys: u64,
) -> rusqlite::Result<bool> {
    let kept = |conn: &Connection| {
        conn.prepare_cached("SELECT keys FROM state_counts WHERE tenant = ?1 AND namespace = ?2")?
            .query_row(params![scope.tenant, scope.adapter], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .map(|n| n.unwrap_or(0).max(0) as u64)
    };
    if kept(conn)? < max_keys {
        return Ok(true);
    }
    conn.prepare_cached(
        "DELETE FROM adapter_state WHERE tenant = ?1 AND namespace = ?2
         AND expires_at IS NOT NULL AND expires_at <= ?3",
    )?
    .execute(params![scope.tenant, scope.adapter, now])?;
    Ok(kept(conn)? < max_keys)
}

/// A claim's row, as the slow path of [`SqliteStorage::claim`] reads it.
struct ClaimRow {
    input_hash: String,
    state: String,
    epoch: i64,
    owner_node: Option<String>,
    owner_call: Option<String>,
    lease_until: Option<i64>,
    result: Option<String>,
    expires_at: i64,
}

fn claim_in(conn: &mut Connection, request: &ClaimRequest) -> rusqlite::Result<Claim> {
    let ClaimRequest {
        scope,
        key,
        input_hash,
        owner,
        lease,
        window,
        take_over,
    } = request;
    let now = now_ms();
    let lease_until = now.saturating_add(ms(*lease));
    let won = |epoch: i64, resumed: bool| {
        Claim::Won(Lease {
            scope: scope.clone(),
            key: key.clone(),
            epoch,
            owner: owner.clone(),
            resumed,
            length: *lease,
            window: *window,
            input_hash: input_hash.clone(),
        })
    };
    // The common case, a new key, in one statement and no explicit transaction.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO idempotency (tenant, adapter, key, input_hash, state, epoch, owner_node,
                 owner_call, lease_until, instance_id, result, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6, ?7, NULL, NULL, ?8, ?9)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            scope.tenant,
            scope.adapter,
            key,
            input_hash,
            owner.node,
            owner.call_id(),
            lease_until,
            now,
            now.saturating_add(ms(*window)),
        ])?;
    if inserted == 1 {
        return Ok(won(1, false));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    let lease_until = now.saturating_add(ms(*lease));
    let row = tx
        .prepare_cached(
            "SELECT input_hash, state, epoch, owner_node, owner_call, lease_until, result, expires_at
             FROM idempotency WHERE tenant = ?1 AND adapter = ?2 AND key = ?3",
        )?
        .query_row(params![scope.tenant, scope.adapter, key], |r| {
            Ok(ClaimRow {
                input_hash: r.get(0)?,
                state: r.get(1)?,
                epoch: r.get(2)?,
                owner_node: r.get(3)?,
                owner_call: r.get(4)?,
                lease_until: r.get(5)?,
                result: r.get(6)?,
                expires_at: r.get(7)?,
            })
        })
        .optional()?;
    let lease_over = |row: &ClaimRow| row.lease_until.unwrap_or(0) <= now;
    let outcome = match row {
        // Gone, or expired and not running: the key starts afresh (a later epoch, so a
        // holder from before cannot mistake the new claim for its own).
        None => None,
        Some(row) if row.expires_at <= now && (row.state == "done" || lease_over(&row)) => {
            Some(row.epoch)
        }
        Some(row) if row.input_hash != *input_hash => return Ok(Claim::InputMismatch),
        Some(ClaimRow {
            state,
            result: Some(result),
            ..
        }) if state == "done" => return Ok(Claim::Done { result }),
        Some(row) if !lease_over(&row) && *take_over != Some(row.epoch) => {
            let holder = row
                .owner_call
                .as_deref()
                .and_then(|call| Owner::from_stored(row.owner_node.as_deref().unwrap_or(""), call))
                .unwrap_or_else(|| Owner {
                    node: String::new(),
                    pid: 0,
                    started: 0,
                    call: 0,
                });
            return Ok(Claim::Busy {
                holder,
                epoch: row.epoch,
            });
        }
        Some(row) => {
            // Abandoned (lease over) or its holder's process is gone: take it over.
            let epoch = row.epoch + 1;
            tx.execute(
                "UPDATE idempotency SET epoch = ?4, owner_node = ?5, owner_call = ?6, lease_until = ?7
                 WHERE tenant = ?1 AND adapter = ?2 AND key = ?3",
                params![scope.tenant, scope.adapter, key, epoch, owner.node, owner.call_id(), lease_until],
            )?;
            tx.commit()?;
            return Ok(won(epoch, true));
        }
    };
    let epoch = outcome.map_or(1, |previous| previous + 1);
    tx.execute(
        "INSERT OR REPLACE INTO idempotency (tenant, adapter, key, input_hash, state, epoch,
             owner_node, owner_call, lease_until, instance_id, result, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, NULL, NULL, ?9, ?10)",
        params![
            scope.tenant,
            scope.adapter,
            key,
            input_hash,
            epoch,
            owner.node,
            owner.call_id(),
            lease_until,
            now,
            now.saturating_add(ms(*window)),
        ],
    )?;
    tx.commit()?;
    Ok(won(epoch, false))
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.db.path().display())
    }

    async fn state_get(&self, scope: &Scope, key: &str) -> StorageResult<Option<Vec<u8>>> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.db
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT value FROM adapter_state WHERE tenant = ?1 AND namespace = ?2
                     AND key = ?3 AND (expires_at IS NULL OR expires_at > ?4)",
                )?
                .query_row(params![scope.tenant, scope.adapter, key, now_ms()], |row| {
                    row.get(0)
                })
                .optional()
            })
            .await
    }

    async fn state_set(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        max_keys: u64,
    ) -> StorageResult<bool> {
        let (scope, key, value) = (scope.clone(), key.to_owned(), value.to_vec());
        self.db
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now = now_ms();
                // Overwriting a live key adds none; an expired one written again is a new
                // key and counts against the quota.
                let live = tx
                    .prepare_cached(
                        "SELECT 1 FROM adapter_state WHERE tenant = ?1 AND namespace = ?2 AND key = ?3
                         AND (expires_at IS NULL OR expires_at > ?4)",
                    )?
                    .query_row(params![scope.tenant, scope.adapter, key, now], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !live && !quota_allows(&tx, &scope, now, max_keys)? {
                    // The expired rows the quota check deleted stay deleted.
                    tx.commit()?;
                    return Ok(false);
                }
                tx.prepare_cached(
                    "INSERT INTO adapter_state (tenant, namespace, key, value, expires_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant, namespace, key) DO UPDATE
                     SET value = excluded.value, expires_at = excluded.expires_at,
                         updated_at = excluded.updated_at",
                )?
                .execute(params![scope.tenant, scope.adapter, key, value, expiry(ttl), now])?;
                tx.commit()?;
                Ok(true)
            })
            .await
    }

    async fn state_insert_new(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        max_keys: u64,
    ) -> StorageResult<Option<bool>> {
        let (scope, key, value) = (scope.clone(), key.to_owned(), value.to_vec());
        self.db
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now = now_ms();
                let live = tx
                    .prepare_cached(
                        "SELECT 1 FROM adapter_state WHERE tenant = ?1 AND namespace = ?2 AND key = ?3
                         AND (expires_at IS NULL OR expires_at > ?4)",
                    )?
                    .query_row(params![scope.tenant, scope.adapter, key, now], |_| Ok(()))
                    .optional()?
                    .is_some();
                if live {
                    return Ok(Some(false));
                }
                if !quota_allows(&tx, &scope, now, max_keys)? {
                    tx.commit()?;
                    return Ok(None);
                }
                // An upsert, not INSERT OR REPLACE: a replaced (expired) row would not fire
                // the delete trigger, and the kept count would drift up.
                tx.prepare_cached(
                    "INSERT INTO adapter_state (tenant, namespace, key, value, expires_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant, namespace, key) DO UPDATE
                     SET value = excluded.value, expires_at = excluded.expires_at,
                         updated_at = excluded.updated_at",
                )?
                .execute(params![scope.tenant, scope.adapter, key, value, expiry(ttl), now])?;
                tx.commit()?;
                Ok(Some(true))
            })
            .await
    }

    async fn state_delete(&self, scope: &Scope, key: &str) -> StorageResult<bool> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.db
            .run(move |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let removed = tx.execute(
                    "DELETE FROM adapter_state WHERE tenant = ?1 AND namespace = ?2 AND key = ?3
                     AND (expires_at IS NULL OR expires_at > ?4)",
                    params![scope.tenant, scope.adapter, key, now_ms()],
                )?;
                // An expired row is gone for the guest already; remove it quietly too.
                tx.execute(
                    "DELETE FROM adapter_state WHERE tenant = ?1 AND namespace = ?2 AND key = ?3",
                    params![scope.tenant, scope.adapter, key],
                )?;
                tx.commit()?;
                Ok(removed > 0)
            })
            .await
    }

    async fn bind_namespace(
        &self,
        scope: &Scope,
        path: Option<&str>,
        sha256: &str,
        rebind: bool,
    ) -> StorageResult<Result<(), NamespaceOwner>> {
        let (scope, path, sha256) = (scope.clone(), path.map(str::to_owned), sha256.to_owned());
        self.db
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let owner = tx
                    .query_row(
                        "SELECT path, sha256 FROM namespaces WHERE tenant = ?1 AND namespace = ?2",
                        params![scope.tenant, scope.adapter],
                        |row| {
                            Ok(NamespaceOwner {
                                path: row.get(0)?,
                                sha256: row.get(1)?,
                            })
                        },
                    )
                    .optional()?;
                let verdict = match super::namespace_verdict(owner, path.as_deref(), &sha256, rebind) {
                    super::Binding::Keep => Ok(()),
                    super::Binding::Refuse(owner) => Err(owner),
                    super::Binding::Write => {
                        tx.execute(
                            "INSERT OR REPLACE INTO namespaces (tenant, namespace, path, sha256, bound_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![scope.tenant, scope.adapter, path, sha256, now_ms()],
                        )?;
                        Ok(())
                    }
                };
                tx.commit()?;
                Ok(verdict)
            })
            .await
    }

    async fn claim(&self, request: &ClaimRequest) -> StorageResult<Claim> {
        let request = request.clone();
        self.db.run(move |conn| claim_in(conn, &request)).await
    }

    async fn renew(&self, lease: &Lease) -> StorageResult<bool> {
        let lease = lease.clone();
        self.db
            .run(move |conn| {
                let until = now_ms().saturating_add(ms(lease.length));
                conn.prepare_cached(
                    "UPDATE idempotency SET lease_until = ?6
                     WHERE tenant = ?1 AND adapter = ?2 AND key = ?3 AND epoch = ?4
                     AND owner_call = ?5 AND state = 'running'",
                )?
                .execute(params![
                    lease.scope.tenant,
                    lease.scope.adapter,
                    lease.key,
                    lease.epoch,
                    lease.owner.call_id(),
                    until
                ])
                .map(|updated| updated == 1)
            })
            .await
    }

    async fn complete(
        &self,
        lease: &Lease,
        instance_id: &str,
        result: &str,
    ) -> StorageResult<Completion> {
        let (lease, instance_id, result) =
            (lease.clone(), instance_id.to_owned(), result.to_owned());
        self.db
            .run(move |conn| {
                let now = now_ms();
                let written = conn
                    .prepare_cached(
                        "UPDATE idempotency SET state = 'done', owner_node = NULL, owner_call = NULL,
                             lease_until = NULL, instance_id = ?6, result = ?7, expires_at = ?8
                         WHERE tenant = ?1 AND adapter = ?2 AND key = ?3 AND epoch = ?4
                         AND owner_call = ?5 AND state = 'running'",
                    )?
                    .execute(params![
                        lease.scope.tenant,
                        lease.scope.adapter,
                        lease.key,
                        lease.epoch,
                        lease.owner.call_id(),
                        instance_id,
                        result,
                        now.saturating_add(ms(lease.window)),
                    ])?;
                if written == 1 {
                    return Ok(Completion::Recorded);
                }
                let recorded: Option<String> = conn
                    .query_row(
                        "SELECT result FROM idempotency WHERE tenant = ?1 AND adapter = ?2
                         AND key = ?3 AND state = 'done'",
                        params![lease.scope.tenant, lease.scope.adapter, lease.key],
                        |r| r.get(0),
                    )
                    .optional()?
                    .flatten();
                Ok(Completion::Fenced { recorded })
            })
            .await
    }

    async fn release(&self, lease: &Lease) -> StorageResult<()> {
        let lease = lease.clone();
        self.db
            .run(move |conn| {
                conn.execute(
                    "DELETE FROM idempotency WHERE tenant = ?1 AND adapter = ?2 AND key = ?3
                     AND epoch = ?4 AND owner_call = ?5 AND state = 'running'",
                    params![
                        lease.scope.tenant,
                        lease.scope.adapter,
                        lease.key,
                        lease.epoch,
                        lease.owner.call_id()
                    ],
                )
                .map(|_| ())
            })
            .await
    }

    async fn record_destroyed(
        &self,
        scope: &Scope,
        instance_id: &str,
        window: Duration,
    ) -> StorageResult<()> {
        let (scope, instance_id) = (scope.clone(), instance_id.to_owned());
        self.db
            .run(move |conn| {
                let now = now_ms();
                conn.execute(
                    "INSERT OR REPLACE INTO destroyed (tenant, adapter, instance_id, destroyed_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![scope.tenant, scope.adapter, instance_id, now, now.saturating_add(ms(window))],
                )
                .map(|_| ())
            })
            .await
    }

    async fn is_destroyed(&self, scope: &Scope, instance_id: &str) -> StorageResult<bool> {
        let (scope, instance_id) = (scope.clone(), instance_id.to_owned());
        self.db
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT 1 FROM destroyed WHERE tenant = ?1 AND adapter = ?2
                     AND instance_id = ?3 AND expires_at > ?4",
                )?
                .query_row(
                    params![scope.tenant, scope.adapter, instance_id, now_ms()],
                    |_| Ok(()),
                )
                .optional()
                .map(|found| found.is_some())
            })
            .await
    }

    async fn purge_expired(&self, batch: u32) -> StorageResult<Purged> {
        self.db
            .run_blocking(move |conn| {
                let now = now_ms();
                let state = conn.execute(
                    "DELETE FROM adapter_state WHERE (tenant, namespace, key) IN (SELECT tenant, namespace, key
                     FROM adapter_state WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                    params![now, batch],
                )?;
                // A running claim is kept until its lease is over, whatever its expiry.
                let keys = conn.execute(
                    "DELETE FROM idempotency WHERE (tenant, adapter, key) IN (SELECT tenant, adapter, key
                     FROM idempotency WHERE expires_at <= ?1
                     AND (state = 'done' OR lease_until IS NULL OR lease_until <= ?1) LIMIT ?2)",
                    params![now, batch],
                )?;
                let destroyed = conn.execute(
                    "DELETE FROM destroyed WHERE (tenant, adapter, instance_id) IN (SELECT tenant, adapter, instance_id
                     FROM destroyed WHERE expires_at <= ?1 LIMIT ?2)",
                    params![now, batch],
                )?;
                Ok(Purged {
                    state,
                    keys,
                    destroyed,
                })
            })
            .await
    }

    async fn forget_records(&self, scope: &Scope) -> StorageResult<u64> {
        let scope = scope.clone();
        self.db
            .run_blocking(move |conn| {
                let keys = conn.execute(
                    "DELETE FROM idempotency WHERE tenant = ?1 AND adapter = ?2 AND state = 'done'",
                    params![scope.tenant, scope.adapter],
                )?;
                let destroyed = conn.execute(
                    "DELETE FROM destroyed WHERE tenant = ?1 AND adapter = ?2",
                    params![scope.tenant, scope.adapter],
                )?;
                Ok((keys + destroyed) as u64)
            })
            .await
    }

    async fn idempotency_rows(&self) -> StorageResult<u64> {
        self.db
            .run_blocking(|conn| {
                conn.query_row("SELECT COUNT(*) FROM idempotency", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &tempfile::TempDir) -> SqliteStorage {
        SqliteStorage::new(SqliteDb::open(&dir.path().join("airlock.db")).unwrap())
    }

    #[tokio::test]
    async fn the_shared_suite_passes_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let one = storage(&dir);
        let two = storage(&dir);
        super::super::suite::run(&one, &two, &|age| {
            let db = one.db().clone();
            Box::pin(async move { age_sqlite(&db, age).await })
        })
        .await;
    }

    #[tokio::test]
    async fn the_service_suite_passes_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let one = storage(&dir);
        let two = storage(&dir);
        super::super::service_suite::run(&one, &two, &one.describe(), &|age| {
            let db = one.db().clone();
            Box::pin(async move { age_sqlite(&db, age).await })
        })
        .await;
    }

    /// Move every time in the file `age` into the past, as if that much time went by.
    async fn age_sqlite(db: &SqliteDb, age: Duration) {
        let by = ms(age);
        // On the blocking pool, which never runs it twice: each update subtracts once.
        db.run_blocking(move |conn| {
            conn.execute_batch(&format!(
                "UPDATE adapter_state SET expires_at = expires_at - {by};
                 UPDATE idempotency SET expires_at = expires_at - {by}, lease_until = lease_until - {by};
                 UPDATE destroyed SET expires_at = expires_at - {by};
                 UPDATE tenants SET created_at = created_at - {by}, key_set_at = key_set_at - {by};
                 UPDATE adapter_versions SET created_at = created_at - {by};
                 UPDATE active_versions SET set_at = set_at - {by};
                 UPDATE instances SET created_at = created_at - {by}, destroyed_at = destroyed_at - {by};
                 UPDATE events SET at = at - {by};
                 UPDATE call_records SET at = at - {by}, expires_at = expires_at - {by};"
            ))
        })
        .await
        .unwrap();
    }

    #[test]
    fn a_version_3_file_is_migrated_with_its_rows_under_the_default_tenant_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airlock.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V3).unwrap();
            conn.execute_batch(
                "INSERT INTO adapter_state VALUES ('ns', 'k', x'7631', NULL, 1);
                 INSERT INTO idempotency VALUES ('ns', 'key', 'h', 'done', NULL, NULL, 'i-1', '{}', 1, 99999999999999);
                 INSERT INTO namespaces VALUES ('ns', '/a.wasm', 'aaa', 1);
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let db = SqliteDb::open(&path).unwrap();
        let (state, key, namespace): (Vec<u8>, String, String) = db
            .with(|conn| {
                Ok((
                    conn.query_row("SELECT value FROM adapter_state WHERE tenant = 'default' AND namespace = 'ns' AND key = 'k'", [], |r| r.get(0))?,
                    conn.query_row("SELECT instance_id FROM idempotency WHERE tenant = 'default' AND key = 'key'", [], |r| r.get(0))?,
                    conn.query_row("SELECT sha256 FROM namespaces WHERE tenant = 'default' AND namespace = 'ns'", [], |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!(
            (state.as_slice(), key.as_str(), namespace.as_str()),
            (&b"v1"[..], "i-1", "aaa")
        );
        // The migrated rows are counted for the quota, and the triggers keep counting.
        let count = || {
            db.with(|conn| {
                conn.query_row(
                    "SELECT keys FROM state_counts WHERE tenant = 'default' AND namespace = 'ns'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap()
        };
        assert_eq!(count(), 1);
        db.with(|conn| {
            conn.execute_batch(
                "INSERT INTO adapter_state VALUES ('default', 'ns', 'k2', x'00', NULL, 1);
                 INSERT INTO adapter_state VALUES ('default', 'ns', 'k', x'01', NULL, 2)
                     ON CONFLICT DO UPDATE SET value = excluded.value;",
            )
        })
        .unwrap();
        assert_eq!(count(), 2);
        db.with(|conn| conn.execute_batch("DELETE FROM adapter_state WHERE key = 'k'"))
            .unwrap();
        assert_eq!(count(), 1);
    }

    #[tokio::test]
    async fn a_version_5_file_gains_the_service_tables_and_keeps_its_rows() {
        use crate::storage::service::ServiceStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airlock.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in [SCHEMA_V3, MIGRATE_V4, MIGRATE_V5] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "INSERT INTO adapter_state VALUES ('t', 'ns', 'k', x'7631', NULL, 1);
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let storage = SqliteStorage::new(SqliteDb::open(&path).unwrap());
        let version: i64 = storage
            .db()
            .with(|conn| conn.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(
            storage
                .state_get(&Scope::new("t", "ns"), "k")
                .await
                .unwrap(),
            Some(b"v1".to_vec())
        );
        assert!(storage.tenant_create("t", "hash", None).await.unwrap());
        assert_eq!(
            storage
                .event_append("t", "a", "i", "log", "{}")
                .await
                .unwrap(),
            1
        );
    }

    #[test]
    fn a_schema_newer_than_this_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airlock.db");
        SqliteDb::open(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let error = SqliteDb::open(&path).err().unwrap().to_string();
        assert_eq!(
            error,
            format!(
                "state database sqlite:{}: the database's schema is version 99, newer than this airlock's (6); a newer airlock wrote it: run that version, or point this one at another database",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn the_directory_is_0700_and_the_database_and_its_companions_0600() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let storage = SqliteStorage::new(SqliteDb::open(&data.join("airlock.db")).unwrap());
        storage
            .state_set(&Scope::new("t", "a"), "k", b"secret", None, 10)
            .await
            .unwrap();
        assert_eq!(mode(&data), 0o700);
        // Open connections keep the write-ahead log and the shared-memory index in place.
        for file in ["airlock.db", "airlock.db-wal", "airlock.db-shm"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }
}
