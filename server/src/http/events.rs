//! An instance's live events: `GET /v1/adapters/{name}/instances/{id}/events`, a
//! server-sent-event stream.
//!
//! Each event is sent as `id: <seq>`, `event: <kind>` (`progress`, `log`, `status`,
//! `receipt`) and `data: <json>`, oldest first. The stream first sends the stored events
//! after the client's resume point (`Last-Event-ID`, or `?after=` for clients that cannot
//! set headers), then every event appended later, until the client goes away or the
//! service stops.
//!
//! The store is the only source of events: the stream never sends what a wake-up carried,
//! it re-reads the store by sequence number after the last one it sent. So a client that
//! falls behind, a wake-up that is lost (SQLite's wake-ups reach only this process;
//! PostgreSQL's listener may reconnect) or a broadcast receiver that lags never costs an
//! event or reorders them: at worst an event arrives at the next re-read ([`REREAD_EVERY`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use airlock::storage::service::{Event, ServiceStore, Wakeup};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use super::{ApiError, ApiErrorBody, AppState, Caller};

/// The most events one read of the store returns; a client further behind gets the rest
/// from the next reads, at once and in order.
pub(crate) const EVENTS_PER_READ: u32 = 1000;

/// How often an open stream re-reads the store without a wake-up: the safety net for
/// wake-ups that never come (another process on the same SQLite file, a PostgreSQL
/// listener between connections).
pub(crate) const REREAD_EVERY: Duration = Duration::from_secs(2);

/// How often an idle stream sends a keep-alive comment, so proxies keep it open.
pub(crate) const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// The header a reconnecting client sends with the last event id it saw.
const LAST_EVENT_ID: &str = "last-event-id";

/// The query of `GET …/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Send only the events after this sequence number (exclusive), for clients that
    /// cannot send `Last-Event-ID`; that header wins when both are sent (a reconnecting
    /// `EventSource` sends it with the URL it first opened).
    after: Option<i64>,
}

/// An instance's events as server-sent events: the stored ones after the resume point,
/// then the live ones as they are appended. The stream ends when the service stops.
#[utoipa::path(get, path = "/v1/adapters/{name}/instances/{id}/events", tag = "events",
    operation_id = "instance_events",
    params(
        ("name" = String, Path, description = "The adapter's name"),
        ("id" = String, Path, description = "The instance id"),
        ("Last-Event-ID" = Option<i64>, Header,
            description = "Resume after this event id (exclusive): the last `id:` the client saw"),
        EventsQuery,
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "Server-sent events, oldest first, each `id: <seq>`, `event: <kind>` (`progress`, `log`, `status`, `receipt`), `data: <json>`; keep-alive comments while idle. Open until the client closes it or the service stops."),
        (status = 400, description = "`Last-Event-ID` or `after` is not a sequence number", body = ApiErrorBody),
        (status = 401, description = "No valid API key", body = ApiErrorBody),
        (status = 404, description = "The caller has no such instance", body = ApiErrorBody),
    ))]
pub(super) async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((adapter, instance_id)): Path<(String, String)>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let query = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let after = resume_point(&headers, query.after)?;
    if state
        .store
        .instance(&caller.tenant, &adapter, &instance_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "no instance {instance_id:?} of adapter {adapter:?}"
        )));
    }
    // The events of calls this node answered may still be queued for writing.
    state.recorder.flush().await;
    Ok(follow(&state, caller.tenant, adapter, instance_id, after))
}

/// A create's events while its instance id is not known yet: the progress it reports
/// live, then its logs and receipt; from then on the instance's own stream has its
/// events. Keyed by the create's
/// idempotency key, which the client chose, so it may open the stream before it sends the
/// create. A key no create used yet is an empty stream, not a 404: the key is the caller's
/// own, in the caller's own namespace.
#[utoipa::path(get, path = "/v1/adapters/{name}/creates/{key}/events", tag = "events",
    operation_id = "create_events",
    params(
        ("name" = String, Path, description = "The adapter's name"),
        ("key" = String, Path, description = "The create's idempotency key"),
        ("Last-Event-ID" = Option<i64>, Header,
            description = "Resume after this event id (exclusive): the last `id:` the client saw"),
        EventsQuery,
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "Server-sent events of the creates with this key, as for an instance's stream"),
        (status = 400, description = "`Last-Event-ID` or `after` is not a sequence number", body = ApiErrorBody),
        (status = 401, description = "No valid API key", body = ApiErrorBody),
        (status = 404, description = "The caller has no such adapter", body = ApiErrorBody),
    ))]
