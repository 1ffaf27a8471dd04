//! The embedded database: one SQLite file under the data directory, shared safely by every
//! `airlock` process that points at it (WAL mode, busy timeout). It holds the adapters'
//! state and the index of compiled artifacts. SQL stays in this module so that a
//! PostgreSQL backend can replace it behind the same methods.
//!
//! Every method blocks. Point reads run on the caller's thread (WAL readers never wait for
//! writers); writes, which may wait for another process's write lock, run on the blocking
//! pool ([`Database::run`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Error;

const SCHEMA_VERSION: i64 = 3;
const MIGRATIONS: &str = "
CREATE TABLE IF NOT EXISTS adapter_state (
    namespace  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    expires_at INTEGER,          -- unix milliseconds; NULL never expires
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS adapter_state_expiry ON adapter_state (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS compiled_artifacts (
    cache_key  TEXT    PRIMARY KEY,
    sha256     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
-- Host-owned idempotency of create: one row per (adapter, key).
CREATE TABLE IF NOT EXISTS idempotency (
    adapter     TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    input_hash  TEXT    NOT NULL,     -- SHA-256 of the canonical config and params
    state       TEXT    NOT NULL,     -- 'running' or 'done'
    owner       TEXT,                 -- the call holding a running claim
    lease_until INTEGER,              -- past it, a running claim was abandoned (a crash)
    instance_id TEXT,
    result      TEXT,                 -- the ProvisionResult, seed JSON, once done
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (adapter, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at);
-- Instances a destroy succeeded for, so destroying them again succeeds without the guest.
CREATE TABLE IF NOT EXISTS destroyed (
    adapter      TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL,
    destroyed_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (adapter, instance_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS destroyed_expiry ON destroyed (expires_at);
-- Which component a state namespace belongs to (see `Database::bind_namespace`).
CREATE TABLE IF NOT EXISTS namespaces (
    namespace TEXT    PRIMARY KEY,
    path      TEXT,                -- the component file's canonical path, if it came from one
    sha256    TEXT    NOT NULL,    -- the component's digest
    bound_at  INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Rows removed by one purge, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Purged {
    pub(crate) state: usize,
    pub(crate) keys: usize,
    pub(crate) destroyed: usize,
}

impl Purged {
    fn total(&self) -> usize {
        self.state + self.keys + self.destroyed
    }

    /// Whether a table gave a full batch, so more expired rows may be left in it.
    fn maybe_more(&self, batch: u32) -> bool {
        [self.state, self.keys, self.destroyed]
            .into_iter()
            .any(|removed| removed >= batch as usize)
    }
}

/// Rows per table and statement in a purge, so no single write transaction runs long.
const PURGE_BATCH: u32 = 1000;

/// The component a namespace is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceOwner {
    /// The canonical path it was loaded from, if it was loaded from a file.
    pub(crate) path: Option<String>,
    /// Its SHA-256.
    pub(crate) sha256: String,
}

/// Who asks to claim which key, with what input.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRequest {
    pub(crate) adapter: String,
    pub(crate) key: String,
    pub(crate) input_hash: String,
    pub(crate) owner: String,
    pub(crate) lease_ms: i64,
    pub(crate) window_ms: i64,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This call runs the create; `resumed` if it takes over from a crashed one.
    Won { resumed: bool },
    /// Already done: here is the recorded result.
    Done { result: String },
    /// Another live call holds the key.
    Busy,
    /// The key was used with other config or params.
    InputMismatch,
}

/// A handle to the database file; cheap to clone. Connections are pooled.
#[derive(Clone)]
pub(crate) struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

/// How many idle connections to keep.
const POOL_IDLE: usize = 8;

/// A database failure, as text: callers turn it into their own error type.
pub(crate) type DbResult<T> = Result<T, String>;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| now_ms().saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64))
}

impl Database {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub(crate) fn open(path: &Path) -> Result<Database, Error> {
        let fail = |message: String| Error::Database {
            database: path.display().to_string(),
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
        let db = Database {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool: Mutex::new(Vec::new()),
            }),
        };
        let conn = db.connect().map_err(fail)?;
        migrate(&conn).map_err(|e| fail(e.to_string()))?;
        db.release(conn);
        Ok(db)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    fn connect(&self) -> DbResult<Connection> {
        let conn = Connection::open(&self.inner.path).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    fn release(&self, conn: Connection) {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_IDLE {
            pool.push(conn);
        }
    }

    /// Run `f` with a pooled connection, on the calling thread.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> DbResult<R> {
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
        let result = f(&mut conn).map_err(|e| e.to_string());
        self.release(conn);
        result
    }

    /// Run `f` with a pooled connection on tokio's blocking pool.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> DbResult<R> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.with(f))
            .await
            .map_err(|e| format!("database task failed: {e}"))?
    }

    // --- adapter state ---

    /// The live value under (namespace, key). Runs on the calling thread, not the blocking
    /// pool: in WAL mode a reader never waits for a writer, and a primary-key lookup with a
    /// cached statement takes a few microseconds, where the hop to the blocking pool and
    /// back cost the example adapter's `status` about 57 µs (89 → 32 µs; see
    /// docs/benchmarks.md).
    pub(crate) fn state_get(&self, namespace: &str, key: &str) -> DbResult<Option<Vec<u8>>> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT value FROM adapter_state
                 WHERE namespace = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .query_row(params![namespace, key, now_ms()], |row| row.get(0))
            .optional()
        })
    }

    /// Write `value`; `Ok(false)` if that would create a key past `max_keys`.
    pub(crate) async fn state_set(
        &self,
        namespace: String,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
        max_keys: u64,
    ) -> DbResult<bool> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_ms();
            let exists: bool = tx
                .query_row(
                    "SELECT 1 FROM adapter_state WHERE namespace = ?1 AND key = ?2",
                    params![namespace, key],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if !exists && count_live(&tx, &namespace, now)? >= max_keys {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO adapter_state (namespace, key, value, expires_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (namespace, key) DO UPDATE
                 SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                params![namespace, key, value, expiry(ttl), now],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Insert only if absent or expired. `Ok(Some(inserted))`, or `Ok(None)` past `max_keys`.
    pub(crate) async fn state_insert_new(
        &self,
        namespace: String,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
        max_keys: u64,
    ) -> DbResult<Option<bool>> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_ms();
            let live: bool = tx
                .query_row(
                    "SELECT 1 FROM adapter_state WHERE namespace = ?1 AND key = ?2
                     AND (expires_at IS NULL OR expires_at > ?3)",
                    params![namespace, key, now],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if live {
                return Ok(Some(false));
            }
            if count_live(&tx, &namespace, now)? >= max_keys {
                return Ok(None);
            }
            tx.execute(
                "INSERT OR REPLACE INTO adapter_state (namespace, key, value, expires_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![namespace, key, value, expiry(ttl), now],
            )?;
            tx.commit()?;
            Ok(Some(true))
        })
        .await
    }

    pub(crate) async fn state_delete(&self, namespace: String, key: String) -> DbResult<bool> {
        self.run(move |conn| {
            let removed = conn.execute(
                "DELETE FROM adapter_state WHERE namespace = ?1 AND key = ?2
                 AND (expires_at IS NULL OR expires_at > ?3)",
                params![namespace, key, now_ms()],
            )?;
            // An expired row is gone for the guest already; remove it quietly too.
            conn.execute(
                "DELETE FROM adapter_state WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
            )?;
            Ok(removed > 0)
        })
        .await
    }

    /// Remove expired state rows, idempotency records and destroy records, at most `batch`
    /// of each.
    pub(crate) fn purge_expired(&self, batch: u32) -> DbResult<Purged> {
        self.with(|conn| {
            let now = now_ms();
            let state = conn.execute(
                "DELETE FROM adapter_state WHERE (namespace, key) IN (SELECT namespace, key
                 FROM adapter_state WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                params![now, batch],
            )?;
            // A running claim is kept until its lease is over, whatever its expiry.
            let keys = conn.execute(
                "DELETE FROM idempotency WHERE (adapter, key) IN (SELECT adapter, key
                 FROM idempotency WHERE expires_at <= ?1
                 AND (state = 'done' OR lease_until <= ?1) LIMIT ?2)",
                params![now, batch],
            )?;
            let destroyed = conn.execute(
                "DELETE FROM destroyed WHERE (adapter, instance_id) IN (SELECT adapter, instance_id
                 FROM destroyed WHERE expires_at <= ?1 LIMIT ?2)",
                params![now, batch],
            )?;
            Ok(Purged {
                state,
                keys,
                destroyed,
            })
        })
    }

    /// Purge in batches of `batch` per table until no table gives a full batch; returns the
    /// rows removed. Each batch is a transaction of its own, so other writers get turns.
    pub(crate) fn purge_expired_in_batches(&self, batch: u32) -> DbResult<usize> {
        let mut total = 0;
        loop {
            let purged = self.purge_expired(batch)?;
            total += purged.total();
            if !purged.maybe_more(batch) {
                return Ok(total);
            }
        }
    }

    /// Purge everything expired, in batches of [`PURGE_BATCH`].
    pub(crate) fn purge_all_expired(&self) -> DbResult<usize> {
        self.purge_expired_in_batches(PURGE_BATCH)
    }

    // --- namespaces ---

    /// Bind `namespace` to a component, or check the binding. With `rebind` (the policy
    /// names the namespace: its author says this is the same adapter) the namespace is
    /// bound to this component whatever it was bound to. Without it (the name came from
    /// the file stem or the embedder's default), a namespace bound to another component is
    /// refused with that component as `Err`; the same file path (a rebuild in place) or the
    /// same digest (the same component elsewhere) counts as the same component.
    pub(crate) fn bind_namespace(
        &self,
        namespace: &str,
        path: Option<&str>,
        sha256: &str,
        rebind: bool,
    ) -> DbResult<Result<(), NamespaceOwner>> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let owner = tx
                .query_row(
                    "SELECT path, sha256 FROM namespaces WHERE namespace = ?1",
                    params![namespace],
                    |row| {
                        Ok(NamespaceOwner {
                            path: row.get(0)?,
                            sha256: row.get(1)?,
                        })
                    },
                )
                .optional()?;
            let same_path =
                |owner: &NamespaceOwner| path.is_some() && owner.path.as_deref() == path;
            let verdict = match owner {
                Some(owner) if owner.sha256 == sha256 && !rebind => Ok(()),
                Some(owner) if !rebind && !same_path(&owner) => Err(owner),
                _ => {
                    tx.execute(
                        "INSERT OR REPLACE INTO namespaces (namespace, path, sha256, bound_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![namespace, path, sha256, now_ms()],
                    )?;
                    Ok(())
                }
            };
            tx.commit()?;
            Ok(verdict)
        })
    }

    // --- idempotency ---

    /// Try to claim `key` for a create; see [`Claim`].
    pub(crate) async fn idempotency_claim(&self, claim: ClaimRequest) -> DbResult<Claim> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_ms();
            let row = tx
                .query_row(
                    "SELECT input_hash, state, lease_until, result, expires_at FROM idempotency
                     WHERE adapter = ?1 AND key = ?2",
                    params![claim.adapter, claim.key],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .optional()?;
            let lease = now + claim.lease_ms;
            let outcome = match row {
                Some((_, state, lease_until, _, expires)) if expires <= now && (state == "done" || lease_until.unwrap_or(0) <= now) => None,
                None => None,
                Some((hash, ..)) if hash != claim.input_hash => Some(Claim::InputMismatch),
                Some((_, state, _, Some(result), _)) if state == "done" => Some(Claim::Done { result }),
                Some((_, _, Some(lease_until), _, _)) if lease_until > now => Some(Claim::Busy),
                Some(_) => {
                    tx.execute(
                        "UPDATE idempotency SET owner = ?3, lease_until = ?4 WHERE adapter = ?1 AND key = ?2",
                        params![claim.adapter, claim.key, claim.owner, lease],
                    )?;
                    Some(Claim::Won { resumed: true })
                }
            };
            let outcome = match outcome {
                Some(outcome) => outcome,
                None => {
                    tx.execute(
                        "INSERT OR REPLACE INTO idempotency
                         (adapter, key, input_hash, state, owner, lease_until, instance_id, result, created_at, expires_at)
                         VALUES (?1, ?2, ?3, 'running', ?4, ?5, NULL, NULL, ?6, ?7)",
                        params![claim.adapter, claim.key, claim.input_hash, claim.owner, lease, now, now + claim.window_ms],
                    )?;
                    Claim::Won { resumed: false }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    /// Record the result of a won claim. If the key already holds a different instance
    /// id, nothing changes and that id comes back as `Err`.
    pub(crate) async fn idempotency_complete(
        &self,
        claim: ClaimRequest,
        instance_id: String,
        result: String,
    ) -> DbResult<Result<(), String>> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let recorded: Option<Option<String>> = tx
                .query_row(
                    "SELECT instance_id FROM idempotency WHERE adapter = ?1 AND key = ?2",
                    params![claim.adapter, claim.key],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(Some(recorded)) = &recorded
                && *recorded != instance_id
            {
                return Ok(Err(recorded.clone()));
            }
            let now = now_ms();
            tx.execute(
                "INSERT OR REPLACE INTO idempotency
                 (adapter, key, input_hash, state, owner, lease_until, instance_id, result, created_at, expires_at)
                 VALUES (?1, ?2, ?3, 'done', NULL, NULL, ?4, ?5, ?6, ?7)",
                params![claim.adapter, claim.key, claim.input_hash, instance_id, result, now, now + claim.window_ms],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    /// Give up a won claim (the create failed), so the next call with the key runs again.
    pub(crate) async fn idempotency_release(&self, claim: ClaimRequest) -> DbResult<()> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM idempotency WHERE adapter = ?1 AND key = ?2 AND owner = ?3 AND state = 'running'",
                params![claim.adapter, claim.key, claim.owner],
            )
            .map(|_| ())
        })
        .await
    }

    pub(crate) async fn destroyed_record(
        &self,
        adapter: String,
        instance_id: String,
        window_ms: i64,
    ) -> DbResult<()> {
        self.run(move |conn| {
            let now = now_ms();
            conn.execute(
                "INSERT OR REPLACE INTO destroyed (adapter, instance_id, destroyed_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![adapter, instance_id, now, now + window_ms],
            )
            .map(|_| ())
        })
        .await
    }

    /// Whether a destroy of (adapter, instance) is recorded. On the calling thread, like
    /// [`Database::state_get`].
    pub(crate) fn destroyed_contains(&self, adapter: &str, instance_id: &str) -> DbResult<bool> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT 1 FROM destroyed WHERE adapter = ?1 AND instance_id = ?2 AND expires_at > ?3",
            )?
            .query_row(params![adapter, instance_id, now_ms()], |_| Ok(true))
            .optional()
            .map(|found| found.unwrap_or(false))
        })
    }

    /// Remove an adapter's finished idempotency records and destroy records.
    pub(crate) async fn forget_records(&self, adapter: String) -> DbResult<u64> {
        self.run(move |conn| {
            let keys = conn.execute(
                "DELETE FROM idempotency WHERE adapter = ?1 AND state = 'done'",
                params![adapter],
            )?;
            let destroyed =
                conn.execute("DELETE FROM destroyed WHERE adapter = ?1", params![adapter])?;
            Ok((keys + destroyed) as u64)
        })
        .await
    }

    /// Rows in the idempotency table (for tests and the soak).
    pub(crate) async fn idempotency_rows(&self) -> DbResult<u64> {
        self.run(|conn| {
            conn.query_row("SELECT COUNT(*) FROM idempotency", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
        })
        .await
    }

    // --- compiled artifacts ---

    pub(crate) fn artifact_digest(&self, cache_key: &str) -> DbResult<Option<String>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT sha256 FROM compiled_artifacts WHERE cache_key = ?1",
                params![cache_key],
                |row| row.get(0),
            )
            .optional()
        })
    }

    pub(crate) fn record_artifact(&self, cache_key: &str, sha256: &str) -> DbResult<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO compiled_artifacts (cache_key, sha256, created_at) VALUES (?1, ?2, ?3)",
                params![cache_key, sha256, now_ms()],
            )
            .map(|_| ())
        })
    }
}

