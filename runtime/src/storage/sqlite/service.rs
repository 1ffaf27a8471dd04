//! [`ServiceStore`] on SQLite: the service's rows in the same file as the runtime's
//! (schema version 6, [`super::MIGRATE_V6`]).
//!
//! SQLite serves one node, so event wake-ups travel inside this process only: every
//! handle on the same file shares one channel ([`wakeups_for`]). A process writing the
//! file through another path (a second `airlock` process) wakes no one here; its events
//! are still read by the next `events_after`.
//!
//! Statements that touch one row by its key run through [`SqliteStorage::run_quick`] (on
//! the calling worker when that cannot wait, else on the blocking pool, and may run twice:
//! each closure is a single statement or one transaction). Listings, sums, purges and
//! anything that moves a component's bytes run through [`SqliteStorage::run_long`], on the
//! blocking pool, since their time grows with the data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use tokio::sync::broadcast;

use super::{SqliteStorage, ms, now_ms};
use crate::storage::service::{
    ActiveVersion, AdapterEntry, CallRecord, Event, FinishedCall, InstanceFilter, InstanceRecord,
    NewVersion, PutVersion, ServiceStore, Tenant, VersionInfo, WAKEUP_BACKLOG, Wakeup,
    group_adapters, page,
};
use crate::storage::{Storage, StorageError, StorageResult};

/// The wake-up channel of every database file open in this process, by canonical path.
/// Weak: a channel lives as long as a storage on its file does.
type Channels = HashMap<PathBuf, Weak<broadcast::Sender<Wakeup>>>;

static WAKEUPS: LazyLock<Mutex<Channels>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The wake-up channel of the file at `path`, shared with every other handle on it in this
/// process (two `SqliteDb::open` of one file are one node's, and must wake each other).
pub(super) fn wakeups_for(path: &Path) -> Arc<broadcast::Sender<Wakeup>> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut channels = WAKEUPS.lock().unwrap_or_else(|p| p.into_inner());
    channels.retain(|_, sender| sender.strong_count() > 0);
    if let Some(sender) = channels.get(&key).and_then(Weak::upgrade) {
        return sender;
    }
    let sender = Arc::new(broadcast::channel(WAKEUP_BACKLOG).0);
    channels.insert(key, Arc::downgrade(&sender));
    sender
}

/// A tenant's columns, as [`tenant_row`] reads them.
const TENANT_COLUMNS: &str = "name, ceiling, created_at, key_set_at, key_sha256";

/// A version's columns without its component, as [`version_row`] reads them.
const VERSION_COLUMNS: &str = "adapter, version, sha256, size, policy, recording IS NOT NULL,
    admission, admitted, created_at";

/// An instance's columns, as [`instance_row`] reads them.
const INSTANCE_COLUMNS: &str =
    "tenant, adapter, instance_id, version, config, status, created_at, destroyed_at";

/// A call record's columns, as [`call_row`] reads them.
const CALL_COLUMNS: &str = "call_id, tenant, adapter, operation, receipt, logs, at";

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<(Tenant, String)> {
    Ok((
        Tenant {
            name: row.get(0)?,
            ceiling: row.get(1)?,
            created_ms: row.get(2)?,
            key_set_ms: row.get(3)?,
        },
        row.get(4)?,
    ))
}

fn version_row(row: &Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        adapter: row.get(0)?,
        version: row.get(1)?,
        sha256: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        policy: row.get(4)?,
        has_recording: row.get(5)?,
        admission: row.get(6)?,
        admitted: row.get(7)?,
        created_ms: row.get(8)?,
    })
}

fn instance_row(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    Ok(InstanceRecord {
        tenant: row.get(0)?,
        adapter: row.get(1)?,
        instance_id: row.get(2)?,
        version: row.get(3)?,
        config: row.get(4)?,
        status: row.get(5)?,
        created_ms: row.get(6)?,
        destroyed_ms: row.get(7)?,
    })
}

fn call_row(row: &Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        call_id: row.get(0)?,
        tenant: row.get(1)?,
        adapter: row.get(2)?,
        operation: row.get(3)?,
        receipt: row.get(4)?,
        logs: row.get(5)?,
        at_ms: row.get(6)?,
    })
}

/// Every row `sql` selects, read by `read`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    read: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map(params, read)?.collect()
}

/// The one row `sql` selects, if any.
fn row<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    read: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    conn.prepare_cached(sql)?.query_row(params, read).optional()
}

/// Run one statement that changes rows; whether it changed any.
fn changed(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached(sql)?.execute(params)? > 0)
}