pub(super) async fn create_stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((adapter, key)): Path<(String, String)>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let query = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let after = resume_point(&headers, query.after)?;
    if state
        .store
        .adapter(&caller.tenant, &adapter)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no adapter {adapter:?}")));
    }
    let stream = super::instances::create_stream(&key);
    state.recorder.flush().await;
    Ok(follow(&state, caller.tenant, adapter, stream, after))
}

/// The stream of `(tenant, adapter, stream)`'s events after `after`.
fn follow(
    state: &AppState,
    tenant: String,
    adapter: String,
    instance_id: String,
    after: i64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
    // Subscribed before the first read, so an event appended between that read and the
    // first wait still wakes the stream.
    let wakeups = state.store.event_wakeups();
    let follow = Follow {
        store: state.store.clone(),
        tenant,
        adapter,
        instance_id,
        last: after,
        pending: VecDeque::new(),
        caught_up: false,
        wakeups: Some(wakeups),
        shutdown: state.shutdown.clone(),
    };
    let events = futures_util::stream::unfold(follow, Follow::next);
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE_EVERY))
}

/// The sequence number to resume after: `Last-Event-ID`, else `?after=`, else 0 (every
/// stored event).
fn resume_point(headers: &HeaderMap, after: Option<i64>) -> Result<i64, ApiError> {
    let header = match headers.get(LAST_EVENT_ID) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            Some(text.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Last-Event-ID {text:?} is not an event id (the `id:` of an event this stream sent)"
                ))
            })?)
        }
        None => None,
    };
    match header.or(after).unwrap_or(0) {
        seq if seq < 0 => Err(ApiError::bad_request(format!(
            "cannot resume after {seq}: event ids are not negative (0 or none: from the first stored event)"
        ))),
        seq => Ok(seq),
    }
}

/// One open stream: where it is in the instance's log and what wakes it.
struct Follow {
    store: Arc<dyn ServiceStore>,
    tenant: String,
    adapter: String,
    instance_id: String,
    /// The last sequence number read from the store (sent, or in `pending`).
    last: i64,
    /// Read but not yet sent, oldest first.
    pending: VecDeque<Event>,
    /// The last read returned less than a full page: wait for a wake-up before the next.
    caught_up: bool,
    /// `None` once the store's wake-ups are closed: the timer alone re-reads.
    wakeups: Option<Receiver<Wakeup>>,
    shutdown: CancellationToken,
}

impl Follow {
    /// The next event to send, or `None` when the service stops.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Follow)> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(sse_event(&event)), self));
            }
            if self.caught_up {
                let shutdown = self.shutdown.clone();
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = self.woken() => {}
                    () = tokio::time::sleep(REREAD_EVERY) => {}
                }
            }
            self.read().await;
        }
    }

    /// Read the events after the last one read into `pending`.
    async fn read(&mut self) {
        let read = self
            .store
            .events_after(
                &self.tenant,
                &self.adapter,
                &self.instance_id,
                self.last,
                EVENTS_PER_READ,
            )
            .await;
        match read {
            Ok(events) => {
                self.caught_up = events.len() < EVENTS_PER_READ as usize;
                if let Some(event) = events.last() {
                    self.last = event.seq;
                }
                self.pending.extend(events);
            }
            Err(error) => {
                // The stream stays open: the next re-read tries again.
                tracing::warn!(target: "airlock::serve", %error, tenant = %self.tenant,
                    adapter = %self.adapter, instance = %self.instance_id,
                    "could not read an instance's events");
                self.caught_up = true;
            }
        }
    }

    /// Until something may have been appended to this instance: a wake-up for it, or a
    /// sign that wake-ups were missed (a lagging receiver, `Wakeup::Missed`).
    async fn woken(&mut self) {
        let Follow {
            wakeups,
            tenant,
            adapter,
            instance_id,
            ..
        } = self;
        let Some(receiver) = wakeups else {
            return std::future::pending().await;
        };
        loop {
            match receiver.recv().await {
                Ok(Wakeup::Appended {
                    tenant: t,
                    adapter: a,
                    instance_id: i,
                }) if t == *tenant && a == *adapter && i == *instance_id => return,
                Ok(Wakeup::Appended { .. }) => {}
                Ok(Wakeup::Missed) | Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => break,
            }
        }
        *wakeups = None;
        std::future::pending().await
    }
}

/// A stored event as a server-sent event.
fn sse_event(event: &Event) -> SseEvent {
    // A field may not hold a line break; kinds are the service's own words, but a stream
    // must never panic on a row.
    let kind = event.kind.replace(['\r', '\n'], " ");
    SseEvent::default()
        .id(event.seq.to_string())
        .event(kind)
        .data(&event.data)
}

