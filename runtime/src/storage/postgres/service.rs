//! [`ServiceStore`] on PostgreSQL: the service's rows (schema version 6,
//! [`super::SCHEMA_V6`]), shared by every node.
//!
//! Event wake-ups cross nodes by LISTEN/NOTIFY: an append notifies [`EVENTS_CHANNEL`] in
//! its own statement (delivered at its commit), and each node's [`Listener`], a task with
//! a connection of its own, forwards what it hears to the node's broadcast channel. The
//! listener starts on the first [`ServiceStore::event_wakeups`], so a node that never
//! streams events never opens the connection; it stops when the storage is dropped.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Object;
use tokio::sync::{broadcast, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{PostgresStorage, error_message, ms, purge_batch};
use crate::storage::service::{
    ActiveVersion, AdapterEntry, CallRecord, Event, FinishedCall, InstanceFilter, InstanceRecord,
    NewVersion, PutVersion, ServiceStore, Tenant, VersionInfo, Wakeup, group_adapters, page,
    wakeup_from_json,
};
use crate::storage::{StorageError, StorageResult};

/// The channel event appends notify (spelled out in [`APPEND_EVENT`] too), with
/// `["tenant","adapter","instance id"]`.
const EVENTS_CHANNEL: &str = "airlock_events";

/// The listener's first wait before connecting again; it doubles up to [`RELISTEN_MAX`].
const RELISTEN_MIN: Duration = Duration::from_millis(100);

/// The listener's longest wait before connecting again.
const RELISTEN_MAX: Duration = Duration::from_secs(10);

/// How long the listener's idle connection goes before TCP probes it: a connection to a
/// server that vanished (no reset ever comes) is found dead within about a minute, not the
/// two hours of the OS default, and the listener connects again.
const LISTEN_KEEPALIVE: Duration = Duration::from_secs(30);

/// A tenant's columns, as [`tenant_row`] reads them.
const TENANT_COLUMNS: &str =
    "name, ceiling, airlock_ms(created_at), airlock_ms(key_set_at), key_sha256";

/// A version's columns without its component, as [`version_row`] reads them.
const VERSION_COLUMNS: &str = "adapter, version, sha256, size, policy, recording IS NOT NULL,
    admission, admitted, airlock_ms(created_at)";

/// An instance's columns, as [`instance_row`] reads them.
const INSTANCE_COLUMNS: &str = "tenant, adapter, instance_id, version, config, status,
    airlock_ms(created_at), airlock_ms(destroyed_at)";

/// A call record's columns, as [`call_row`] reads them.
const CALL_COLUMNS: &str = "call_id, tenant, adapter, operation, receipt, logs, airlock_ms(at)";

/// Append an event and notify its instance in one statement. The instance's advisory lock
/// ($6's hash: a transaction-scoped lock, in the 64-bit key space, apart from the quota
/// lock's pairs) is taken before the sequence number is drawn and held until the commit,
/// so an instance's numbers become visible in order: a reader resuming after the last one
/// it saw cannot miss a smaller one committed later. The lock is per instance because
/// readers read per instance; appends to other instances do not wait.
const APPEND_EVENT: &str = "WITH locked AS (SELECT pg_advisory_xact_lock(hashtextextended($6, 0))),
     appended AS (
        INSERT INTO events (tenant, adapter, instance_id, kind, data, at)
        SELECT $1, $2, $3, $4, $5, clock_timestamp() FROM locked
        RETURNING seq)
    SELECT seq, pg_notify('airlock_events', $6) FROM appended";

/// Take the advisory locks of every stream a batch appends to (the payloads in $1, the
/// same keys as [`APPEND_EVENT`]'s), in the order of their keys, so two batches (or a batch
/// and an append) never wait for each other in a cycle.
const LOCK_STREAMS: &str = "SELECT pg_advisory_xact_lock(key) FROM (
        SELECT DISTINCT hashtextextended(payload, 0) AS key FROM unnest($1::text[]) AS payload
    ) AS streams ORDER BY key";

/// An event of a batch whose stream's lock is held already.
const INSERT_EVENT: &str = "INSERT INTO events (tenant, adapter, instance_id, kind, data, at)
    VALUES ($1, $2, $3, $4, $5, clock_timestamp())";

