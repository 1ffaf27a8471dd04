//! The service's upkeep: a background task that deletes instances' events older than
//! their window and call records past theirs, in bounded batches, while the service runs.
//!
//! Every node runs it; on PostgreSQL the nodes' batches take different rows (see
//! `ServiceStore::purge_service`), so several nodes purging at once only share the work.
//! A batch is one short statement per table, so a purge never holds the database for
//! long; a backlog (after a long stop) is worked through batch after batch, yielding
//! between them.

use std::sync::Arc;
use std::time::Duration;

use airlock::storage::service::ServiceStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long an instance's events are kept: a client may resume its event stream from any
/// event this young (docs/service.md, "Live events and call records").
pub const EVENTS_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How long a call's record (`GET /v1/calls/{id}`) is kept: the window its writer passes
/// to `ServiceStore::call_put`. The purge deletes records by the expiry stored with each,
/// so this constant is for writers.
pub const CALL_RECORD_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How often the upkeep purges.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The most rows of each table one purge statement deletes.
pub const PURGE_BATCH: u32 = 1000;

/// What the upkeep keeps and how it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are deleted. Default: [`EVENTS_WINDOW`].
    pub events: Duration,
    /// The time between purges. Default: [`PURGE_EVERY`].
    pub every: Duration,
    /// The most rows of each table one statement deletes. Default: [`PURGE_BATCH`].
    pub batch: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events: EVENTS_WINDOW,
            every: PURGE_EVERY,
            batch: PURGE_BATCH,
        }
    }
}

/// Start the upkeep on the current tokio runtime: a purge at once, then one every
/// `retention.every`, until `shutdown` is cancelled (the task then ends, between batches
/// at the latest). A purge that fails is logged and tried again at the next round.
///
/// ```no_run
/// # async fn example(runtime: airlock::Runtime) {
/// use airlock_server::upkeep::{self, Retention};
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let task = upkeep::spawn(runtime.service_store(), shutdown.clone(), Retention::default());
/// // … serve …
/// shutdown.cancel();
/// task.await.unwrap();
/// # }
/// ```
pub fn spawn(
    store: Arc<dyn ServiceStore>,
    shutdown: CancellationToken,
    retention: Retention,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rounds = tokio::time::interval(retention.every);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = rounds.tick() => {}
            }
            purge(&*store, &shutdown, retention).await;
        }
    })
}

/// One round: batches until one deletes less than a full batch of each table, or the
/// service stops.
async fn purge(store: &dyn ServiceStore, shutdown: &CancellationToken, retention: Retention) {
    let batch = retention.batch.max(1);
    let mut deleted = 0u64;
    loop {
        let purged = tokio::select! {
            () = shutdown.cancelled() => break,
            purged = store.purge_service(retention.events, batch) => purged,
        };
        match purged {
            Ok(rows) => {
                deleted += rows;
                // Each table gives at most `batch`: below that, neither had more.
                if rows < u64::from(batch) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(target: "airlock::serve", %error,
                    "could not purge old events and call records; trying again at the next round");
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    if deleted > 0 {
        tracing::info!(target: "airlock::serve", deleted, "purged old events and call records");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use airlock::storage::service::{CallRecord, InstanceRecord};
    use airlock::{Runtime, RuntimeConfig};
    use tokio_util::sync::CancellationToken;

    use super::{Retention, spawn};

    #[tokio::test]
    async fn the_upkeep_purges_old_rows_in_batches_and_stops_with_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RuntimeConfig::with_data_dir(dir.path());
        config.pool_size = 2;
        config.cache_compiled = false;
        let store = Runtime::new(config).unwrap().service_store();
        store
            .instance_put(&InstanceRecord {
                tenant: "acme".to_owned(),
                adapter: "dns".to_owned(),
                instance_id: "i-1".to_owned(),
                version: "1.0.0".to_owned(),
                config: "{}".to_owned(),
                status: None,
                created_ms: 0,
                destroyed_ms: None,
            })
            .await
            .unwrap();
        for n in 0..25 {
            store
                .event_append("acme", "dns", "i-1", "log", &format!("{{\"n\":{n}}}"))
                .await
                .unwrap();
        }
        let call = |id: &str| CallRecord {
            call_id: id.to_owned(),
            tenant: "acme".to_owned(),
            adapter: "dns".to_owned(),
            operation: "create".to_owned(),
            receipt: "{}".to_owned(),
            logs: "[]".to_owned(),
            at_ms: 0,
        };
        // An expired record is never answered, purged or not: it is here so that a round
        // purges both tables.
        store
            .call_put(&call("call_old"), Duration::from_millis(1))
            .await
            .unwrap();
        store
            .call_put(&call("call_new"), super::CALL_RECORD_WINDOW)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;

        // Events older than 10 ms, in batches of 4: one round must take them all.
        let shutdown = CancellationToken::new();
        let task = spawn(
            store.clone(),
            shutdown.clone(),
            Retention {
                events: Duration::from_millis(10),
                every: Duration::from_secs(3600),
                batch: 4,
            },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !store
            .events_after("acme", "dns", "i-1", 0, 100)
            .await
            .unwrap()
            .is_empty()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first round purges every old event"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(store.call("acme", "call_new").await.unwrap().is_some());

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the upkeep ends when the service stops")
            .unwrap();
    }
}