#[cfg(test)]
pub(crate) mod tests {
    //! The event stream over real HTTP, on SQLite (always) and PostgreSQL (when
    //! `AIRLOCK_TEST_POSTGRES_URL` is set): stored events first and in order, live ones
    //! promptly, an exact resume, 404 for what is not the caller's, and the end of every
    //! open stream when the service stops.

    use std::time::Duration;

    use airlock::storage::service::{InstanceRecord, ServiceStore};
    use airlock::{DatabaseUrl, Runtime, RuntimeConfig};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    use crate::Tenants;

    /// How long a test waits for what should come at once: a liveness bound, not a
    /// timing target.
    pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

    /// A PostgreSQL database of one test's own, dropped afterwards.
    pub(crate) struct TestDatabase {
        admin: String,
        name: String,
        pub(crate) url: String,
    }

    impl TestDatabase {
        /// A fresh database on `AIRLOCK_TEST_POSTGRES_URL`'s server; `None` (with a
        /// SKIPPED line) when it is unset, a failure under `CI=true`.
        pub(crate) fn create(test: &str) -> Option<TestDatabase> {
            const VAR: &str = "AIRLOCK_TEST_POSTGRES_URL";
            let Some(admin) = std::env::var(VAR).ok().filter(|url| !url.is_empty()) else {
                assert!(
                    std::env::var("CI").map_or(true, |v| v != "true"),
                    "{VAR} is not set, and CI=true: CI must provide a PostgreSQL server ({test} would be skipped)"
                );
                eprintln!("SKIPPED {test} on PostgreSQL: {VAR} is not set");
                return None;
            };
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let name = format!(
                "airlock_server_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            sql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
            sql(&admin, &format!("CREATE DATABASE {name}"));
            // The same server and parameters, another database.
            let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
            let (server, _) = base
                .rsplit_once('/')
                .unwrap_or_else(|| panic!("{VAR} has no database part: {admin}"));
            let url = if query.is_empty() {
                format!("{server}/{name}")
            } else {
                format!("{server}/{name}?{query}")
            };
            Some(TestDatabase { admin, name, url })
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            sql(
                &self.admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        }
    }

    /// Run one statement on `url`, on a thread and tokio runtime of its own (so it also
    /// works from `Drop` inside a test's runtime).
    fn sql(url: &str, statement: &str) {
        let (url, statement) = (url.to_owned(), statement.to_owned());
        std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
                tokio::spawn(connection);
                client
                    .batch_execute(&statement)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            })
        })
        .join()
        .unwrap();
    }

    /// `airlock serve` in this process on 127.0.0.1, with tenants `acme` and `globex`.
    pub(crate) struct TestService {
        /// `http://127.0.0.1:PORT`.
        pub(crate) url: String,
        pub(crate) store: std::sync::Arc<dyn ServiceStore>,
        /// `Bearer alk_…` of `acme`, and of `globex`.
        pub(crate) acme: String,
        pub(crate) globex: String,
        /// Cancelling it stops the service as SIGTERM would.
        pub(crate) shutdown: CancellationToken,
        pub(crate) server: JoinHandle<std::io::Result<()>>,
        pub(crate) client: reqwest::Client,
        _data_dir: tempfile::TempDir,
        // After the runtime's pool is gone would be better, but FORCE copes with both.
        _database: Option<TestDatabase>,
    }

    /// The backends the service's tests run on: SQLite always, PostgreSQL when there is a
    /// server.
    pub(crate) fn backends(test: &str) -> Vec<Option<TestDatabase>> {
        let mut backends = vec![None];
        if let Some(database) = TestDatabase::create(test) {
            backends.push(Some(database));
        }
        backends
    }

    impl TestService {
        /// Serve on SQLite in a temporary data directory, or on `database`.
        pub(crate) async fn start(database: Option<TestDatabase>) -> TestService {
            let data_dir = tempfile::tempdir().unwrap();
            let mut config = RuntimeConfig::with_data_dir(data_dir.path());
            config.pool_size = 2;
            config.cache_compiled = false;
            config.database = database
                .as_ref()
                .map(|db| DatabaseUrl::Postgres(db.url.clone()));
            let runtime = Runtime::new(config).unwrap();
            let store = runtime.service_store();
            let tenants = Tenants::new(store.clone());
            let acme = format!(
                "Bearer {}",
                tenants.create("acme", None).await.unwrap().reveal()
            );
            let globex = format!(
                "Bearer {}",
                tenants.create("globex", None).await.unwrap().reveal()
            );
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let shutdown = CancellationToken::new();
            let router = super::super::router_with_shutdown(runtime, shutdown.clone());
            let stop = shutdown.clone();
            let server = tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            });
            TestService {
                url,
                store,
                acme,
                globex,
                shutdown,
                server,
                client: reqwest::Client::new(),
                _data_dir: data_dir,
                _database: database,
            }
        }

        /// Record instance `id` of `tenant`'s adapter `adapter`.
        pub(crate) async fn instance(&self, tenant: &str, adapter: &str, id: &str) {
            self.store
                .instance_put(&InstanceRecord {
                    tenant: tenant.to_owned(),
                    adapter: adapter.to_owned(),
                    instance_id: id.to_owned(),
                    version: "1.0.0".to_owned(),
                    config: "{}".to_owned(),
                    status: None,
                    created_ms: 0,
                    destroyed_ms: None,
                })
                .await
                .unwrap();
        }

        /// Append an event to `acme`'s instance `id` of `dns`; its sequence number.
        pub(crate) async fn append(&self, id: &str, kind: &str, n: u32) -> i64 {
            let data = serde_json::json!({
                "callId": format!("call_{n:024x}"),
                "operation": "create",
                "current": n,
                "total": 100,
            });
            self.store
                .event_append("acme", "dns", id, kind, &data.to_string())
                .await
                .unwrap()
        }

        /// `GET path` with `key` and extra headers.
        pub(crate) async fn get(
            &self,
            path: &str,
            key: &str,
            headers: &[(&str, &str)],
        ) -> reqwest::Response {
            let mut request = self
                .client
                .get(format!("{}{path}", self.url))
                .header("authorization", key);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            tokio::time::timeout(PATIENCE, request.send())
                .await
                .expect("the service answers the request's head")
                .unwrap()
        }

        /// Stop the service; it must finish within [`PATIENCE`].
        pub(crate) async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(PATIENCE, self.server)
                .await
                .expect("the service stops while streams are open")
                .unwrap()
                .unwrap();
        }
    }

    /// One server-sent event as read off the wire.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Received {
        id: Option<String>,
        kind: Option<String>,
        data: String,
    }

    /// A `text/event-stream` body, read and parsed as it arrives.
    pub(crate) struct EventReader {
        response: reqwest::Response,
        buffer: String,
    }

    impl EventReader {
        fn new(response: reqwest::Response) -> EventReader {
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"].to_str().unwrap(),
                "text/event-stream"
            );
            EventReader {
                response,
                buffer: String::new(),
            }
        }

        /// The next event, or `None` when the body ends; fails after [`PATIENCE`].
        async fn next(&mut self) -> Option<Received> {
            tokio::time::timeout(PATIENCE, self.next_unbounded())
                .await
                .expect("an event (or the end of the stream) within the bound")
        }

        async fn next_unbounded(&mut self) -> Option<Received> {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut event = Received {
                        id: None,
                        kind: None,
                        data: String::new(),
                    };
                    let mut has_data = false;
                    for line in block.lines() {
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => event.id = Some(value.to_owned()),
                            "event" => event.kind = Some(value.to_owned()),
                            "data" => {
                                if has_data {
                                    event.data.push('\n');
                                }
                                event.data.push_str(value);
                                has_data = true;
                            }
                            _ => {}
                        }
                    }
                    if has_data {
                        return Some(event);
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.expect("reading the stream")?;
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        }

        /// The next event, which must be `seq` of `kind`.
        async fn expect(&mut self, seq: i64, kind: &str) {
            let event = self.next().await.expect("the stream is open");
            assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
            assert_eq!(event.kind.as_deref(), Some(kind));
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(data["operation"], "create", "{}", event.data);
        }
    }

    const EVENTS: &str = "/v1/adapters/dns/instances/i-1/events";

    async fn open(service: &TestService, headers: &[(&str, &str)]) -> EventReader {
        EventReader::new(service.get(EVENTS, &service.acme, headers).await)
    }

    #[tokio::test]
    async fn stored_events_come_first_in_order_then_live_ones() {
        for database in backends("stored_events_come_first_in_order_then_live_ones") {
            let service = TestService::start(database).await;
            service.instance("acme", "dns", "i-1").await;
            // Another instance's events are in the log too, and never in this stream.
            service.instance("acme", "dns", "i-2").await;
            let mut stored = Vec::new();
            for n in 0..5 {
                stored.push(service.append("i-1", "progress", n).await);
                service.append("i-2", "progress", n).await;
            }
            let mut events = open(&service, &[]).await;
            for seq in &stored {
                events.expect(*seq, "progress").await;
            }
            // Live: appended while the stream is open, after it caught up.
            for (n, kind) in [(5, "log"), (6, "status"), (7, "receipt")] {
                service.append("i-2", "progress", n).await;
                let seq = service.append("i-1", kind, n).await;
                events.expect(seq, kind).await;
            }
            service.stop().await;
        }
    }

    #[tokio::test]
    async fn last_event_id_resumes_exactly_after_it() {
        for database in backends("last_event_id_resumes_exactly_after_it") {
            let service = TestService::start(database).await;
            service.instance("acme", "dns", "i-1").await;
            let mut log = Vec::new();
            for n in 0..6 {
                log.push((service.append("i-1", "progress", n).await, "progress"));
            }
            // After the third: the fourth is next, none twice, none skipped, then live.
            let resume = log[2].0.to_string();
            let mut events = open(&service, &[("last-event-id", &resume)]).await;
            for (seq, kind) in &log[3..] {
                events.expect(*seq, kind).await;
            }
            log.push((service.append("i-1", "log", 6).await, "log"));
            events.expect(log[6].0, "log").await;
            drop(events);

            // `?after=` for clients that cannot set the header.
            let path = format!("{EVENTS}?after={}", log[4].0);
            let mut events = EventReader::new(service.get(&path, &service.acme, &[]).await);
            for (seq, kind) in &log[5..] {
                events.expect(*seq, kind).await;
            }
            // Both: the header wins (a reconnecting EventSource keeps its first URL).
            let path = format!("{EVENTS}?after=0");
            let resume = log[5].0.to_string();
            let mut events = EventReader::new(
                service
                    .get(&path, &service.acme, &[("last-event-id", &resume)])
                    .await,
            );
            events.expect(log[6].0, "log").await;
            // After the last: nothing stored, and the next live one.
            let resume = log[6].0.to_string();
            let mut latest = open(&service, &[("last-event-id", &resume)]).await;
            let live = service.append("i-1", "status", 7).await;
            latest.expect(live, "status").await;
            events.expect(live, "status").await;

            for bad in ["seven", "-1"] {
                let answer = service
                    .get(EVENTS, &service.acme, &[("last-event-id", bad)])
                    .await;
                assert_eq!(answer.status(), 400, "Last-Event-ID: {bad}");
            }
            let answer = service
                .get(&format!("{EVENTS}?after=x"), &service.acme, &[])
                .await;
            assert_eq!(answer.status(), 400);
            service.stop().await;
        }
    }

    #[tokio::test]
    async fn an_instance_not_the_callers_is_404() {
        for database in backends("an_instance_not_the_callers_is_404") {
            let service = TestService::start(database).await;
            service.instance("acme", "dns", "i-1").await;
            // globex asks for acme's instance; acme for one that does not exist, and for
            // its instance under another adapter's name.
            for (key, path) in [
                (&service.globex, EVENTS),
                (&service.acme, "/v1/adapters/dns/instances/i-9/events"),
                (&service.acme, "/v1/adapters/mail/instances/i-1/events"),
            ] {
                let answer = service.get(path, key, &[]).await;
                assert_eq!(answer.status(), 404, "{path}");
                assert_eq!(answer.headers()["airlock-error-source"], "airlock");
                let body: serde_json::Value = answer.json().await.unwrap();
                assert_eq!(body["error"]["code"], "not_found", "{body}");
            }
            let answer = service.get(EVENTS, "Bearer alk_nope", &[]).await;
            assert_eq!(answer.status(), 401);
            service.stop().await;
        }
    }

    #[tokio::test]
    async fn stopping_the_service_ends_open_streams() {
        for database in backends("stopping_the_service_ends_open_streams") {
            let service = TestService::start(database).await;
            service.instance("acme", "dns", "i-1").await;
            let first = service.append("i-1", "progress", 0).await;
            let mut streams = Vec::new();
            for _ in 0..3 {
                let mut events = open(&service, &[]).await;
                events.expect(first, "progress").await;
                streams.push(events);
            }
            service.shutdown.cancel();
            for mut events in streams {
                assert_eq!(events.next().await, None, "the body ends");
            }
            service.stop().await;
        }
    }

    #[tokio::test]
    async fn a_client_far_behind_gets_every_event_in_order() {
        // More than one read's worth: the rest comes from the following reads.
        let service = TestService::start(None).await;
        service.instance("acme", "dns", "i-1").await;
        let total = super::EVENTS_PER_READ as usize * 2 + 10;
        let mut seqs = Vec::with_capacity(total);
        for n in 0..total {
            seqs.push(service.append("i-1", "progress", n as u32).await);
        }
        let mut events = open(&service, &[]).await;
        for seq in seqs {
            events.expect(seq, "progress").await;
        }
        service.stop().await;
    }
}
