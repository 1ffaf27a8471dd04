//! The shared backend: a PostgreSQL database several Airlock nodes use at once.
//!
//! tokio-postgres with a deadpool pool of [`POOL_SIZE`] connections. Every time is the
//! database server's: leases, expiries and TTLs are computed and compared with
//! `clock_timestamp()` in SQL (not `now()`, which is the start of the transaction), so
//! nodes whose clocks disagree still agree on when a lease is over. Rust never computes a
//! time: it hands the server durations in milliseconds, and reads the service's times back
//! as the server's unix milliseconds (`airlock_ms`).
//!
//! Every method runs its statements in a task of its own ([`PostgresStorage::run`]), so a
//! call whose deadline drops its future never leaves a pooled connection halfway through a
//! transaction: the task finishes (commit or rollback) and returns the connection clean.
//!
//! Locks are transaction-scoped only (`pg_advisory_xact_lock`, `SELECT … FOR UPDATE`),
//! never session advisory locks: those outlive the transaction and leak when a pooler
//! (PgBouncer in transaction mode) hands the session to someone else.
//!
//! Connections are plain TCP or Unix sockets (`NoTls`); a URL asking for TLS
//! (`sslmode=require`) is refused at start by the driver.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, Object, Pool, PoolError, Runtime};
use tokio_postgres::NoTls;

use super::{
    Claim, ClaimRequest, Completion, Lease, NamespaceOwner, Owner, Purged, Scope, Storage,
    StorageError, StorageResult, redact_password,
};
use crate::error::Error;

mod service;

/// The schema this build writes. PostgreSQL storage starts at 4, not 1: its tables are
/// SQLite's version 4 (tenants, epochs, owners) in PostgreSQL types, and the two backends
/// keep one numbering from here on, so "schema version N" names the same tables whichever
/// database an operator is looking at. Version 5 (SQLite's kept key counts) changed
/// nothing here; version 6 added the service's rows.
pub(crate) const SCHEMA_VERSION: i32 = 7;

/// The migrations, in order: each brings the schema from the version before it to its own.
/// A fresh database (no `airlock_schema` table) is at version 0 and gets all of them.
const MIGRATIONS: &[(i32, &str)] = &[(4, SCHEMA_V4), (6, SCHEMA_V6), (7, SCHEMA_V7)];

/// Version 7: how many rows each namespace holds, kept by triggers (what SQLite's version
/// 5 did), so the key quota is one row read instead of a count that grows with the
/// namespace. The count includes expired rows not purged yet, so it is never below the live
/// count; only a namespace at its quota deletes its expired rows and reads it again
/// ([`QUOTA_FULL_CLEANUP`]). Row triggers: an `INSERT … ON CONFLICT DO UPDATE` that updates
/// fires no insert trigger, so overwrites are not counted.
const SCHEMA_V7: &str = r#"
CREATE TABLE state_counts (
    tenant    TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    keys      BIGINT           NOT NULL,
    PRIMARY KEY (tenant, namespace)
);
INSERT INTO state_counts SELECT tenant, namespace, COUNT(*) FROM adapter_state GROUP BY 1, 2;
CREATE FUNCTION airlock_state_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_counts (tenant, namespace, keys) VALUES (NEW.tenant, NEW.namespace, 1)
    ON CONFLICT (tenant, namespace) DO UPDATE SET keys = state_counts.keys + 1;
    RETURN NULL;
END $$;
CREATE FUNCTION airlock_state_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE state_counts SET keys = keys - 1
    WHERE tenant = OLD.tenant AND namespace = OLD.namespace;
    RETURN NULL;
END $$;
CREATE TRIGGER adapter_state_counted AFTER INSERT ON adapter_state
    FOR EACH ROW EXECUTE FUNCTION airlock_state_counted();
CREATE TRIGGER adapter_state_uncounted AFTER DELETE ON adapter_state
    FOR EACH ROW EXECUTE FUNCTION airlock_state_uncounted();
"#;

/// Version 4. Text keys use the "C" collation: they are only ever compared for equality,
/// and a B-tree over a libc collation can be silently corrupted by an OS upgrade that
/// changes the collation's order.
const SCHEMA_V4: &str = r#"
CREATE TABLE adapter_state (
    tenant     TEXT COLLATE "C" NOT NULL,
    namespace  TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      BYTEA            NOT NULL,
    expires_at TIMESTAMPTZ,                -- NULL never expires
    updated_at TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (tenant, namespace, key)
);
CREATE INDEX adapter_state_expiry ON adapter_state (expires_at) WHERE expires_at IS NOT NULL;