/// The tenants `condition` selects, by name.
fn tenants_where(
    conn: &Connection,
    condition: &str,
    params: &[&dyn ToSql],
) -> rusqlite::Result<Vec<(Tenant, String)>> {
    rows(conn, &tenants_sql(condition), params, tenant_row)
}

/// The tenants `condition` selects, by name.
fn tenants_sql(condition: &str) -> String {
    format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE {condition} ORDER BY name")
}

/// A page of a tenant's instances ([`InstanceFilter`]): ?1 the tenant, (?2, ?3) the
/// `after` key, ?4 and ?5 the filters, ?6 the limit. With no `after`, ('', '') is before
/// every row (names are never empty), so the range seek on the primary key always
/// applies.
fn instances_sql() -> String {
    format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances
         WHERE tenant = ?1 AND (adapter, instance_id) > (?2, ?3)
         AND (?4 IS NULL OR adapter = ?4) AND (?5 IS NULL OR status = ?5)
         ORDER BY adapter, instance_id LIMIT ?6"
    )
}

/// An instance's events after ?4, at most ?5.
const EVENTS_AFTER: &str = "SELECT seq, kind, data, at FROM events
    WHERE tenant = ?1 AND adapter = ?2 AND instance_id = ?3 AND seq > ?4
    ORDER BY seq LIMIT ?5";

/// At most ?2 events appended at or before ?1.
const PURGE_EVENTS: &str =
    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE at <= ?1 LIMIT ?2)";

/// At most ?2 call records expired at ?1.
const PURGE_CALLS: &str = "DELETE FROM call_records WHERE (tenant, call_id) IN
    (SELECT tenant, call_id FROM call_records WHERE expires_at <= ?1 LIMIT ?2)";

/// The bytes of a tenant's components.
const STORED_BYTES: &str = "SELECT COALESCE(SUM(size), 0) FROM adapter_versions WHERE tenant = ?1";