/// Upsert a call's record.
const PUT_CALL: &str = "INSERT INTO call_records (tenant, call_id, adapter, operation, receipt,
        logs, at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(),
            clock_timestamp() + $7::bigint * interval '1 millisecond')
    ON CONFLICT (tenant, call_id) DO UPDATE
    SET adapter = EXCLUDED.adapter, operation = EXCLUDED.operation,
        receipt = EXCLUDED.receipt, logs = EXCLUDED.logs, at = EXCLUDED.at,
        expires_at = EXCLUDED.expires_at";

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

fn tenant_row(row: &Row) -> (Tenant, String) {
    (
        Tenant {
            name: row.get(0),
            ceiling: row.get(1),
            created_ms: row.get(2),
            key_set_ms: row.get(3),
        },
        row.get(4),
    )
}

fn version_row(row: &Row) -> VersionInfo {
    VersionInfo {
        adapter: row.get(0),
        version: row.get(1),
        sha256: row.get(2),
        size: row.get::<_, i64>(3) as u64,
        policy: row.get(4),
        has_recording: row.get(5),
        admission: row.get(6),
        admitted: row.get(7),
        created_ms: row.get(8),
    }
}

fn instance_row(row: &Row) -> InstanceRecord {
    InstanceRecord {
        tenant: row.get(0),
        adapter: row.get(1),
        instance_id: row.get(2),
        version: row.get(3),
        config: row.get(4),
        status: row.get(5),
        created_ms: row.get(6),
        destroyed_ms: row.get(7),
    }
}

fn call_row(row: &Row) -> CallRecord {
    CallRecord {
        call_id: row.get(0),
        tenant: row.get(1),
        adapter: row.get(2),
        operation: row.get(3),
        receipt: row.get(4),
        logs: row.get(5),
        at_ms: row.get(6),
    }
}

fn event_row(row: &Row) -> Event {
    Event {
        seq: row.get(0),
        kind: row.get(1),
        data: row.get(2),
        at_ms: row.get(3),
    }
}

/// Every row `sql` selects (a prepared statement cached on the connection).
async fn rows(client: &Object, sql: &str, params: Params<'_>) -> StorageResult<Vec<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

/// The one row `sql` selects, if any.
async fn row(client: &Object, sql: &str, params: Params<'_>) -> StorageResult<Option<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&statement, params).await?)
}

/// How many rows `sql` changed.
async fn execute(client: &Object, sql: &str, params: Params<'_>) -> StorageResult<u64> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

/// The tenants `condition` selects, by name.
async fn tenants_where(
    client: &Object,
    condition: &str,
    params: Params<'_>,
) -> StorageResult<Vec<(Tenant, String)>> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE {condition} ORDER BY name");
    Ok(rows(client, &sql, params)
        .await?
        .iter()
        .map(tenant_row)
        .collect())
}

/// `tenant`'s adapters (`Some(adapter)`: that one only) with their versions.
async fn adapters_of(
    client: &Object,
    tenant: &str,
    adapter: Option<&str>,
) -> StorageResult<Vec<AdapterEntry>> {
    let versions = rows(
        client,
        &format!(
            "SELECT {VERSION_COLUMNS} FROM adapter_versions
             WHERE tenant = $1 AND ($2::text IS NULL OR adapter = $2) ORDER BY adapter, id"
        ),
        &[&tenant, &adapter],
    )
    .await?;
    let active: HashMap<String, String> = rows(
        client,
        "SELECT adapter, version FROM active_versions
         WHERE tenant = $1 AND ($2::text IS NULL OR adapter = $2)",
        &[&tenant, &adapter],
    )
    .await?
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect();
    Ok(group_adapters(
        versions.iter().map(version_row).collect(),
        &active,
    ))
}

/// A running event listener: dropping it stops the task (and closes its connection).
pub(super) struct Listener {
    _stop: oneshot::Sender<()>,
    /// Resolves once the task has ended, whichever way.
    ended: oneshot::Receiver<()>,
}

impl Listener {
    /// Start the listener on the current tokio runtime; `None` outside one.
    fn start(storage: &PostgresStorage) -> Option<Listener> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (stop_tx, stop) = oneshot::channel();
        let (ended_tx, ended) = oneshot::channel();
        let mut config = storage.config.clone();
        config
            .keepalives(true)
            .keepalives_idle(LISTEN_KEEPALIVE)
            .keepalives_interval(LISTEN_KEEPALIVE / 3)
            .keepalives_retries(3);
        let (wakeups, database) = (storage.wakeups.clone(), storage.database.clone());
        runtime.spawn(async move {
            listen(config, wakeups, database, stop).await;
            let _ = ended_tx.send(());
        });
        Some(Listener {
            _stop: stop_tx,
            ended,
        })
    }

    /// Whether the task has ended (its runtime shut down): a new one must be started.
    fn has_ended(&mut self) -> bool {
        !matches!(
            self.ended.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        )
    }
}