-- Host-owned idempotency of create: one row per (tenant, adapter, key).
CREATE TABLE idempotency (
    tenant      TEXT COLLATE "C" NOT NULL,
    adapter     TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    input_hash  TEXT             NOT NULL,  -- SHA-256 of the canonical config and params
    state       TEXT             NOT NULL CHECK (state IN ('running', 'done')),
    epoch       BIGINT           NOT NULL,  -- the fencing token of the current holder
    owner_node  TEXT,                       -- the holder of a running claim: its node,
    owner_call  TEXT,                       -- and its pid.start.call
    lease_until TIMESTAMPTZ,                -- past it without a heartbeat, abandoned
    instance_id TEXT,
    result      TEXT,                       -- the ProvisionResult, seed JSON, once done
    created_at  TIMESTAMPTZ      NOT NULL,
    expires_at  TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (tenant, adapter, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);

-- Instances a destroy succeeded for, so destroying them again succeeds without the guest.
CREATE TABLE destroyed (
    tenant       TEXT COLLATE "C" NOT NULL,
    adapter      TEXT COLLATE "C" NOT NULL,
    instance_id  TEXT COLLATE "C" NOT NULL,
    destroyed_at TIMESTAMPTZ      NOT NULL,
    expires_at   TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (tenant, adapter, instance_id)
);
CREATE INDEX destroyed_expiry ON destroyed (expires_at);

-- Which component a state namespace belongs to.
CREATE TABLE namespaces (
    tenant    TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    path      TEXT,                          -- the component's canonical path, if a file
    sha256    TEXT             NOT NULL,     -- the component's digest
    bound_at  TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (tenant, namespace)
);
"#;

/// Version 4 → 6: the service's rows ([`super::service`]), each keyed by tenant first, and
/// `airlock_ms`, which answers a time as unix milliseconds (the interface's unit).
const SCHEMA_V6: &str = r#"
CREATE FUNCTION airlock_ms(t TIMESTAMPTZ) RETURNS BIGINT
    LANGUAGE SQL STABLE STRICT PARALLEL SAFE
    AS $$ SELECT floor(extract(epoch FROM t) * 1000)::bigint $$;

CREATE TABLE tenants (
    name       TEXT COLLATE "C" PRIMARY KEY,
    key_sha256 TEXT COLLATE "C" NOT NULL UNIQUE,  -- of the API key, hex; never the key
    ceiling    TEXT,                              -- the ceiling's TOML; NULL: the default
    created_at TIMESTAMPTZ      NOT NULL,
    key_set_at TIMESTAMPTZ      NOT NULL
);

-- Immutable adapter versions; `id` is the order they were stored in.
CREATE TABLE adapter_versions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    tenant     TEXT COLLATE "C" NOT NULL,
    adapter    TEXT COLLATE "C" NOT NULL,
    version    TEXT COLLATE "C" NOT NULL,
    sha256     TEXT             NOT NULL,
    size       BIGINT           NOT NULL,   -- the component's length, bytes
    policy     TEXT             NOT NULL,
    recording  TEXT,
    admission  TEXT             NOT NULL,
    admitted   BOOLEAN          NOT NULL,
    created_at TIMESTAMPTZ      NOT NULL,
    component  BYTEA            NOT NULL,
    PRIMARY KEY (tenant, adapter, version)
);

-- The version calls run, per adapter.
CREATE TABLE active_versions (
    tenant  TEXT COLLATE "C" NOT NULL,
    adapter TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    set_at  TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (tenant, adapter)
);

-- Instances the service created, listed by (tenant, adapter, instance id).
CREATE TABLE instances (
    tenant       TEXT COLLATE "C" NOT NULL,
    adapter      TEXT COLLATE "C" NOT NULL,
    instance_id  TEXT COLLATE "C" NOT NULL,
    version      TEXT             NOT NULL,
    config       TEXT             NOT NULL,
    status       TEXT COLLATE "C",
    created_at   TIMESTAMPTZ      NOT NULL,
    destroyed_at TIMESTAMPTZ,
    PRIMARY KEY (tenant, adapter, instance_id)
);

-- Each instance's event log; `seq` orders the whole table.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL,
    adapter     TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    kind        TEXT             NOT NULL,
    data        TEXT             NOT NULL,
    at          TIMESTAMPTZ      NOT NULL
);
CREATE INDEX events_by_instance ON events (tenant, adapter, instance_id, seq);
CREATE INDEX events_by_age ON events (at);

-- Finished calls' records, kept for their window.
CREATE TABLE call_records (
    tenant     TEXT COLLATE "C" NOT NULL,
    call_id    TEXT COLLATE "C" NOT NULL,
    adapter    TEXT             NOT NULL,
    operation  TEXT             NOT NULL,
    receipt    TEXT             NOT NULL,
    logs       TEXT             NOT NULL,
    at         TIMESTAMPTZ      NOT NULL,
    expires_at TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (tenant, call_id)
);
CREATE INDEX call_records_expiry ON call_records (expires_at);
"#;

/// The transaction-scoped advisory lock that serializes migrations between nodes starting
/// at once ("airlock\0" as a number). Advisory locks are per database, so other databases
/// on the server are not affected.
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"airlock\0");

/// Connections per node. Each storage call holds one for a few round trips.
const POOL_SIZE: usize = 16;

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a free connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// Durations are capped at a thousand years: more overflows PostgreSQL's timestamps, and
/// means "never" anyway.
const MAX_MS: i64 = 1000 * 366 * 24 * 3600 * 1000;

/// How often a claim retries when its row vanishes between the insert and the read (a
/// release or purge in between); more would mean the key is fought over without end.
const CLAIM_ATTEMPTS: usize = 8;

fn ms(duration: Duration) -> i64 {
    duration.as_millis().min(MAX_MS as u128) as i64
}

/// The server's words for a failure: a database error's message, detail and hint (the
/// driver's `Display` alone says only "db error"); otherwise the driver's error and its
/// causes ("error connecting to server: Connection refused (os error 111)").
fn error_message(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut message = db.message().to_owned();
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        return message;
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(error: tokio_postgres::Error) -> StorageError {
        StorageError(error_message(&error))
    }
}

impl From<PoolError> for StorageError {
    fn from(error: PoolError) -> StorageError {
        StorageError(match error {
            PoolError::Backend(error) => error_message(&error),
            PoolError::Timeout(_) => format!(
                "no database connection free within {}s (all {POOL_SIZE} in use)",
                POOL_WAIT.as_secs()
            ),
            other => other.to_string(),
        })
    }
}