/// `tenant`'s adapters (`Some(adapter)`: that one only) with their versions.
fn adapters_of(
    conn: &Connection,
    tenant: &str,
    adapter: Option<&str>,
) -> rusqlite::Result<Vec<AdapterEntry>> {
    let versions = rows(
        conn,
        &format!(
            "SELECT {VERSION_COLUMNS} FROM adapter_versions
             WHERE tenant = ?1 AND (?2 IS NULL OR adapter = ?2) ORDER BY adapter, id"
        ),
        &[&tenant, &adapter],
        version_row,
    )?;
    let active: HashMap<String, String> = rows(
        conn,
        "SELECT adapter, version FROM active_versions
         WHERE tenant = ?1 AND (?2 IS NULL OR adapter = ?2)",
        &[&tenant, &adapter],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?
    .into_iter()
    .collect();
    Ok(group_adapters(versions, &active))
}

impl SqliteStorage {
    /// A failure, naming this database.
    fn named(&self, error: StorageError) -> StorageError {
        StorageError(format!("{}: {}", self.describe(), error.0))
    }

    /// Run a statement on one row by its key: see [`super::SqliteDb::run`] (it may run
    /// twice, so `f` is one statement or one transaction).
    async fn run_quick<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> StorageResult<R> {
        self.db.run(f).await.map_err(|e| self.named(e))
    }

    /// Run statements whose time grows with the data on the blocking pool.
    async fn run_long<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> StorageResult<R> {
        self.db.run_blocking(f).await.map_err(|e| self.named(e))
    }
}

#[async_trait::async_trait]
impl ServiceStore for SqliteStorage {
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
        self.run_quick(move |conn| {
            let now = now_ms();
            changed(
                conn,
                "INSERT INTO tenants (name, key_sha256, ceiling, created_at, key_set_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING",
                &[&name, &key, &ceiling, &now],
            )
        })
        .await
    }

    async fn tenant(&self, name: &str) -> StorageResult<Option<Tenant>> {
        let name = name.to_owned();
        self.run_quick(move |conn| {
            Ok(tenants_where(conn, "name = ?1", &[&name])?
                .pop()
                .map(|(tenant, _)| tenant))
        })
        .await
    }

    async fn tenants(&self) -> StorageResult<Vec<Tenant>> {
        self.run_long(|conn| {
            Ok(tenants_where(conn, "1", &[])?
                .into_iter()
                .map(|(tenant, _)| tenant)
                .collect())
        })
        .await
    }

    async fn tenant_by_key(&self, key_sha256: &str) -> StorageResult<Option<(Tenant, String)>> {
        let key = key_sha256.to_owned();
        self.run_quick(move |conn| Ok(tenants_where(conn, "key_sha256 = ?1", &[&key])?.pop()))
            .await
    }

    async fn tenant_set_key(&self, name: &str, key_sha256: &str) -> StorageResult<bool> {
        let (name, key) = (name.to_owned(), key_sha256.to_owned());
        self.run_quick(move |conn| {
            changed(
                conn,
                "UPDATE tenants SET key_sha256 = ?2, key_set_at = ?3 WHERE name = ?1",
                &[&name, &key, &now_ms()],
            )
        })
        .await
    }

    async fn tenant_set_ceiling(&self, name: &str, ceiling: Option<&str>) -> StorageResult<bool> {
        let (name, ceiling) = (name.to_owned(), ceiling.map(str::to_owned));
        self.run_quick(move |conn| {
            changed(
                conn,
                "UPDATE tenants SET ceiling = ?2 WHERE name = ?1",
                &[&name, &ceiling],
            )
        })
        .await
    }

    async fn version_put(&self, version: &NewVersion) -> StorageResult<PutVersion> {
        let v = version.clone();
        self.run_long(move |conn| {
            // Versions are never changed or deleted, so the row the insert found in its
            // way is still there to be read.
            let inserted = changed(
                conn,
                "INSERT INTO adapter_versions (tenant, adapter, version, sha256, size, policy,
                     recording, admission, admitted, created_at, component)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
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
                    &now_ms(),
                    &v.component,
                ],
            )?;
            if inserted {
                return Ok(PutVersion::Created);
            }
            let stored: String = conn.query_row(
                "SELECT sha256 FROM adapter_versions
                 WHERE tenant = ?1 AND adapter = ?2 AND version = ?3",
                params![v.tenant, v.adapter, v.version],
                |row| row.get(0),
            )?;
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
        self.run_long(move |conn| {
            row(
                conn,
                &format!(
                    "SELECT {VERSION_COLUMNS}, component FROM adapter_versions
                     WHERE tenant = ?1 AND adapter = ?2 AND version = ?3"
                ),
                &[&tenant, &adapter, &version],
                |row| Ok((version_row(row)?, row.get(9)?)),
            )
        })
        .await
    }

    async fn adapter(&self, tenant: &str, adapter: &str) -> StorageResult<Option<AdapterEntry>> {
        let (tenant, adapter) = (tenant.to_owned(), adapter.to_owned());
        self.run_long(move |conn| Ok(adapters_of(conn, &tenant, Some(&adapter))?.pop()))
            .await
    }

    async fn active_version(&self, tenant: &str, adapter: &str) -> StorageResult<ActiveVersion> {
        let (tenant, adapter) = (tenant.to_owned(), adapter.to_owned());
        self.run_quick(move |conn| {
            let active = row(
                conn,
                "SELECT v.version, v.sha256 FROM active_versions a
                 JOIN adapter_versions v
                   ON v.tenant = a.tenant AND v.adapter = a.adapter AND v.version = a.version
                 WHERE a.tenant = ?1 AND a.adapter = ?2",
                &[&tenant, &adapter],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            if let Some((version, sha256)) = active {
                return Ok(ActiveVersion::Active { version, sha256 });
            }
            let any = row(
                conn,
                "SELECT 1 FROM adapter_versions WHERE tenant = ?1 AND adapter = ?2 LIMIT 1",
                &[&tenant, &adapter],
                |row| row.get::<_, i64>(0),
            )?;
            Ok(match any {
                Some(_) => ActiveVersion::NoneChosen,
                None => ActiveVersion::NoAdapter,
            })
        })
        .await
    }

    async fn adapters(&self, tenant: &str) -> StorageResult<Vec<AdapterEntry>> {
        let tenant = tenant.to_owned();
        self.run_long(move |conn| adapters_of(conn, &tenant, None))
            .await
    }

    async fn set_active(&self, tenant: &str, adapter: &str, version: &str) -> StorageResult<bool> {
        let (tenant, adapter, version) =
            (tenant.to_owned(), adapter.to_owned(), version.to_owned());
        self.run_quick(move |conn| {
            // Written only if the version exists: the SELECT gives the row or none.
            changed(
                conn,
                "INSERT INTO active_versions (tenant, adapter, version, set_at)
                 SELECT tenant, adapter, version, ?4 FROM adapter_versions
                 WHERE tenant = ?1 AND adapter = ?2 AND version = ?3
                 ON CONFLICT (tenant, adapter) DO UPDATE
                 SET version = excluded.version, set_at = excluded.set_at",
                &[&tenant, &adapter, &version, &now_ms()],
            )
        })
        .await
    }

    async fn stored_bytes(&self, tenant: &str) -> StorageResult<u64> {
        let tenant = tenant.to_owned();
        self.run_long(move |conn| {
            conn.query_row(STORED_BYTES, params![tenant], |row| row.get::<_, i64>(0))
                .map(|bytes| bytes as u64)
        })
        .await
    }

    async fn instance_put(&self, instance: &InstanceRecord) -> StorageResult<()> {
        let i = instance.clone();
        self.run_quick(move |conn| {
            changed(
                conn,
                "INSERT INTO instances (tenant, adapter, instance_id, version, config, status,
                     created_at, destroyed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)
                 ON CONFLICT (tenant, adapter, instance_id) DO NOTHING",
                &[
                    &i.tenant,
                    &i.adapter,
                    &i.instance_id,
                    &i.version,
                    &i.config,
                    &i.status,
                    &now_ms(),
                ],
            )
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
        self.run_quick(move |conn| {
            row(
                conn,
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances
                     WHERE tenant = ?1 AND adapter = ?2 AND instance_id = ?3"
                ),
                &[&key[0], &key[1], &key[2]],
                instance_row,
            )
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
        self.run_quick(move |conn| {
            changed(
                conn,
                "UPDATE instances SET status = ?4
                 WHERE tenant = ?1 AND adapter = ?2 AND instance_id = ?3",
                &[&key[0], &key[1], &key[2], &status],
            )
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
        self.run_quick(move |conn| {
            changed(
                conn,
                "UPDATE instances SET destroyed_at = COALESCE(destroyed_at, ?4)
                 WHERE tenant = ?1 AND adapter = ?2 AND instance_id = ?3",
                &[&key[0], &key[1], &key[2], &now_ms()],
            )
        })
        .await
    }

    async fn instances(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
    ) -> StorageResult<Vec<InstanceRecord>> {
        let (tenant, filter) = (tenant.to_owned(), filter.clone());
        self.run_long(move |conn| {
            let (after_adapter, after_id) = filter.after.clone().unwrap_or_default();
            rows(
                conn,
                &instances_sql(),
                &[
                    &tenant,
                    &after_adapter,
                    &after_id,
                    &filter.adapter,
                    &filter.status,
                    &page(filter.limit),
                ],
                instance_row,
            )
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
        let appended = key.clone();
        let seq = self
            .run_quick(move |conn| {
                // One statement, committed on its own: SQLite commits one writer at a
                // time, so sequence numbers become visible in order.
                conn.prepare_cached(
                    "INSERT INTO events (tenant, adapter, instance_id, kind, data, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .insert(params![key[0], key[1], key[2], kind, data, now_ms()])
            })
            .await?;
        let [tenant, adapter, instance_id] = appended;
        // No receiver is not an error: nobody is streaming.
        let _ = self.wakeups.send(Wakeup::Appended {
            tenant,
            adapter,
            instance_id,
        });
        Ok(seq)
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
        self.run_long(move |conn| {
            rows(
                conn,
                EVENTS_AFTER,
                &[&key[0], &key[1], &key[2], &after, &page(limit)],
                |row| {
                    Ok(Event {
                        seq: row.get(0)?,
                        kind: row.get(1)?,
                        data: row.get(2)?,
                        at_ms: row.get(3)?,
                    })
                },
            )
        })
        .await
    }

    fn event_wakeups(&self) -> broadcast::Receiver<Wakeup> {
        self.wakeups.subscribe()
    }

    async fn call_put(&self, call: &CallRecord, window: Duration) -> StorageResult<()> {
        let c = call.clone();
        self.run_quick(move |conn| {
            let now = now_ms();
            changed(
                conn,
                "INSERT INTO call_records (tenant, call_id, adapter, operation, receipt, logs,
                     at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tenant, call_id) DO UPDATE
                 SET adapter = excluded.adapter, operation = excluded.operation,
                     receipt = excluded.receipt, logs = excluded.logs, at = excluded.at,
                     expires_at = excluded.expires_at",
                &[
                    &c.tenant,
                    &c.call_id,
                    &c.adapter,
                    &c.operation,
                    &c.receipt,
                    &c.logs,
                    &now,
                    &now.saturating_add(ms(window)),
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn calls_finished(&self, calls: &[FinishedCall]) -> StorageResult<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let calls = calls.to_vec();
        // On the blocking pool: a batch's time grows with its size. One write transaction
        // (taken at once, so it never has to upgrade a read lock): SQLite commits one writer
        // at a time, so its sequence numbers become visible together, after every smaller one.
        let woken = self
            .run_long(move |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut woken: Vec<(String, String, String)> = Vec::new();
                {
                    let mut set_status = tx.prepare_cached(
                        "UPDATE instances SET status = ?4
                         WHERE tenant = ?1 AND adapter = ?2 AND instance_id = ?3
                           AND status IS NOT ?4",
                    )?;
                    let mut append = tx.prepare_cached(
                        "INSERT INTO events (tenant, adapter, instance_id, kind, data, at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    let mut put = tx.prepare_cached(
                        "INSERT INTO call_records (tenant, call_id, adapter, operation, receipt,
                             logs, at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (tenant, call_id) DO UPDATE
                         SET adapter = excluded.adapter, operation = excluded.operation,
                             receipt = excluded.receipt, logs = excluded.logs, at = excluded.at,
                             expires_at = excluded.expires_at",
                    )?;
                    for call in &calls {
                        let (tenant, adapter) = (&call.record.tenant, &call.record.adapter);
                        let now = now_ms();
                        let mut wake = |stream: &str| {
                            let key = (tenant.clone(), adapter.clone(), stream.to_owned());
                            if !woken.contains(&key) {
                                woken.push(key);
                            }
                        };
                        if let Some(seen) = &call.status
                            && set_status.execute(params![
                                tenant,
                                adapter,
                                seen.instance_id,
                                seen.status
                            ])? == 1
                        {
                            append.execute(params![
                                tenant,
                                adapter,
                                seen.instance_id,
                                "status",
                                seen.data,
                                now
                            ])?;
                            wake(&seen.instance_id);
                        }
                        for event in &call.events {
                            append.execute(params![
                                tenant,
                                adapter,
                                event.stream,
                                event.kind,
                                event.data,
                                now
                            ])?;
                            wake(&event.stream);
                        }
                        let r = &call.record;
                        put.execute(params![
                            r.tenant,
                            r.call_id,
                            r.adapter,
                            r.operation,
                            r.receipt,
                            r.logs,
                            now,
                            now.saturating_add(ms(call.window))
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(woken)
            })
            .await?;
        for (tenant, adapter, instance_id) in woken {
            // No receiver is not an error: nobody is streaming.
            let _ = self.wakeups.send(Wakeup::Appended {
                tenant,
                adapter,
                instance_id,
            });
        }
        Ok(())
    }

    async fn call(&self, tenant: &str, call_id: &str) -> StorageResult<Option<CallRecord>> {
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.run_quick(move |conn| {
            row(
                conn,
                &format!(
                    "SELECT {CALL_COLUMNS} FROM call_records
                     WHERE tenant = ?1 AND call_id = ?2 AND expires_at > ?3"
                ),
                &[&tenant, &call_id, &now_ms()],
                call_row,
            )
        })
        .await
    }

    async fn purge_service(&self, events: Duration, batch: u32) -> StorageResult<u64> {
        self.run_long(move |conn| {
            let now = now_ms();
            // Each statement commits on its own, so other writers get turns between them.
            let events =
                conn.execute(PURGE_EVENTS, params![now.saturating_sub(ms(events)), batch])?;
            let calls = conn.execute(PURGE_CALLS, params![now, batch])?;
            Ok((events + calls) as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqliteDb;
    use super::*;

    /// SQLite's plan for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let unbound = std::iter::repeat_n(rusqlite::types::Null, statement.parameter_count());
        let steps: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(unbound), |row| row.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        steps.join("\n")
    }

    #[test]
    fn the_service_lookups_are_index_searches() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("airlock.db")).unwrap();
        let plans = db
            .with(|conn| {
                Ok([
                    tenants_sql("key_sha256 = ?1"),
                    instances_sql(),
                    EVENTS_AFTER.to_owned(),
                    PURGE_EVENTS.to_owned(),
                    PURGE_CALLS.to_owned(),
                    STORED_BYTES.to_owned(),
                ]
                .map(|sql| plan(conn, &sql)))
            })
            .unwrap();
        let expect = [
            "SEARCH tenants USING INDEX tenants_by_key (key_sha256=?)",
            "SEARCH instances USING PRIMARY KEY (tenant=? AND (adapter,instance_id)>(?,?))",
            "SEARCH events USING INDEX events_by_instance (tenant=? AND adapter=? AND instance_id=? AND seq>?)",
            "SEARCH events USING COVERING INDEX events_by_age (at<?)",
            "SEARCH call_records USING COVERING INDEX call_records_expiry (expires_at<?)",
            "SEARCH adapter_versions USING INDEX sqlite_autoindex_adapter_versions_1 (tenant=?)",
        ];
        for (plan, expected) in plans.iter().zip(expect) {
            assert!(plan.contains(expected), "expected {expected:?} in:\n{plan}");
            // The listing's order comes from the index, never from a sort of the rows.
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
    }
}