/// Listen until `stop` fires (or its sender, the storage's [`Listener`], is dropped),
/// connecting again with backoff whenever the connection fails.
async fn listen(
    config: tokio_postgres::Config,
    wakeups: broadcast::Sender<Wakeup>,
    database: String,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = RELISTEN_MIN;
    loop {
        let (listened, error) = tokio::select! {
            _ = &mut stop => return,
            lost = listen_once(&config, &wakeups) => lost,
        };
        if listened {
            backoff = RELISTEN_MIN;
        }
        tracing::warn!(
            target: "airlock::storage",
            %database,
            %error,
            "the event listener lost its connection; connecting again in {} ms",
            backoff.as_millis()
        );
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RELISTEN_MAX);
    }
}

/// Connect, `LISTEN`, and forward notifications until the connection fails: whether it
/// got as far as listening, and why it ended. Once listening it sends [`Wakeup::Missed`]:
/// appends committed before (at start, or while disconnected) were not heard.
async fn listen_once(
    config: &tokio_postgres::Config,
    wakeups: &broadcast::Sender<Wakeup>,
) -> (bool, String) {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(error) => return (false, error_message(&error)),
    };
    let statement = format!("LISTEN {EVENTS_CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        // The connection is polled here rather than spawned: its messages are the
        // notifications, and polling it also carries the LISTEN's round trip.
        tokio::select! {
            done = &mut listen, if !listening => match done {
                Ok(()) => {
                    listening = true;
                    let _ = wakeups.send(Wakeup::Missed);
                }
                Err(error) => return (false, error_message(&error)),
            },
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(note))) if note.channel() == EVENTS_CHANNEL => {
                    match wakeup_from_json(note.payload()) {
                        Some(wakeup) => { let _ = wakeups.send(wakeup); }
                        None => tracing::warn!(
                            target: "airlock::storage",
                            payload = note.payload(),
                            "ignored a malformed event notification"
                        ),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return (listening, error_message(&error)),
                None => return (listening, "the server closed the connection".into()),
            },
        }
    }
}

impl PostgresStorage {
    /// Run `work` as [`PostgresStorage::run`] does, a failure naming this database.
    async fn run_named<R, F>(
        &self,
        work: impl FnOnce(Object) -> F + Send + 'static,
    ) -> StorageResult<R>
    where
        R: Send + 'static,
        F: std::future::Future<Output = StorageResult<R>> + Send + 'static,
    {
        self.run(work)
            .await
            .map_err(|e| StorageError(format!("{}: {}", self.database, e.0)))
    }
}