/// Run `work` to its end on a new OS thread with a runtime of its own, and wait for it.
/// Safe from any synchronous code, inside a tokio runtime or not (it never nests one
/// runtime's `block_on` in another's thread).
fn on_own_thread<R: Send + 'static, F>(
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<R, String>
where
    F: Future<Output = Result<R, String>>,
{
    std::thread::Builder::new()
        .name("airlock-postgres".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime: {e}"))?
                .block_on(work())
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?
        .join()
        .map_err(|_| "the database thread panicked".to_owned())?
}

/// Connect once with `config` (no pool) and bring the schema up to date.
async fn migrate_with(config: tokio_postgres::Config) -> Result<(), String> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(|e| error_message(&e))?;
    let connection = tokio::spawn(connection);
    let migrated = migrate(&mut client).await;
    drop(client);
    // The connection ends when the client is gone; wait so the thread leaves nothing behind.
    let _ = connection.await;
    migrated
}

/// Apply what is missing of [`MIGRATIONS`] in one transaction, under a transaction-scoped
/// advisory lock: two nodes starting at once migrate one after the other, and the second
/// finds the first's version. A schema newer than this build is refused.
async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), String> {
    let message = |e: tokio_postgres::Error| error_message(&e);
    let tx = client.transaction().await.map_err(message)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(message)?;
    // Looked up rather than `CREATE TABLE IF NOT EXISTS`: that needs the CREATE privilege
    // even when the table exists, and a node running with data rights only must start.
    let exists: bool = tx
        .query_one("SELECT to_regclass('airlock_schema') IS NOT NULL", &[])
        .await
        .map_err(message)?
        .get(0);
    let version: i32 = if exists {
        tx.query_one("SELECT COALESCE(MAX(version), 0) FROM airlock_schema", &[])
            .await
            .map_err(message)?
            .get(0)
    } else {
        0
    };
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the database's schema is version {version}, newer than this airlock's ({SCHEMA_VERSION}); a newer airlock wrote it: run that version, or point this one at another database"
        ));
    }
    if version == SCHEMA_VERSION {
        return tx.commit().await.map_err(message);
    }
    if !exists {
        tx.batch_execute("CREATE TABLE airlock_schema (version INT NOT NULL)")
            .await
            .map_err(message)?;
    }
    for (to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| format!("migrating to schema version {to}: {}", error_message(&e)))?;
    }
    tx.batch_execute(&format!(
        "DELETE FROM airlock_schema; INSERT INTO airlock_schema (version) VALUES ({SCHEMA_VERSION})"
    ))
    .await
    .map_err(message)?;
    tx.commit().await.map_err(message)
}

/// [`Storage`] and [`ServiceStore`](super::ServiceStore) on PostgreSQL.
pub(crate) struct PostgresStorage {
    pool: Pool,
    /// The URL without its password.
    database: String,
    /// How to connect, for the event listener's connection of its own.
    config: tokio_postgres::Config,
    /// Event wake-ups: this node's appends and every other node's, by LISTEN/NOTIFY.
    wakeups: tokio::sync::broadcast::Sender<super::Wakeup>,
    /// The event listener, once started; dropping this stops it.
    listener: std::sync::Mutex<Option<service::Listener>>,
}

impl PostgresStorage {
    /// Check `url`, connect once and apply migrations, then build the pool. Blocking, and
    /// safe from synchronous code inside or outside a tokio runtime: the migrations run on
    /// a thread of their own with a runtime of their own, joined before this returns, so a
    /// bad URL, a refused connection, a failed login or a schema too new is an `Err` here.
    /// The pool's connections are opened later, on the runtime of the calls that use them
    /// (a connection opened on a runtime that has since shut down is found closed when it
    /// is next taken from the pool, and replaced).
    pub(crate) fn connect_blocking(url: &str) -> Result<PostgresStorage, Error> {
        let database = redact_password(url);
        let fail = |message: String| Error::Database {
            database: database.clone(),
            message,
        };
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| fail(error_message(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("airlock");
        }
        let migrating = config.clone();
        on_own_thread(move || migrate_with(migrating)).map_err(fail)?;
        let pool = Pool::builder(Manager::new(config.clone(), NoTls))
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        Ok(PostgresStorage {
            pool,
            database,
            config,
            wakeups: tokio::sync::broadcast::channel(super::service::WAKEUP_BACKLOG).0,
            listener: std::sync::Mutex::new(None),
        })
    }

    /// Run `work` with a pooled connection in a task of its own, so that it runs to its
    /// end (its transaction committed or rolled back) even if the caller stops waiting.
    async fn run<R, F>(&self, work: impl FnOnce(Object) -> F + Send + 'static) -> StorageResult<R>
    where
        R: Send + 'static,
        F: Future<Output = StorageResult<R>> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::spawn(async move { work(pool.get().await?).await })
            .await
            .map_err(|e| StorageError(format!("database task failed: {e}")))?
    }
}

/// The scope's quota lock: a transaction-scoped advisory lock on (tenant, namespace), taken
/// by every write that may add a live key before it counts the live keys. Two nodes adding
/// keys to one namespace at once then count one after the other, so neither can pass
/// `max_keys` on a count taken before the other's insert. Chosen over `SELECT … FOR UPDATE`
/// on a per-namespace row because no such row need exist (state may be written before a
/// namespace is bound, and creating one would cost a write per call); chosen over
/// SERIALIZABLE because that would fail racing writers and make them retry. A hash
/// collision between two scopes only makes them wait for each other. Deletes and purges do
/// not take it: they only lower the count.
const QUOTA_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))";

/// Whether `key` is live, and how many rows the scope holds (live or not yet purged).
const LIVE_AND_KEPT: &str = "SELECT
    EXISTS (SELECT 1 FROM adapter_state WHERE tenant = $1 AND namespace = $2 AND key = $3
            AND (expires_at IS NULL OR expires_at > clock_timestamp())),
    COALESCE((SELECT keys FROM state_counts WHERE tenant = $1 AND namespace = $2), 0)";