fn count_live(conn: &Connection, namespace: &str, now: i64) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM adapter_state WHERE namespace = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        params![namespace, now],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version < SCHEMA_VERSION {
        conn.execute_batch(MIGRATIONS)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_round_trip_ttl_quota_and_insert_new() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("airlock.db")).unwrap();
        let ns = || "adapter-a".to_owned();
        assert_eq!(db.state_get(&ns(), "k").unwrap(), None);
        assert!(
            db.state_set(ns(), "k".into(), b"v1".to_vec(), None, 2)
                .await
                .unwrap()
        );
        assert_eq!(db.state_get(&ns(), "k").unwrap(), Some(b"v1".to_vec()));
        // Other namespaces do not see it.
        assert_eq!(db.state_get("adapter-b", "k").unwrap(), None);
        // insert-new loses to a live key, wins on an absent one.
        assert_eq!(
            db.state_insert_new(ns(), "k".into(), b"x".to_vec(), None, 2)
                .await
                .unwrap(),
            Some(false)
        );
        assert_eq!(
            db.state_insert_new(ns(), "j".into(), b"x".to_vec(), None, 2)
                .await
                .unwrap(),
            Some(true)
        );
        // The quota counts live keys: a third is refused, an overwrite is not.
        assert!(
            !db.state_set(ns(), "third".into(), b"x".to_vec(), None, 2)
                .await
                .unwrap()
        );
        assert!(
            db.state_set(ns(), "k".into(), b"v2".to_vec(), None, 2)
                .await
                .unwrap()
        );
        // An expired key reads as absent and can be claimed again.
        assert!(
            db.state_set(
                ns(),
                "short".into(),
                b"x".to_vec(),
                Some(Duration::from_millis(1)),
                10
            )
            .await
            .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(db.state_get(&ns(), "short").unwrap(), None);
        assert_eq!(
            db.state_insert_new(ns(), "short".into(), b"y".to_vec(), None, 10)
                .await
                .unwrap(),
            Some(true)
        );
        assert!(db.state_delete(ns(), "short".into()).await.unwrap());
        assert!(!db.state_delete(ns(), "short".into()).await.unwrap());
    }

    #[tokio::test]
    async fn claims_wait_resume_complete_and_keep_the_recorded_instance() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("airlock.db")).unwrap();
        let first = ClaimRequest {
            adapter: "a".into(),
            key: "k".into(),
            input_hash: "h".into(),
            owner: "o1".into(),
            lease_ms: 60_000,
            window_ms: 60_000,
        };
        let second = ClaimRequest {
            owner: "o2".into(),
            ..first.clone()
        };
        assert_eq!(
            db.idempotency_claim(first.clone()).await.unwrap(),
            Claim::Won { resumed: false }
        );
        assert_eq!(
            db.idempotency_claim(second.clone()).await.unwrap(),
            Claim::Busy
        );
        let other_input = ClaimRequest {
            input_hash: "other".into(),
            ..second.clone()
        };
        assert_eq!(
            db.idempotency_claim(other_input).await.unwrap(),
            Claim::InputMismatch
        );
        db.idempotency_complete(first.clone(), "i-1".into(), "{}".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            db.idempotency_claim(second.clone()).await.unwrap(),
            Claim::Done {
                result: "{}".into()
            }
        );
        // A different instance id for a recorded key is refused; the record stands.
        assert_eq!(
            db.idempotency_complete(second, "i-2".into(), "{}".into())
                .await
                .unwrap(),
            Err("i-1".into())
        );
        // A claim whose lease ran out (its holder crashed) is taken over.
        let short = ClaimRequest {
            key: "k2".into(),
            lease_ms: 1,
            ..first.clone()
        };
        assert_eq!(
            db.idempotency_claim(short.clone()).await.unwrap(),
            Claim::Won { resumed: false }
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let taker = ClaimRequest {
            owner: "o3".into(),
            ..short
        };
        assert_eq!(
            db.idempotency_claim(taker.clone()).await.unwrap(),
            Claim::Won { resumed: true }
        );
        // A released claim lets the next call run.
        db.idempotency_release(taker.clone()).await.unwrap();
        assert_eq!(
            db.idempotency_claim(taker).await.unwrap(),
            Claim::Won { resumed: false }
        );
    }

    #[tokio::test]
    async fn a_second_handle_on_the_same_file_sees_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airlock.db");
        let one = Database::open(&path).unwrap();
        let two = Database::open(&path).unwrap();
        one.state_set("a".into(), "k".into(), b"v".to_vec(), None, 10)
            .await
            .unwrap();
        assert_eq!(two.state_get("a", "k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(one.purge_expired(100).unwrap(), Purged::default());
    }

    /// Insert `n` records already expired into each of the three purged tables.
    fn plant_expired(db: &Database, n: usize) {
        db.with(|conn| {
            let past = now_ms() - 60_000;
            for i in 0..n {
                conn.execute(
                    "INSERT INTO adapter_state VALUES ('a', ?1, x'00', ?2, ?2)",
                    params![format!("s{i}"), past],
                )?;
                conn.execute(
                    "INSERT INTO idempotency VALUES ('a', ?1, 'h', 'done', NULL, NULL, 'i', '{}', ?2, ?2)",
                    params![format!("k{i}"), past],
                )?;
                conn.execute(
                    "INSERT INTO destroyed VALUES ('a', ?1, ?2, ?2)",
                    params![format!("i{i}"), past],
                )?;
            }
            Ok(())
        })
        .unwrap();
    }

    fn rows(db: &Database, table: &str) -> i64 {
        db.with(|conn| conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)))
            .unwrap()
    }

    #[test]
    fn purging_in_batches_goes_on_until_every_table_is_empty_of_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("airlock.db")).unwrap();
        plant_expired(&db, 25);
        // The per-table counts: a sum of three tables compared with the batch size would
        // stop after the first batch (30 removed is not 10).
        assert_eq!(
            db.purge_expired(10).unwrap(),
            Purged {
                state: 10,
                keys: 10,
                destroyed: 10
            }
        );
        assert_eq!(db.purge_expired_in_batches(10).unwrap(), 45);
        for table in ["adapter_state", "idempotency", "destroyed"] {
            assert_eq!(rows(&db, table), 0, "{table}");
        }
    }

    #[test]
    fn a_namespace_stays_with_its_component_unless_the_policy_rebinds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("airlock.db")).unwrap();
        let bind = |path: Option<&str>, sha: &str, rebind: bool| {
            db.bind_namespace("adapter", path, sha, rebind).unwrap()
        };
        assert_eq!(bind(Some("/a/adapter.wasm"), "aaa", false), Ok(()));
        // The same file rebuilt, and the same component elsewhere, are the same adapter.
        assert_eq!(bind(Some("/a/adapter.wasm"), "aaa2", false), Ok(()));
        assert_eq!(bind(Some("/copy/adapter.wasm"), "aaa2", false), Ok(()));
        assert_eq!(bind(None, "aaa2", false), Ok(()));
        // Another component is refused, naming the one the namespace belongs to.
        let owner = NamespaceOwner {
            path: Some("/a/adapter.wasm".into()),
            sha256: "aaa2".into(),
        };
        assert_eq!(
            bind(Some("/b/adapter.wasm"), "bbb", false),
            Err(owner.clone())
        );
        assert_eq!(bind(None, "bbb", false), Err(owner));
        // A policy that names the namespace rebinds it.
        assert_eq!(bind(Some("/b/adapter.wasm"), "bbb", true), Ok(()));
        assert_eq!(bind(Some("/b/adapter.wasm"), "bbb", false), Ok(()));
        assert!(bind(Some("/a/adapter.wasm"), "aaa2", false).is_err());
    }

    #[tokio::test]
    async fn the_directory_is_0700_and_the_database_and_its_companions_0600() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let path = data.join("airlock.db");
        let db = Database::open(&path).unwrap();
        db.state_set("a".into(), "k".into(), b"secret".to_vec(), None, 10)
            .await
            .unwrap();
        assert_eq!(mode(&data), 0o700);
        // Open connections keep the write-ahead log and the shared-memory index in place.
        for file in ["airlock.db", "airlock.db-wal", "airlock.db-shm"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }
}