#[async_trait::async_trait]
impl ServiceStore for PostgresStorage {
    async fn tenant_create(
        &self,
        name: &str,
        key_sha256: &str,
        ceiling: Option<&str>,
    ) -> StorageResult<bool> {
        let (name, key, ceiling) = (
            name.to_owned(),
            key_sha256.to_owned(),
            ceiling.map(str::to_owned),
        );
        self.run_named(move |client| async move {
            let created = execute(
                &client,
                "INSERT INTO tenants (name, key_sha256, ceiling, created_at, key_set_at)
                 VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &key, &ceiling],
            )
            .await?;
            Ok(created == 1)
        })
        .await
    }

    async fn tenant(&self, name: &str) -> StorageResult<Option<Tenant>> {
        let name = name.to_owned();
        self.run_named(move |client| async move {
            let mut found = tenants_where(&client, "name = $1", &[&name]).await?;
            Ok(found.pop().map(|(tenant, _)| tenant))
        })
        .await
    }

    async fn tenants(&self) -> StorageResult<Vec<Tenant>> {
        self.run_named(|client| async move {
            let all = tenants_where(&client, "true", &[]).await?;
            Ok(all.into_iter().map(|(tenant, _)| tenant).collect())
        })
        .await
    }

    async fn tenant_by_key(&self, key_sha256: &str) -> StorageResult<Option<(Tenant, String)>> {
        let key = key_sha256.to_owned();
        self.run_named(move |client| async move {
            Ok(tenants_where(&client, "key_sha256 = $1", &[&key])
                .await?
                .pop())
        })
        .await
    }

    async fn tenant_set_key(&self, name: &str, key_sha256: &str) -> StorageResult<bool> {
        let (name, key) = (name.to_owned(), key_sha256.to_owned());
        self.run_named(move |client| async move {
            let updated = execute(
                &client,
                "UPDATE tenants SET key_sha256 = $2, key_set_at = clock_timestamp()
                 WHERE name = $1",
                &[&name, &key],
            )
            .await?;
            Ok(updated == 1)
        })
        .await
    }

    async fn tenant_set_ceiling(&self, name: &str, ceiling: Option<&str>) -> StorageResult<bool> {
        let (name, ceiling) = (name.to_owned(), ceiling.map(str::to_owned));
        self.run_named(move |client| async move {
            let updated = execute(
                &client,
                "UPDATE tenants SET ceiling = $2 WHERE name = $1",
                &[&name, &ceiling],
            )
            .await?;
            Ok(updated == 1)
        })
        .await
    }

    async fn version_put(&self, version: &NewVersion) -> StorageResult<PutVersion> {
        let v = version.clone();
        self.run_named(move |client| async move {
            let inserted = execute(
                &client,
                "INSERT INTO adapter_versions (tenant, adapter, version, sha256, size, policy,
                     recording, admission, admitted, created_at, component)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp(), $10)
                 ON CONFLICT (tenant, adapter, version) DO NOTHING",
                &[
                    &v.tenant,
                    &v.adapter,
                    &v.version,
                    &v.sha256,
                    &(v.component.len() as i64),
                    &v.policy,
                    &v.recording,
                    &v.admission,
                    &v.admitted,
                    &v.component,
                ],
            )
            .await?;
            if inserted == 1 {
                return Ok(PutVersion::Created);
            }
            // Versions are never changed or deleted: the row in the insert's way is there.
            let stored: String = rows(
                &client,
                "SELECT sha256 FROM adapter_versions
                 WHERE tenant = $1 AND adapter = $2 AND version = $3",
                &[&v.tenant, &v.adapter, &v.version],
            )
            .await?
            .first()
            .map(|row| row.get(0))
            .ok_or_else(|| StorageError("a version vanished while it was stored".into()))?;
            Ok(PutVersion::against(stored, &v.sha256))
        })
        .await
    }

    async fn version_get(
        &self,
        tenant: &str,
        adapter: &str,
        version: &str,
    ) -> StorageResult<Option<(VersionInfo, Vec<u8>)>> {
        let (tenant, adapter, version) =
            (tenant.to_owned(), adapter.to_owned(), version.to_owned());
        self.run_named(move |client| async move {
            let found = row(
                &client,
                &format!(
                    "SELECT {VERSION_COLUMNS}, component FROM adapter_versions
                     WHERE tenant = $1 AND adapter = $2 AND version = $3"
                ),
                &[&tenant, &adapter, &version],
            )
            .await?;
            Ok(found.map(|row| (version_row(&row), row.get(9))))
        })
        .await
    }

    async fn adapter(&self, tenant: &str, adapter: &str) -> StorageResult<Option<AdapterEntry>> {
        let (tenant, adapter) = (tenant.to_owned(), adapter.to_owned());
        self.run_named(move |client| async move {
            Ok(adapters_of(&client, &tenant, Some(&adapter)).await?.pop())
        })
        .await
    }

    async fn active_version(&self, tenant: &str, adapter: &str) -> StorageResult<ActiveVersion> {
        let (tenant, adapter) = (tenant.to_owned(), adapter.to_owned());
        self.run_named(move |client| async move {
            // One row: the active version's, or whether the adapter has any version.
            let found = row(
                &client,
                "SELECT v.version, v.sha256 FROM active_versions a
                 JOIN adapter_versions v
                   ON v.tenant = a.tenant AND v.adapter = a.adapter AND v.version = a.version
                 WHERE a.tenant = $1 AND a.adapter = $2
                 UNION ALL
                 SELECT NULL, NULL FROM adapter_versions WHERE tenant = $1 AND adapter = $2
                 LIMIT 1",
                &[&tenant, &adapter],
            )
            .await?;
            Ok(match found {
                None => ActiveVersion::NoAdapter,
                Some(row) => match (row.get(0), row.get(1)) {
                    (Some(version), Some(sha256)) => ActiveVersion::Active { version, sha256 },
                    _ => ActiveVersion::NoneChosen,
                },
            })
        })
        .await
    }

    async fn adapters(&self, tenant: &str) -> StorageResult<Vec<AdapterEntry>> {
        let tenant = tenant.to_owned();
        self.run_named(move |client| async move { adapters_of(&client, &tenant, None).await })
            .await
    }

    async fn set_active(&self, tenant: &str, adapter: &str, version: &str) -> StorageResult<bool> {
        let (tenant, adapter, version) =
            (tenant.to_owned(), adapter.to_owned(), version.to_owned());
        self.run_named(move |client| async move {
            // Written only if the version exists: the SELECT gives the row or none.
            let written = execute(
                &client,
                "INSERT INTO active_versions (tenant, adapter, version, set_at)
                 SELECT tenant, adapter, version, clock_timestamp() FROM adapter_versions
                 WHERE tenant = $1 AND adapter = $2 AND version = $3
                 ON CONFLICT (tenant, adapter) DO UPDATE
                 SET version = EXCLUDED.version, set_at = EXCLUDED.set_at",
                &[&tenant, &adapter, &version],
            )
            .await?;
            Ok(written == 1)
        })
        .await
    }

    async fn stored_bytes(&self, tenant: &str) -> StorageResult<u64> {
        let tenant = tenant.to_owned();
        self.run_named(move |client| async move {
            let sum = rows(
                &client,
                "SELECT COALESCE(SUM(size), 0)::bigint FROM adapter_versions WHERE tenant = $1",
                &[&tenant],
            )
            .await?;
            Ok(sum.first().map_or(0, |row| row.get::<_, i64>(0)) as u64)
        })
        .await
    }

    async fn instance_put(&self, instance: &InstanceRecord) -> StorageResult<()> {
        let i = instance.clone();
        self.run_named(move |client| async move {
            execute(
                &client,
                "INSERT INTO instances (tenant, adapter, instance_id, version, config, status,
                     created_at, destroyed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), NULL)
                 ON CONFLICT (tenant, adapter, instance_id) DO NOTHING",
                &[
                    &i.tenant,
                    &i.adapter,
                    &i.instance_id,
                    &i.version,
                    &i.config,
                    &i.status,
                ],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn instance(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
    ) -> StorageResult<Option<InstanceRecord>> {
        let key = [
            tenant.to_owned(),
            adapter.to_owned(),
            instance_id.to_owned(),
        ];
        self.run_named(move |client| async move {
            let found = row(
                &client,
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances
                     WHERE tenant = $1 AND adapter = $2 AND instance_id = $3"
                ),
                &[&key[0], &key[1], &key[2]],
            )
            .await?;
            Ok(found.as_ref().map(instance_row))
        })
        .await
    }

    async fn instance_set_status(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
        status: &str,
    ) -> StorageResult<bool> {
        let key = [
            tenant.to_owned(),
            adapter.to_owned(),
            instance_id.to_owned(),
        ];
        let status = status.to_owned();
        self.run_named(move |client| async move {
            let updated = execute(
                &client,
                "UPDATE instances SET status = $4
                 WHERE tenant = $1 AND adapter = $2 AND instance_id = $3",
                &[&key[0], &key[1], &key[2], &status],
            )
            .await?;
            Ok(updated == 1)
        })
        .await
    }

    async fn instance_destroyed(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
    ) -> StorageResult<bool> {
        let key = [
            tenant.to_owned(),
            adapter.to_owned(),
            instance_id.to_owned(),
        ];
        self.run_named(move |client| async move {
            let updated = execute(
                &client,
                "UPDATE instances SET destroyed_at = COALESCE(destroyed_at, clock_timestamp())
                 WHERE tenant = $1 AND adapter = $2 AND instance_id = $3",
                &[&key[0], &key[1], &key[2]],
            )
            .await?;
            Ok(updated == 1)
        })
        .await
    }

    async fn instances(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
    ) -> StorageResult<Vec<InstanceRecord>> {
        let (tenant, filter) = (tenant.to_owned(), filter.clone());
        self.run_named(move |client| async move {
            // With no `after`, ('', '') is before every row (names are never empty), so the
            // range condition on the primary key always applies.
            let (after_adapter, after_id) = filter.after.clone().unwrap_or_default();
            let found = rows(
                &client,
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances
                     WHERE tenant = $1 AND (adapter, instance_id) > ($2, $3)
                     AND ($4::text IS NULL OR adapter = $4) AND ($5::text IS NULL OR status = $5)
                     ORDER BY adapter, instance_id LIMIT $6"
                ),
                &[
                    &tenant,
                    &after_adapter,
                    &after_id,
                    &filter.adapter,
                    &filter.status,
                    &i64::from(page(filter.limit)),
                ],
            )
            .await?;
            Ok(found.iter().map(instance_row).collect())
        })
        .await
    }

    async fn event_append(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
        kind: &str,
        data: &str,
    ) -> StorageResult<i64> {
        let key = [
            tenant.to_owned(),
            adapter.to_owned(),
            instance_id.to_owned(),
        ];
        let (kind, data) = (kind.to_owned(), data.to_owned());
        // The notification's payload, which is also the instance's lock key.
        let payload = serde_json::to_string(&key)
            .map_err(|e| StorageError(format!("cannot encode an event notification: {e}")))?;
        self.run_named(move |client| async move {
            let appended = rows(
                &client,
                APPEND_EVENT,
                &[&key[0], &key[1], &key[2], &kind, &data, &payload],
            )
            .await?;
            appended
                .first()
                .map(|row| row.get(0))
                .ok_or_else(|| StorageError("the event append returned no sequence number".into()))
        })
        .await
    }

    async fn events_after(
        &self,
        tenant: &str,
        adapter: &str,
        instance_id: &str,
        after: i64,
        limit: u32,
    ) -> StorageResult<Vec<Event>> {
        let key = [
            tenant.to_owned(),
            adapter.to_owned(),
            instance_id.to_owned(),
        ];
        self.run_named(move |client| async move {
            let found = rows(
                &client,
                "SELECT seq, kind, data, airlock_ms(at) FROM events
                 WHERE tenant = $1 AND adapter = $2 AND instance_id = $3 AND seq > $4
                 ORDER BY seq LIMIT $5",
                &[&key[0], &key[1], &key[2], &after, &i64::from(page(limit))],
            )
            .await?;
            Ok(found.iter().map(event_row).collect())
        })
        .await
    }

    fn event_wakeups(&self) -> broadcast::Receiver<Wakeup> {
        // Subscribed before the listener starts, so its first `Missed` reaches this one.
        let receiver = self.wakeups.subscribe();
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.as_mut().is_none_or(Listener::has_ended) {
            *listener = Listener::start(self);
            if listener.is_none() {
                tracing::warn!(
                    target: "airlock::storage",
                    database = %self.database,
                    "event wake-ups asked for outside a tokio runtime: no listener started"
                );
            }
        }
        receiver
    }

    async fn call_put(&self, call: &CallRecord, window: Duration) -> StorageResult<()> {
        let c = call.clone();
        self.run_named(move |client| async move {
            execute(
                &client,
                "INSERT INTO call_records (tenant, call_id, adapter, operation, receipt, logs,
                     at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(),
                         clock_timestamp() + $7::bigint * interval '1 millisecond')
                 ON CONFLICT (tenant, call_id) DO UPDATE
                 SET adapter = EXCLUDED.adapter, operation = EXCLUDED.operation,
                     receipt = EXCLUDED.receipt, logs = EXCLUDED.logs, at = EXCLUDED.at,
                     expires_at = EXCLUDED.expires_at",
                &[
                    &c.tenant,
                    &c.call_id,
                    &c.adapter,
                    &c.operation,
                    &c.receipt,
                    &c.logs,
                    &ms(window),
                ],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn calls_finished(&self, calls: &[FinishedCall]) -> StorageResult<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let calls = calls.to_vec();
        let payload = |tenant: &str, adapter: &str, stream: &str| {
            serde_json::to_string(&[tenant, adapter, stream])
                .map_err(|e| StorageError(format!("cannot encode an event notification: {e}")))
        };
        // Every stream the batch may append to: its lock key and notification payload.
        let mut streams: Vec<String> = Vec::new();
        for call in &calls {
            let (tenant, adapter) = (&call.record.tenant, &call.record.adapter);
            let touched = call
                .status
                .iter()
                .map(|seen| &seen.instance_id)
                .chain(call.events.iter().map(|event| &event.stream));
            for stream in touched {
                let key = payload(tenant, adapter, stream)?;
                if !streams.contains(&key) {
                    streams.push(key);
                }
            }
        }
        self.run_named(move |mut client| async move {
            let tx = client.transaction().await?;
            // As `event_append`: every stream's lock is held from before the batch draws its
            // first sequence number until the commit, so an instance's numbers become visible
            // in order.
            tx.execute(LOCK_STREAMS, &[&streams]).await?;
            let set_status = tx
                .prepare_cached(
                    "UPDATE instances SET status = $4
                     WHERE tenant = $1 AND adapter = $2 AND instance_id = $3
                       AND status IS DISTINCT FROM $4",
                )
                .await?;
            let insert = tx.prepare_cached(INSERT_EVENT).await?;
            let put = tx.prepare_cached(PUT_CALL).await?;
            let mut notify: Vec<String> = Vec::new();
            for call in &calls {
                let (tenant, adapter) = (&call.record.tenant, &call.record.adapter);
                if let Some(seen) = &call.status
                    && tx
                        .execute(
                            &set_status,
                            &[tenant, adapter, &seen.instance_id, &seen.status],
                        )
                        .await?
                        == 1
                {
                    tx.execute(
                        &insert,
                        &[tenant, adapter, &seen.instance_id, &"status", &seen.data],
                    )
                    .await?;
                    notify.push(payload(tenant, adapter, &seen.instance_id)?);
                }
                for event in &call.events {
                    tx.execute(
                        &insert,
                        &[tenant, adapter, &event.stream, &event.kind, &event.data],
                    )
                    .await?;
                    notify.push(payload(tenant, adapter, &event.stream)?);
                }
                let r = &call.record;
                tx.execute(
                    &put,
                    &[
                        &r.tenant,
                        &r.call_id,
                        &r.adapter,
                        &r.operation,
                        &r.receipt,
                        &r.logs,
                        &ms(call.window),
                    ],
                )
                .await?;
            }
            notify.sort();
            notify.dedup();
            // Delivered at the commit, as `event_append`'s.
            tx.execute(
                "SELECT pg_notify('airlock_events', payload) FROM unnest($1::text[]) AS payload",
                &[&notify],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn call(&self, tenant: &str, call_id: &str) -> StorageResult<Option<CallRecord>> {
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.run_named(move |client| async move {
            let found = row(
                &client,
                &format!(
                    "SELECT {CALL_COLUMNS} FROM call_records
                     WHERE tenant = $1 AND call_id = $2 AND expires_at > clock_timestamp()"
                ),
                &[&tenant, &call_id],
            )
            .await?;
            Ok(found.as_ref().map(call_row))
        })
        .await
    }

    async fn purge_service(&self, events: Duration, batch: u32) -> StorageResult<u64> {
        let (age, batch) = (ms(events), i64::from(batch));
        self.run_named(move |client| async move {
            let events = execute(
                &client,
                &purge_batch(
                    "events",
                    "at <= clock_timestamp() - $2::bigint * interval '1 millisecond'",
                ),
                &[&batch, &age],
            )
            .await?;
            let calls = execute(
                &client,
                &purge_batch("call_records", "expires_at <= clock_timestamp()"),
                &[&batch],
            )
            .await?;
            Ok(events + calls)
        })
        .await
    }
}