/// A scope at its quota: delete its expired rows (the count follows) and read the count
/// again, which is then the live count.
const QUOTA_FULL_CLEANUP: &str = "WITH gone AS (
        DELETE FROM adapter_state WHERE tenant = $1 AND namespace = $2
        AND expires_at IS NOT NULL AND expires_at <= clock_timestamp() RETURNING 1)
    SELECT COALESCE((SELECT keys FROM state_counts WHERE tenant = $1 AND namespace = $2), 0)
        - (SELECT COUNT(*) FROM gone)";

/// Whether one more key fits in `scope`, under the quota lock (see [`LIVE_AND_KEPT`]).
async fn quota_allows(
    tx: &deadpool_postgres::Transaction<'_>,
    scope: &Scope,
    kept: i64,
    max_keys: i64,
) -> Result<bool, tokio_postgres::Error> {
    if kept < max_keys {
        return Ok(true);
    }
    let cleanup = tx.prepare_cached(QUOTA_FULL_CLEANUP).await?;
    let live: i64 = tx
        .query_one(&cleanup, &[&scope.tenant, &scope.adapter])
        .await?
        .get(0);
    Ok(live < max_keys)
}

/// Write a key, live or expired or absent.
const UPSERT_STATE: &str = "INSERT INTO adapter_state
        (tenant, namespace, key, value, expires_at, updated_at)
    VALUES ($1, $2, $3, $4, clock_timestamp() + $5::bigint * interval '1 millisecond',
            clock_timestamp())
    ON CONFLICT (tenant, namespace, key) DO UPDATE
    SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at,
        updated_at = EXCLUDED.updated_at";

/// The fast path of a claim: a new key, in one statement.
const INSERT_CLAIM: &str = "INSERT INTO idempotency (tenant, adapter, key, input_hash, state,
        epoch, owner_node, owner_call, lease_until, instance_id, result, created_at, expires_at)
    VALUES ($1, $2, $3, $4, 'running', 1, $5, $6,
            clock_timestamp() + $7::bigint * interval '1 millisecond', NULL, NULL,
            clock_timestamp(), clock_timestamp() + $8::bigint * interval '1 millisecond')
    ON CONFLICT DO NOTHING";

/// A claim's row, locked, with its times judged by the server's clock.
const SELECT_CLAIM: &str = "SELECT input_hash, state, epoch, owner_node, owner_call, result,
        lease_until IS NULL OR lease_until <= clock_timestamp(),
        expires_at <= clock_timestamp()
    FROM idempotency WHERE tenant = $1 AND adapter = $2 AND key = $3
    FOR UPDATE";

/// A key restarted afresh at a later epoch (its record expired, or it was abandoned past
/// its window).
const RESTART_CLAIM: &str = "UPDATE idempotency SET input_hash = $4, state = 'running',
        epoch = $5, owner_node = $6, owner_call = $7,
        lease_until = clock_timestamp() + $8::bigint * interval '1 millisecond',
        instance_id = NULL, result = NULL, created_at = clock_timestamp(),
        expires_at = clock_timestamp() + $9::bigint * interval '1 millisecond'
    WHERE tenant = $1 AND adapter = $2 AND key = $3";

/// A running claim taken over from a holder that stopped or died.
const TAKE_OVER_CLAIM: &str = "UPDATE idempotency SET epoch = $4, owner_node = $5,
        owner_call = $6, lease_until = clock_timestamp() + $7::bigint * interval '1 millisecond'
    WHERE tenant = $1 AND adapter = $2 AND key = $3";

/// What the slow path of a claim found.
enum Found {
    /// Nothing: released or purged since the insert; try again.
    Gone,
    /// The answer, with nothing to write.
    Answer(Claim),
    /// Restart the key at this epoch.
    Restart(i64),
    /// Take the running claim over at this epoch.
    TakeOver(i64),
}

async fn claim_on(client: &mut Object, request: &ClaimRequest) -> StorageResult<Claim> {
    let ClaimRequest {
        scope,
        key,
        input_hash,
        owner,
        lease,
        window,
        take_over,
    } = request;
    let (lease_ms, window_ms) = (ms(*lease), ms(*window));
    let call_id = owner.call_id();
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
    let pk: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&scope.tenant, &scope.adapter, key];
    for _ in 0..CLAIM_ATTEMPTS {
        let insert = client.prepare_cached(INSERT_CLAIM).await?;
        let inserted = client
            .execute(
                &insert,
                &[
                    &scope.tenant,
                    &scope.adapter,
                    key,
                    input_hash,
                    &owner.node,
                    &call_id,
                    &lease_ms,
                    &window_ms,
                ],
            )
            .await?;
        if inserted == 1 {
            return Ok(won(1, false));
        }
        let tx = client.transaction().await?;
        let select = tx.prepare_cached(SELECT_CLAIM).await?;
        let found = match tx.query_opt(&select, &pk).await? {
            None => Found::Gone,
            Some(row) => {
                let state: String = row.get(1);
                let epoch: i64 = row.get(2);
                let result: Option<String> = row.get(5);
                let (lease_over, expired): (bool, bool) = (row.get(6), row.get(7));
                if expired && (state == "done" || lease_over) {
                    // Expired and not running: the key starts afresh, at a later epoch so
                    // a holder from before cannot mistake the new claim for its own.
                    Found::Restart(epoch + 1)
                } else if row.get::<_, String>(0) != *input_hash {
                    Found::Answer(Claim::InputMismatch)
                } else if let (true, Some(result)) = (state == "done", result) {
                    Found::Answer(Claim::Done { result })
                } else if !lease_over && *take_over != Some(epoch) {
                    let (node, call): (Option<String>, Option<String>) = (row.get(3), row.get(4));
                    let holder = call
                        .as_deref()
                        .and_then(|call| Owner::from_stored(node.as_deref().unwrap_or(""), call))
                        .unwrap_or_else(|| Owner {
                            node: String::new(),
                            pid: 0,
                            started: 0,
                            call: 0,
                        });
                    Found::Answer(Claim::Busy { holder, epoch })
                } else {
                    // Abandoned (lease over) or its holder's process is gone: take it over.
                    Found::TakeOver(epoch + 1)
                }
            }
        };
        let claim = match found {
            Found::Gone => {
                tx.rollback().await?;
                continue;
            }
            Found::Answer(claim) => claim,
            Found::Restart(epoch) => {
                let restart = tx.prepare_cached(RESTART_CLAIM).await?;
                tx.execute(
                    &restart,
                    &[
                        &scope.tenant,
                        &scope.adapter,
                        key,
                        input_hash,
                        &epoch,
                        &owner.node,
                        &call_id,
                        &lease_ms,
                        &window_ms,
                    ],
                )
                .await?;
                won(epoch, false)
            }
            Found::TakeOver(epoch) => {
                let take = tx.prepare_cached(TAKE_OVER_CLAIM).await?;
                tx.execute(
                    &take,
                    &[
                        &scope.tenant,
                        &scope.adapter,
                        key,
                        &epoch,
                        &owner.node,
                        &call_id,
                        &lease_ms,
                    ],
                )
                .await?;
                won(epoch, true)
            }
        };
        tx.commit().await?;
        return Ok(claim);
    }
    Err(StorageError(format!(
        "claiming key {key:?}: its row kept vanishing ({CLAIM_ATTEMPTS} attempts)"
    )))
}

