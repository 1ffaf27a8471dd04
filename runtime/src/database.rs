//! The embedded database: one SQLite file under the data directory, shared safely by every
//! `airlock` process that points at it (WAL mode, busy timeout). It holds the adapters'
//! state and the index of compiled artifacts. SQL stays in this module so that a
//! PostgreSQL backend can replace it behind the same methods.
//!
//! Every method blocks; async callers run them on the blocking pool
//! ([`Database::run`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Error;

const SCHEMA_VERSION: i64 = 1;
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
";

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
            path: path.to_owned(),
            message,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create directory: {e}")))?;
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

    pub(crate) async fn state_get(
        &self,
        namespace: String,
        key: String,
    ) -> DbResult<Option<Vec<u8>>> {
        self.run(move |conn| {
            conn.query_row(
                "SELECT value FROM adapter_state
                 WHERE namespace = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
                params![namespace, key, now_ms()],
                |row| row.get(0),
            )
            .optional()
        })
        .await
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

    /// Remove expired state rows, at most `batch` of them; returns how many.
    pub(crate) fn purge_expired(&self, batch: u32) -> DbResult<usize> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM adapter_state WHERE (namespace, key) IN (SELECT namespace, key
                 FROM adapter_state WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                params![now_ms(), batch],
            )
        })
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
        assert_eq!(db.state_get(ns(), "k".into()).await.unwrap(), None);
        assert!(
            db.state_set(ns(), "k".into(), b"v1".to_vec(), None, 2)
                .await
                .unwrap()
        );
        assert_eq!(
            db.state_get(ns(), "k".into()).await.unwrap(),
            Some(b"v1".to_vec())
        );
        // Other namespaces do not see it.
        assert_eq!(
            db.state_get("adapter-b".into(), "k".into()).await.unwrap(),
            None
        );
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
        assert_eq!(db.state_get(ns(), "short".into()).await.unwrap(), None);
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
    async fn a_second_handle_on_the_same_file_sees_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airlock.db");
        let one = Database::open(&path).unwrap();
        let two = Database::open(&path).unwrap();
        one.state_set("a".into(), "k".into(), b"v".to_vec(), None, 10)
            .await
            .unwrap();
        assert_eq!(
            two.state_get("a".into(), "k".into()).await.unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(one.purge_expired(100).unwrap(), 0);
    }
}