#[async_trait::async_trait]
impl Storage for PostgresStorage {
    fn describe(&self) -> String {
        self.database.clone()
    }

    async fn state_get(&self, scope: &Scope, key: &str) -> StorageResult<Option<Vec<u8>>> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.run(move |client| async move {
            let select = client
                .prepare_cached(
                    "SELECT value FROM adapter_state WHERE tenant = $1 AND namespace = $2
                     AND key = $3 AND (expires_at IS NULL OR expires_at > clock_timestamp())",
                )
                .await?;
            let row = client
                .query_opt(&select, &[&scope.tenant, &scope.adapter, &key])
                .await?;
            Ok(row.map(|row| row.get(0)))
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
        let (ttl_ms, max_keys) = (ttl.map(ms), i64::try_from(max_keys).unwrap_or(i64::MAX));
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(QUOTA_LOCK, &[&scope.tenant, &scope.adapter])
                .await?;
            let live = tx.prepare_cached(LIVE_AND_KEPT).await?;
            let row = tx
                .query_one(&live, &[&scope.tenant, &scope.adapter, &key])
                .await?;
            let (is_live, kept): (bool, i64) = (row.get(0), row.get(1));
            // Overwriting a live key adds none; an expired one written again is a new key.
            if !is_live && !quota_allows(&tx, &scope, kept, max_keys).await? {
                // The expired rows the check deleted stay deleted.
                tx.commit().await?;
                return Ok(false);
            }
            let upsert = tx.prepare_cached(UPSERT_STATE).await?;
            tx.execute(
                &upsert,
                &[&scope.tenant, &scope.adapter, &key, &value, &ttl_ms],
            )
            .await?;
            tx.commit().await?;
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
        let (ttl_ms, max_keys) = (ttl.map(ms), i64::try_from(max_keys).unwrap_or(i64::MAX));
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(QUOTA_LOCK, &[&scope.tenant, &scope.adapter])
                .await?;
            let live = tx.prepare_cached(LIVE_AND_KEPT).await?;
            let row = tx
                .query_one(&live, &[&scope.tenant, &scope.adapter, &key])
                .await?;
            let (is_live, kept): (bool, i64) = (row.get(0), row.get(1));
            if is_live {
                return Ok(Some(false));
            }
            if !quota_allows(&tx, &scope, kept, max_keys).await? {
                tx.commit().await?;
                return Ok(None);
            }
            let upsert = tx.prepare_cached(UPSERT_STATE).await?;
            tx.execute(
                &upsert,
                &[&scope.tenant, &scope.adapter, &key, &value, &ttl_ms],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(true))
        })
        .await
    }

    async fn state_delete(&self, scope: &Scope, key: &str) -> StorageResult<bool> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.run(move |client| async move {
            // An expired row is gone for the guest already; it is removed quietly too.
            let delete = client
                .prepare_cached(
                    "DELETE FROM adapter_state WHERE tenant = $1 AND namespace = $2 AND key = $3
                     RETURNING expires_at IS NULL OR expires_at > clock_timestamp()",
                )
                .await?;
            let row = client
                .query_opt(&delete, &[&scope.tenant, &scope.adapter, &key])
                .await?;
            Ok(row.is_some_and(|row| row.get(0)))
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
        self.run(move |mut client| async move {
            // The row is locked while the verdict is made. An unbound namespace has no row
            // to lock: the first binder's insert wins, and a binder that lost the race
            // reads again and judges against the winner.
            for _ in 0..CLAIM_ATTEMPTS {
                let tx = client.transaction().await?;
                let owner = tx
                    .query_opt(
                        "SELECT path, sha256 FROM namespaces WHERE tenant = $1 AND namespace = $2
                         FOR UPDATE",
                        &[&scope.tenant, &scope.adapter],
                    )
                    .await?
                    .map(|row| NamespaceOwner {
                        path: row.get(0),
                        sha256: row.get(1),
                    });
                let bound = owner.is_some();
                let verdict =
                    match super::namespace_verdict(owner, path.as_deref(), &sha256, rebind) {
                        super::Binding::Keep => Ok(()),
                        super::Binding::Refuse(owner) => Err(owner),
                        super::Binding::Write => {
                            let written = tx
                            .execute(
                                "INSERT INTO namespaces (tenant, namespace, path, sha256, bound_at)
                                     VALUES ($1, $2, $3, $4, clock_timestamp())
                                     ON CONFLICT (tenant, namespace) DO UPDATE
                                     SET path = EXCLUDED.path, sha256 = EXCLUDED.sha256,
                                         bound_at = EXCLUDED.bound_at
                                     WHERE $5",
                                &[&scope.tenant, &scope.adapter, &path, &sha256, &bound],
                            )
                            .await?;
                            if written == 0 {
                                tx.rollback().await?;
                                continue;
                            }
                            Ok(())
                        }
                    };
                tx.commit().await?;
                return Ok(verdict);
            }
            Err(StorageError(format!(
                "binding namespace {:?}: it kept changing ({CLAIM_ATTEMPTS} attempts)",
                scope.adapter
            )))
        })
        .await
    }

    async fn claim(&self, request: &ClaimRequest) -> StorageResult<Claim> {
        let request = request.clone();
        self.run(move |mut client| async move { claim_on(&mut client, &request).await })
            .await
    }

    async fn renew(&self, lease: &Lease) -> StorageResult<bool> {
        let lease = lease.clone();
        self.run(move |client| async move {
            let renew = client
                .prepare_cached(
                    "UPDATE idempotency
                     SET lease_until = clock_timestamp() + $6::bigint * interval '1 millisecond'
                     WHERE tenant = $1 AND adapter = $2 AND key = $3 AND epoch = $4
                     AND owner_call = $5 AND state = 'running'",
                )
                .await?;
            let updated = client
                .execute(
                    &renew,
                    &[
                        &lease.scope.tenant,
                        &lease.scope.adapter,
                        &lease.key,
                        &lease.epoch,
                        &lease.owner.call_id(),
                        &ms(lease.length),
                    ],
                )
                .await?;
            Ok(updated == 1)
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
        self.run(move |client| async move {
            let complete = client
                .prepare_cached(
                    "UPDATE idempotency SET state = 'done', owner_node = NULL, owner_call = NULL,
                         lease_until = NULL, instance_id = $6, result = $7,
                         expires_at = clock_timestamp() + $8::bigint * interval '1 millisecond'
                     WHERE tenant = $1 AND adapter = $2 AND key = $3 AND epoch = $4
                     AND owner_call = $5 AND state = 'running'",
                )
                .await?;
            let written = client
                .execute(
                    &complete,
                    &[
                        &lease.scope.tenant,
                        &lease.scope.adapter,
                        &lease.key,
                        &lease.epoch,
                        &lease.owner.call_id(),
                        &instance_id,
                        &result,
                        &ms(lease.window),
                    ],
                )
                .await?;
            if written == 1 {
                return Ok(Completion::Recorded);
            }
            let recorded = client
                .query_opt(
                    "SELECT result FROM idempotency WHERE tenant = $1 AND adapter = $2
                     AND key = $3 AND state = 'done'",
                    &[&lease.scope.tenant, &lease.scope.adapter, &lease.key],
                )
                .await?
                .and_then(|row| row.get::<_, Option<String>>(0));
            Ok(Completion::Fenced { recorded })
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> StorageResult<()> {
        let lease = lease.clone();
        self.run(move |client| async move {
            client
                .execute(
                    "DELETE FROM idempotency WHERE tenant = $1 AND adapter = $2 AND key = $3
                     AND epoch = $4 AND owner_call = $5 AND state = 'running'",
                    &[
                        &lease.scope.tenant,
                        &lease.scope.adapter,
                        &lease.key,
                        &lease.epoch,
                        &lease.owner.call_id(),
                    ],
                )
                .await?;
            Ok(())
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
        self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO destroyed (tenant, adapter, instance_id, destroyed_at, expires_at)
                     VALUES ($1, $2, $3, clock_timestamp(),
                             clock_timestamp() + $4::bigint * interval '1 millisecond')
                     ON CONFLICT (tenant, adapter, instance_id) DO UPDATE
                     SET destroyed_at = EXCLUDED.destroyed_at, expires_at = EXCLUDED.expires_at",
                    &[&scope.tenant, &scope.adapter, &instance_id, &ms(window)],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn is_destroyed(&self, scope: &Scope, instance_id: &str) -> StorageResult<bool> {
        let (scope, instance_id) = (scope.clone(), instance_id.to_owned());
        self.run(move |client| async move {
            let select = client
                .prepare_cached(
                    "SELECT 1 FROM destroyed WHERE tenant = $1 AND adapter = $2
                     AND instance_id = $3 AND expires_at > clock_timestamp()",
                )
                .await?;
            let row = client
                .query_opt(&select, &[&scope.tenant, &scope.adapter, &instance_id])
                .await?;
            Ok(row.is_some())
        })
        .await
    }

    async fn purge_expired(&self, batch: u32) -> StorageResult<Purged> {
        let batch = i64::from(batch);
        self.run(move |client| async move {
            let mut removed = [0usize; 3];
            let tables = [
                (
                    "adapter_state",
                    "expires_at IS NOT NULL AND expires_at <= clock_timestamp()",
                ),
                // A running claim is kept until its lease is over, whatever its expiry.
                (
                    "idempotency",
                    "expires_at <= clock_timestamp() AND (state = 'done'
                     OR lease_until IS NULL OR lease_until <= clock_timestamp())",
                ),
                ("destroyed", "expires_at <= clock_timestamp()"),
            ];
            for (slot, (table, expired)) in removed.iter_mut().zip(tables) {
                let statement = client.prepare_cached(&purge_batch(table, expired)).await?;
                *slot = client.execute(&statement, &[&batch]).await? as usize;
            }
            let [state, keys, destroyed] = removed;
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
        self.run(move |client| async move {
            let keys = client
                .execute(
                    "DELETE FROM idempotency WHERE tenant = $1 AND adapter = $2 AND state = 'done'",
                    &[&scope.tenant, &scope.adapter],
                )
                .await?;
            let destroyed = client
                .execute(
                    "DELETE FROM destroyed WHERE tenant = $1 AND adapter = $2",
                    &[&scope.tenant, &scope.adapter],
                )
                .await?;
            Ok(keys + destroyed)
        })
        .await
    }

    async fn idempotency_rows(&self) -> StorageResult<u64> {
        self.run(|client| async move {
            let count: i64 = client
                .query_one("SELECT COUNT(*) FROM idempotency", &[])
                .await?
                .get(0);
            Ok(count as u64)
        })
        .await
    }
}

/// A statement deleting at most `$1` rows of `table` that are `expired`, in one short
/// transaction of its own. The batch is picked by ctid with SKIP LOCKED, so nodes purging
/// at once take different rows and none waits on a row a call holds; the condition is
/// checked again on the row as it is when deleted, so a row written anew in between is
/// kept.
fn purge_batch(table: &str, expired: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM {table} WHERE {expired} LIMIT $1 FOR UPDATE SKIP LOCKED))
         AND {expired}"
    )
}

/// The PostgreSQL server the tests use, from `AIRLOCK_TEST_POSTGRES_URL` (a database on it
/// to connect to for `CREATE DATABASE`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
/// Unset: under `CI=true` the test fails, since CI provides a server and a skip there would
/// pass what was not run; elsewhere it prints one line saying what is skipped and why, and
/// the test returns. The same rule as the integration tests' `present_or_skip`.
#[cfg(test)]
pub(crate) fn test_url(test: &str) -> Option<String> {
    const VAR: &str = "AIRLOCK_TEST_POSTGRES_URL";
    if let Some(url) = std::env::var(VAR).ok().filter(|url| !url.is_empty()) {
        return Some(url);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{VAR} is not set, and CI=true: CI must provide a PostgreSQL server ({test} would be skipped)"
        );
    }
    eprintln!(
        "SKIPPED {test}: {VAR} is not set (a PostgreSQL server is needed; .ci/run provides one)"
    );
    None
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;

    /// A database of its own on the test server, created for one test and dropped after
    /// it, so tests (and runs) never see each other's rows or schema.
    struct TestDatabase {
        admin: String,
        name: String,
        url: String,
    }

    impl TestDatabase {
        fn create(admin: &str) -> TestDatabase {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "airlock_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            sql(
                admin,
                &[
                    format!("DROP DATABASE IF EXISTS {name}"),
                    format!("CREATE DATABASE {name}"),
                ],
            );
            TestDatabase {
                admin: admin.to_owned(),
                url: with_database(admin, &name),
                name,
            }
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            // FORCE: the pools of the storages under test may still hold connections.
            sql(
                &self.admin,
                &[format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )],
            );
        }
    }

    /// `url` pointing at database `name` instead.
    fn with_database(url: &str, name: &str) -> String {
        let (base, query) = url
            .split_once('?')
            .map_or((url, None), |(b, q)| (b, Some(q)));
        let authority = base.find("://").map_or(0, |i| i + 3);
        let base = match base[authority..].find('/') {
            Some(slash) => &base[..authority + slash],
            None => base,
        };
        match query {
            Some(query) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        }
    }

    /// Run `statements` on `url`, each on its own (`CREATE DATABASE` cannot run in the
    /// implicit transaction of several), from any thread (tests' `Drop` runs inside a
    /// runtime).
    fn sql(url: &str, statements: &[String]) {
        let (url, statements) = (url.to_owned(), statements.to_vec());
        on_own_thread(move || async move {
            let (client, connection) = tokio_postgres::connect(&url, NoTls)
                .await
                .map_err(|e| error_message(&e))?;
            let connection = tokio::spawn(connection);
            let mut done = Ok(());
            for statement in &statements {
                done = client
                    .batch_execute(statement)
                    .await
                    .map_err(|e| error_message(&e));
                if done.is_err() {
                    break;
                }
            }
            drop(client);
            let _ = connection.await;
            done
        })
        .unwrap();
    }

    /// Move every time in the database `by` into the past, as if that much time went by.
    async fn age_postgres(pool: Pool, by: Duration) {
        let ago = format!("interval '{} milliseconds'", ms(by));
        pool.get()
            .await
            .unwrap()
            .batch_execute(&format!(
                "UPDATE adapter_state SET expires_at = expires_at - {ago}, updated_at = updated_at - {ago};
                 UPDATE idempotency SET expires_at = expires_at - {ago}, lease_until = lease_until - {ago},
                     created_at = created_at - {ago};
                 UPDATE destroyed SET expires_at = expires_at - {ago}, destroyed_at = destroyed_at - {ago};
                 UPDATE namespaces SET bound_at = bound_at - {ago};
                 UPDATE tenants SET created_at = created_at - {ago}, key_set_at = key_set_at - {ago};
                 UPDATE adapter_versions SET created_at = created_at - {ago};
                 UPDATE active_versions SET set_at = set_at - {ago};
                 UPDATE instances SET created_at = created_at - {ago},
                     destroyed_at = destroyed_at - {ago};
                 UPDATE events SET at = at - {ago};
                 UPDATE call_records SET at = at - {ago}, expires_at = expires_at - {ago};"
            ))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_shared_suite_passes_on_postgres() {
        let Some(admin) = test_url("the_shared_suite_passes_on_postgres") else {
            return;
        };
        let db = TestDatabase::create(&admin);
        // Two handles, as two nodes; connected from inside a runtime, as `Runtime::new` is.
        let one = PostgresStorage::connect_blocking(&db.url).unwrap();
        let two = PostgresStorage::connect_blocking(&db.url).unwrap();
        let pool = one.pool.clone();
        super::super::suite::run(&one, &two, &move |age| {
            Box::pin(age_postgres(pool.clone(), age))
        })
        .await;
    }

    #[tokio::test]
    async fn the_service_suite_passes_on_postgres() {
        let Some(admin) = test_url("the_service_suite_passes_on_postgres") else {
            return;
        };
        let db = TestDatabase::create(&admin);
        let one = PostgresStorage::connect_blocking(&db.url).unwrap();
        let two = PostgresStorage::connect_blocking(&db.url).unwrap();
        let pool = one.pool.clone();
        super::super::service_suite::run(&one, &two, &one.describe(), &move |age| {
            Box::pin(age_postgres(pool.clone(), age))
        })
        .await;
    }

    /// How many connections to `url`'s database sit listening for event wake-ups.
    async fn listeners(url: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let count = client
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query = 'LISTEN airlock_events'
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        drop(client);
        let _ = connection.await;
        count
    }

    #[tokio::test]
    async fn the_event_listener_reconnects_and_stops_with_its_storage() {
        use crate::storage::service::{ServiceStore, Wakeup};
        use crate::storage::service_suite::next_wakeup;
        let Some(admin) = test_url("the_event_listener_reconnects_and_stops_with_its_storage")
        else {
            return;
        };
        let db = TestDatabase::create(&admin);
        let storage = PostgresStorage::connect_blocking(&db.url).unwrap();
        // Nothing listens until wake-ups are asked for; then one connection does, and says
        // so once it listens.
        assert_eq!(listeners(&db.url).await, 0);
        let mut wakeups = storage.event_wakeups();
        assert_eq!(next_wakeup(&mut wakeups).await, Wakeup::Missed);
        let _second = storage.event_wakeups();
        assert_eq!(listeners(&db.url).await, 1);
        // The server drops the listener's connection: it connects again, says that
        // wake-ups were missed, and hears appends again.
        sql(
            &db.url,
            &["SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE datname = current_database() AND query = 'LISTEN airlock_events'"
                .into()],
        );
        assert_eq!(next_wakeup(&mut wakeups).await, Wakeup::Missed);
        storage
            .event_append("t", "a", "i-1", "log", "{}")
            .await
            .unwrap();
        assert_eq!(
            next_wakeup(&mut wakeups).await,
            Wakeup::Appended {
                tenant: "t".into(),
                adapter: "a".into(),
                instance_id: "i-1".into()
            }
        );
        // Dropping the storage stops the listener and closes its connection.
        drop(storage);
        assert!(matches!(
            tokio::time::timeout(Duration::from_secs(5), wakeups.recv()).await,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed))
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while listeners(&db.url).await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener's connection stayed open"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn nodes_starting_at_once_migrate_once() {
        let Some(admin) = test_url("nodes_starting_at_once_migrate_once") else {
            return;
        };
        let db = TestDatabase::create(&admin);
        let nodes = 4;
        let start = Arc::new(Barrier::new(nodes));
        let started: Vec<_> = (0..nodes)
            .map(|_| {
                let (url, start) = (db.url.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    PostgresStorage::connect_blocking(&url).map(|_| ())
                })
            })
            .collect();
        for node in started {
            node.join().unwrap().unwrap();
        }
        let check = db.url.clone();
        let versions = on_own_thread(move || async move {
            let (client, connection) = tokio_postgres::connect(&check, NoTls)
                .await
                .map_err(|e| error_message(&e))?;
            tokio::spawn(connection);
            let rows = client
                .query("SELECT version FROM airlock_schema", &[])
                .await
                .map_err(|e| error_message(&e))?;
            Ok(rows.iter().map(|row| row.get(0)).collect::<Vec<i32>>())
        })
        .unwrap();
        assert_eq!(versions, vec![SCHEMA_VERSION]);
    }

    #[test]
    fn a_schema_newer_than_this_build_is_refused() {
        let Some(admin) = test_url("a_schema_newer_than_this_build_is_refused") else {
            return;
        };
        let db = TestDatabase::create(&admin);
        PostgresStorage::connect_blocking(&db.url).unwrap();
        sql(&db.url, &["UPDATE airlock_schema SET version = 99".into()]);
        let error = PostgresStorage::connect_blocking(&db.url)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            error,
            format!(
                "state database {}: the database's schema is version 99, newer than this airlock's (7); a newer airlock wrote it: run that version, or point this one at another database",
                db.url
            )
        );
    }

    #[test]
    fn a_server_that_is_not_there_is_reported_at_start_without_the_password() {
        // Port 1 on the loopback: nothing listens there, so this needs no server.
        let error = PostgresStorage::connect_blocking("postgres://airlock:s3cret@127.0.0.1:1/db")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with(
                "state database postgres://airlock:***@127.0.0.1:1/db: error connecting to server: "
            ),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        let error = PostgresStorage::connect_blocking("postgres://h/db?port=notaport")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with(
                "state database postgres://h/db?port=notaport: invalid connection string"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_failed_login_is_reported_at_start_in_the_servers_words() {
        let Some(admin) = test_url("a_failed_login_is_reported_at_start_in_the_servers_words")
        else {
            return;
        };
        let url = with_database(&admin, "airlock_no_such_database");
        let error = PostgresStorage::connect_blocking(&url)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            error,
            format!(
                "state database {}: database \"airlock_no_such_database\" does not exist",
                redact_password(&url)
            )
        );
    }

    #[test]
    fn urls_point_at_another_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
