//! The behaviour every [`ServiceStore`] backend must have, as one suite each backend's
//! tests run, like `storage::suite`: `one` and `two` are two handles on the same database
//! (two nodes), `age` moves every stored time into the past.
//!
//! Every part checks tenant isolation on each method it covers: a second tenant naming the
//! first one's adapters, instances and calls sees nothing and changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;

use super::service::*;
use super::suite::Age;

/// How long a wake-up may take to arrive (PostgreSQL: through the server).
const WAKEUP_WAIT: Duration = Duration::from_secs(10);

/// Run the whole suite. Each part uses tenants of its own, so the parts do not see each
/// other, and a database reused between runs would start each from nothing. `database` is
/// how the backend names itself, which every failure starts with.
pub(crate) async fn run(
    one: &dyn ServiceStore,
    two: &dyn ServiceStore,
    database: &str,
    age: Age<'_>,
) {
    let run_id = super::suite::run_id();
    let tenant = |part: &str| format!("svc-{run_id}-{part}");
    tenants(one, two, &tenant("tenants"), database).await;
    versions(one, two, &tenant("versions")).await;
    instances(one, two, &tenant("instances")).await;
    events(one, two, &tenant("events")).await;
    event_races(one, two, &tenant("event-races")).await;
    wakeups(one, two, &tenant("wakeups")).await;
    calls(one, two, &tenant("calls"), age).await;
    finished_calls(one, two, &tenant("finished")).await;
    active_versions(one, two, &tenant("active")).await;
    purge(one, two, &tenant("purge"), age).await;
}

/// The tenant whose rows `tenant`'s must never be mixed with.
fn other(tenant: &str) -> String {
    format!("{tenant}-other")
}

async fn tenants(one: &dyn ServiceStore, two: &dyn ServiceStore, prefix: &str, database: &str) {
    let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
    // Created out of order: the listing is by name.
    assert!(
        one.tenant_create(&b, "key-b", Some("[limits]"))
            .await
            .unwrap()
    );
    assert!(one.tenant_create(&a, "key-a", None).await.unwrap());
    // A name is created once, from either node; the first tenant keeps its key.
    assert!(!two.tenant_create(&a, "key-x", None).await.unwrap());
    let stored = two.tenant(&a).await.unwrap().unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.ceiling.as_deref()),
        (a.as_str(), None)
    );
    assert!(stored.created_ms > 0);
    assert_eq!(stored.key_set_ms, stored.created_ms);
    let listed: Vec<(String, Option<String>)> = two
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.name.starts_with(prefix))
        .map(|t| (t.name, t.ceiling))
        .collect();
    assert_eq!(
        listed,
        vec![(a.clone(), None), (b.clone(), Some("[limits]".to_owned()))]
    );
    // By key: the tenant and the stored hash, for the caller's constant-time comparison.
    assert_eq!(
        two.tenant_by_key("key-a").await.unwrap(),
        Some((stored.clone(), "key-a".to_owned()))
    );
    assert_eq!(two.tenant_by_key("key-x").await.unwrap(), None);
    // Two tenants never share a key hash: refused, in an error naming the database.
    let error = two
        .tenant_create(&other(prefix), "key-a", None)
        .await
        .unwrap_err();
    assert!(error.0.starts_with(&format!("{database}: ")), "{error}");
    assert_eq!(one.tenant(&other(prefix)).await.unwrap(), None);
    // A rotated key: the old hash finds no one.
    assert!(one.tenant_set_key(&a, "key-a2").await.unwrap());
    assert_eq!(two.tenant_by_key("key-a").await.unwrap(), None);
    let (rotated, hash) = two.tenant_by_key("key-a2").await.unwrap().unwrap();
    assert_eq!(
        (rotated.name.as_str(), hash.as_str()),
        (a.as_str(), "key-a2")
    );
    assert_eq!(rotated.created_ms, stored.created_ms);
    assert!(rotated.key_set_ms >= stored.key_set_ms);
    // The ceiling is set and cleared; the other tenant's is untouched.
    assert!(one.tenant_set_ceiling(&a, Some("[http]")).await.unwrap());
    assert_eq!(
        two.tenant(&a).await.unwrap().unwrap().ceiling.as_deref(),
        Some("[http]")
    );
    assert!(two.tenant_set_ceiling(&a, None).await.unwrap());
    assert_eq!(one.tenant(&a).await.unwrap().unwrap().ceiling, None);
    assert_eq!(
        one.tenant(&b).await.unwrap().unwrap().ceiling.as_deref(),
        Some("[limits]")
    );
    // No such tenant.
    let nobody = format!("{prefix}-nobody");
    assert_eq!(one.tenant(&nobody).await.unwrap(), None);
    assert!(!one.tenant_set_key(&nobody, "key-n").await.unwrap());
    assert!(!one.tenant_set_ceiling(&nobody, None).await.unwrap());
    assert_eq!(one.tenant_by_key("key-n").await.unwrap(), None);
}

fn new_version(tenant: &str, adapter: &str, version: &str, component: &[u8]) -> NewVersion {
    NewVersion {
        tenant: tenant.into(),
        adapter: adapter.into(),
        version: version.into(),
        sha256: hex::encode(Sha256::digest(component)),
        component: component.to_vec(),
        policy: format!("# policy of {adapter} {version}"),
        recording: (version == "1.0").then(|| "{\"calls\":[]}".to_owned()),
        admission: "{\"passed\":true}".into(),
        admitted: version != "2.0",
    }
}

/// An adapter's version labels, oldest first, and its active one.
async fn labels(
    store: &dyn ServiceStore,
    tenant: &str,
    adapter: &str,
) -> (Vec<String>, Option<String>) {
    let entry = store.adapter(tenant, adapter).await.unwrap().unwrap();
    let versions = entry.versions.into_iter().map(|v| v.version).collect();
    (versions, entry.active)
}

async fn versions(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str) {
    let u = &other(t);
    let first = new_version(t, "a", "1.0", b"component one");
    assert_eq!(one.version_put(&first).await.unwrap(), PutVersion::Created);
    // The same bytes again (another node replaying the upload): nothing changes.
    assert_eq!(two.version_put(&first).await.unwrap(), PutVersion::Same);
    // Other bytes under the same label: refused, naming the stored digest.
    let clash = new_version(t, "a", "1.0", b"component two");
    assert_eq!(
        two.version_put(&clash).await.unwrap(),
        PutVersion::Conflict {
            sha256: first.sha256.clone()
        }
    );
    let (info, bytes) = two.version_get(t, "a", "1.0").await.unwrap().unwrap();
    assert_eq!(bytes, first.component);
    assert_eq!(
        (
            info.sha256.as_str(),
            info.size,
            info.policy.as_str(),
            info.has_recording,
            info.admission.as_str(),
            info.admitted
        ),
        (
            first.sha256.as_str(),
            first.component.len() as u64,
            first.policy.as_str(),
            true,
            first.admission.as_str(),
            true
        )
    );
    assert!(info.created_ms > 0);
    assert_eq!(one.version_get(t, "a", "9.9").await.unwrap(), None);

    let second = new_version(t, "a", "2.0", b"component two, longer");
    let other_adapter = new_version(t, "b", "0.1", b"b");
    assert_eq!(two.version_put(&second).await.unwrap(), PutVersion::Created);
    assert_eq!(
        one.version_put(&other_adapter).await.unwrap(),
        PutVersion::Created
    );
    // Oldest first, with their sizes; no version active until one is chosen.
    let entry = one.adapter(t, "a").await.unwrap().unwrap();
    assert_eq!(entry.active, None);
    let sizes: Vec<(&str, u64, bool, bool)> = entry
        .versions
        .iter()
        .map(|v| (v.version.as_str(), v.size, v.has_recording, v.admitted))
        .collect();
    assert_eq!(
        sizes,
        vec![("1.0", 13, true, true), ("2.0", 21, false, false)]
    );
    assert_eq!(entry.versions[0], info);
    // Activation needs a version of that adapter.
    assert!(!one.set_active(t, "a", "9.9").await.unwrap());
    assert!(!one.set_active(t, "b", "1.0").await.unwrap());
    assert!(one.set_active(t, "a", "2.0").await.unwrap());
    assert!(two.set_active(t, "a", "1.0").await.unwrap());
    assert_eq!(
        labels(one, t, "a").await,
        (vec!["1.0".into(), "2.0".into()], Some("1.0".into()))
    );
    let all = two.adapters(t).await.unwrap();
    let names: Vec<(&str, Option<&str>, usize)> = all
        .iter()
        .map(|e| (e.adapter.as_str(), e.active.as_deref(), e.versions.len()))
        .collect();
    assert_eq!(names, vec![("a", Some("1.0"), 2), ("b", None, 1)]);
    let t_bytes = (first.component.len() + second.component.len() + 1) as u64;
    assert_eq!(one.stored_bytes(t).await.unwrap(), t_bytes);

    // Another tenant sees none of it and changes none of it.
    assert_eq!(two.version_get(u, "a", "1.0").await.unwrap(), None);
    assert_eq!(two.adapter(u, "a").await.unwrap(), None);
    assert!(two.adapters(u).await.unwrap().is_empty());
    assert!(!two.set_active(u, "a", "2.0").await.unwrap());
    assert_eq!(two.stored_bytes(u).await.unwrap(), 0);
    // Its own version under the same names is its own.
    let theirs = new_version(u, "a", "1.0", b"their component");
    assert_eq!(two.version_put(&theirs).await.unwrap(), PutVersion::Created);
    assert!(two.set_active(u, "a", "1.0").await.unwrap());
    assert_eq!(
        one.version_get(t, "a", "1.0").await.unwrap().unwrap().1,
        first.component
    );
    assert_eq!(
        labels(two, t, "a").await,
        (vec!["1.0".into(), "2.0".into()], Some("1.0".into()))
    );
    assert_eq!(one.stored_bytes(t).await.unwrap(), t_bytes);
    assert_eq!(
        one.stored_bytes(u).await.unwrap(),
        theirs.component.len() as u64
    );
}

fn instance(tenant: &str, adapter: &str, id: &str, status: Option<&str>) -> InstanceRecord {
    InstanceRecord {
        tenant: tenant.into(),
        adapter: adapter.into(),
        instance_id: id.into(),
        version: "1.0".into(),
        config: format!("{{\"name\":\"{id}\"}}"),
        status: status.map(str::to_owned),
        created_ms: 0,
        destroyed_ms: None,
    }
}

/// Every instance `filter` lists, page by page of `page` rows, checking each page's size.
async fn all_pages(
    store: &dyn ServiceStore,
    tenant: &str,
    filter: &InstanceFilter,
    page: u32,
) -> Vec<(String, String)> {
    let mut filter = InstanceFilter {
        limit: page,
        after: None,
        ..filter.clone()
    };
    let mut listed = Vec::new();
    loop {
        let rows = store.instances(tenant, &filter).await.unwrap();
        assert!(rows.len() <= page as usize, "{rows:?}");
        let Some(last) = rows.last() else {
            return listed;
        };
        filter.after = Some((last.adapter.clone(), last.instance_id.clone()));
        listed.extend(rows.into_iter().map(|i| (i.adapter, i.instance_id)));
    }
}

async fn instances(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str) {
    let u = &other(t);
    one.instance_put(&instance(t, "a", "i-1", Some("PENDING")))
        .await
        .unwrap();
    // A replayed create keeps the first record.
    let replay = InstanceRecord {
        config: "{\"replayed\":true}".into(),
        version: "2.0".into(),
        ..instance(t, "a", "i-1", None)
    };
    two.instance_put(&replay).await.unwrap();
    let stored = two.instance(t, "a", "i-1").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.version.as_str(),
            stored.config.as_str(),
            stored.status.as_deref()
        ),
        ("1.0", "{\"name\":\"i-1\"}", Some("PENDING"))
    );
    assert!(stored.created_ms > 0);
    assert_eq!(stored.destroyed_ms, None);
    assert!(
        two.instance_set_status(t, "a", "i-1", "RUNNING")
            .await
            .unwrap()
    );
    assert_eq!(
        one.instance(t, "a", "i-1")
            .await
            .unwrap()
            .unwrap()
            .status
            .as_deref(),
        Some("RUNNING")
    );
    assert!(
        !one.instance_set_status(t, "a", "i-9", "RUNNING")
            .await
            .unwrap()
    );
    assert_eq!(one.instance(t, "b", "i-1").await.unwrap(), None);

    // Another tenant naming the instance sees nothing and changes nothing.
    assert_eq!(two.instance(u, "a", "i-1").await.unwrap(), None);
    assert!(
        !two.instance_set_status(u, "a", "i-1", "FAILED")
            .await
            .unwrap()
    );
    assert!(!two.instance_destroyed(u, "a", "i-1").await.unwrap());
    assert!(
        two.instances(
            u,
            &InstanceFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty()
    );
    let untouched = one.instance(t, "a", "i-1").await.unwrap().unwrap();
    assert_eq!(
        (untouched.status.as_deref(), untouched.destroyed_ms),
        (Some("RUNNING"), None)
    );
    // Its own instance of the same id is its own.
    two.instance_put(&instance(u, "a", "i-1", Some("FAILED")))
        .await
        .unwrap();
    assert_eq!(
        one.instance(t, "a", "i-1")
            .await
            .unwrap()
            .unwrap()
            .status
            .as_deref(),
        Some("RUNNING")
    );

    // Destroyed: recorded the first time only.
    assert!(one.instance_destroyed(t, "a", "i-1").await.unwrap());
    let destroyed = two
        .instance(t, "a", "i-1")
        .await
        .unwrap()
        .unwrap()
        .destroyed_ms;
    assert!(destroyed.is_some_and(|at| at >= stored.created_ms));
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(two.instance_destroyed(t, "a", "i-1").await.unwrap());
    assert_eq!(
        one.instance(t, "a", "i-1")
            .await
            .unwrap()
            .unwrap()
            .destroyed_ms,
        destroyed
    );
    assert!(!two.instance_destroyed(t, "a", "i-9").await.unwrap());
    assert_eq!(
        two.instance(u, "a", "i-1")
            .await
            .unwrap()
            .unwrap()
            .destroyed_ms,
        None
    );

    // Listing: by (adapter, instance id), filtered, paged without a row twice or missing.
    let mut expected = vec![("a".to_owned(), "i-1".to_owned())];
    for (n, adapter) in ["b", "a", "c", "b", "a", "b", "a"].iter().enumerate() {
        let id = format!("i-{}", n + 2);
        let status = if n % 2 == 0 { "RUNNING" } else { "SUCCESS" };
        let store = if n % 2 == 0 { one } else { two };
        store
            .instance_put(&instance(t, adapter, &id, Some(status)))
            .await
            .unwrap();
        expected.push((adapter.to_string(), id));
    }
    expected.sort();
    let everything = InstanceFilter::default();
    for page in [1, 3, 8, 100] {
        assert_eq!(
            all_pages(two, t, &everything, page).await,
            expected,
            "page {page}"
        );
    }
    let first_three = one
        .instances(
            t,
            &InstanceFilter {
                limit: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first_three[0],
        one.instance(t, "a", "i-1").await.unwrap().unwrap()
    );
    assert!(
        one.instances(t, &everything).await.unwrap().is_empty(),
        "limit 0"
    );
    let of_b = InstanceFilter {
        adapter: Some("b".into()),
        ..Default::default()
    };
    let expected_b: Vec<_> = expected.iter().filter(|(a, _)| a == "b").cloned().collect();
    assert_eq!(all_pages(one, t, &of_b, 2).await, expected_b);
    let running_b = InstanceFilter {
        status: Some("RUNNING".into()),
        ..of_b.clone()
    };
    let listed = one
        .instances(
            t,
            &InstanceFilter {
                limit: 100,
                ..running_b
            },
        )
        .await
        .unwrap();
    assert!(!listed.is_empty());
    assert!(
        listed
            .iter()
            .all(|i| i.adapter == "b" && i.status.as_deref() == Some("RUNNING") && i.tenant == *t)
    );
    let succeeded = InstanceFilter {
        status: Some("SUCCESS".into()),
        ..Default::default()
    };
    let listed = all_pages(two, t, &succeeded, 2).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    // The other tenant's listing holds only its own.
    assert_eq!(
        all_pages(one, u, &everything, 5).await,
        vec![("a".to_owned(), "i-1".to_owned())]
    );
}

async fn events(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str) {
    let u = &other(t);
    let mut seqs = Vec::new();
    for n in 0..6 {
        let store = if n % 2 == 0 { one } else { two };
        seqs.push(
            store
                .event_append(t, "a", "i-1", "progress", &format!("{{\"n\":{n}}}"))
                .await
                .unwrap(),
        );
        // Another instance's events, between them, are not in this one's log.
        store
            .event_append(t, "a", "i-2", "log", "{}")
            .await
            .unwrap();
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let log = two.events_after(t, "a", "i-1", 0, 100).await.unwrap();
    let got: Vec<(i64, &str, &str)> = log
        .iter()
        .map(|e| (e.seq, e.kind.as_str(), e.data.as_str()))
        .collect();
    let want: Vec<(i64, &str, String)> = seqs
        .iter()
        .enumerate()
        .map(|(n, seq)| (*seq, "progress", format!("{{\"n\":{n}}}")))
        .collect();
    assert_eq!(
        got,
        want.iter()
            .map(|(s, k, d)| (*s, *k, d.as_str()))
            .collect::<Vec<_>>()
    );
    assert!(log.iter().all(|e| e.at_ms > 0));
    // Resuming after any number gives exactly what follows it; the limit is honoured.
    let after: Vec<i64> = one
        .events_after(t, "a", "i-1", seqs[2], 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(after, seqs[3..]);
    let limited: Vec<i64> = one
        .events_after(t, "a", "i-1", seqs[0], 2)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(limited, seqs[1..3]);
    assert!(
        one.events_after(t, "a", "i-1", seqs[5], 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        one.events_after(t, "a", "i-2", 0, 100).await.unwrap().len(),
        6
    );
    // Another tenant naming the instance reads nothing; its appends are its own.
    assert!(
        two.events_after(u, "a", "i-1", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let theirs = two.event_append(u, "a", "i-1", "log", "{}").await.unwrap();
    assert!(theirs > seqs[5]);
    assert_eq!(
        one.events_after(t, "a", "i-1", seqs[5], 100).await.unwrap(),
        vec![]
    );
    assert_eq!(
        one.events_after(u, "a", "i-1", 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![theirs]
    );
}

/// Two nodes appending to one instance while a reader follows it, resuming each time after
/// the last number it saw: the reader ends with every event, none twice (a number that
/// became visible before a smaller one would be skipped for good).
async fn event_races(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str) {
    const EACH: usize = 25;
    let finished = AtomicUsize::new(0);
    let append = |store: &'static str| {
        let (store, finished) = (if store == "one" { one } else { two }, &finished);
        async move {
            for n in 0..EACH {
                store
                    .event_append(t, "a", "i-race", "log", &format!("{{\"n\":{n}}}"))
                    .await
                    .unwrap();
            }
            finished.fetch_add(1, Ordering::SeqCst);
        }
    };
    let follow = async {
        let (mut seen, mut after) = (Vec::new(), 0);
        loop {
            // Read after looking: a last read that finds nothing then has seen them all.
            let appenders_done = finished.load(Ordering::SeqCst) == 2;
            let page = two.events_after(t, "a", "i-race", after, 7).await.unwrap();
            if let Some(last) = page.last() {
                after = last.seq;
            } else if appenders_done {
                return seen;
            }
            seen.extend(page.iter().map(|e| e.seq));
            tokio::task::yield_now().await;
        }
    };
    let ((), (), seen) = tokio::join!(append("one"), append("two"), follow);
    let all: Vec<i64> = one
        .events_after(t, "a", "i-race", 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(all.len(), 2 * EACH);
    assert_eq!(seen, all);
}

/// The next wake-up, or a panic after [`WAKEUP_WAIT`].
pub(crate) async fn next_wakeup(receiver: &mut tokio::sync::broadcast::Receiver<Wakeup>) -> Wakeup {
    match tokio::time::timeout(WAKEUP_WAIT, receiver.recv()).await {
        Ok(Ok(wakeup)) => wakeup,
        Ok(Err(RecvError::Lagged(_))) => Wakeup::Missed,
        Ok(Err(RecvError::Closed)) => panic!("the wake-up channel closed"),
        Err(_) => panic!("no wake-up within {WAKEUP_WAIT:?}"),
    }
}

async fn wakeups(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str) {
    // A receiver on node two hears an append made through node one (on SQLite, two
    // handles on one file in one process share the channel). A `Missed` first means the
    // listener had just started listening: the append may have been before it, so append
    // again, as a stream would re-read.
    let mut receiver = two.event_wakeups();
    let appended = Wakeup::Appended {
        tenant: t.to_owned(),
        adapter: "a".to_owned(),
        instance_id: "i-\"1\"/ü".to_owned(),
    };
    let mut heard = None;
    for _ in 0..3 {
        one.event_append(t, "a", "i-\"1\"/ü", "status", "{}")
            .await
            .unwrap();
        match next_wakeup(&mut receiver).await {
            Wakeup::Missed => continue,
            wakeup => {
                heard = Some(wakeup);
                break;
            }
        }
    }
    assert_eq!(heard, Some(appended.clone()));
    // And the other way round, to a receiver of node one's.
    let mut receiver = one.event_wakeups();
    let mut heard = None;
    for _ in 0..3 {
        two.event_append(t, "a", "i-\"1\"/ü", "status", "{}")
            .await
            .unwrap();
        match next_wakeup(&mut receiver).await {
            Wakeup::Missed => continue,
            wakeup => {
                heard = Some(wakeup);
                break;
            }
        }
    }
    assert_eq!(heard, Some(appended));
}

fn call_record(tenant: &str, id: &str) -> CallRecord {
    CallRecord {
        call_id: id.into(),
        tenant: tenant.into(),
        adapter: "a".into(),
        operation: "create".into(),
        receipt: format!("{{\"call\":\"{id}\"}}"),
        logs: "[]".into(),
        at_ms: 0,
    }
}

/// A call's record without its time (which the backend's clock sets).
async fn call_without_time(store: &dyn ServiceStore, tenant: &str, id: &str) -> Option<CallRecord> {
    let mut found = store.call(tenant, id).await.unwrap()?;
    assert!(found.at_ms > 0);
    found.at_ms = 0;
    Some(found)
}

async fn calls(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str, age: Age<'_>) {
    let u = &other(t);
    let window = Duration::from_secs(60);
    one.call_put(&call_record(t, "c-1"), window).await.unwrap();
    one.call_put(&call_record(t, "c-long"), window * 10)
        .await
        .unwrap();
    assert_eq!(
        call_without_time(two, t, "c-1").await,
        Some(call_record(t, "c-1"))
    );
    assert_eq!(two.call(t, "c-9").await.unwrap(), None);
    // Another tenant's call id is not this tenant's, and its own record does not replace it.
    assert_eq!(two.call(u, "c-1").await.unwrap(), None);
    let theirs = CallRecord {
        operation: "destroy".into(),
        ..call_record(u, "c-1")
    };
    two.call_put(&theirs, window).await.unwrap();
    assert_eq!(call_without_time(one, u, "c-1").await, Some(theirs));
    assert_eq!(
        call_without_time(one, t, "c-1").await,
        Some(call_record(t, "c-1"))
    );
    // Expired: gone for readers even before a purge.
    age(window + Duration::from_secs(1)).await;
    assert_eq!(one.call(t, "c-1").await.unwrap(), None);
    assert_eq!(two.call(u, "c-1").await.unwrap(), None);
    assert_eq!(
        call_without_time(two, t, "c-long").await,
        Some(call_record(t, "c-long"))
    );
}

/// A finished call of `tenant`'s adapter `a` with `events` (stream, kind) in order.
fn finished(tenant: &str, id: &str, status: Option<&str>, events: &[(&str, &str)]) -> FinishedCall {
    FinishedCall {
        record: call_record(tenant, id),
        window: Duration::from_secs(60),
        status: status.map(|status| StatusSeen {
            instance_id: "i-1".into(),
            status: status.into(),
            data: format!("{{\"call\":\"{id}\",\"status\":\"{status}\"}}"),
        }),
        events: events
            .iter()
            .map(|(stream, kind)| NewEvent {
                stream: (*stream).into(),
                kind: (*kind).into(),
                data: format!("{{\"call\":\"{id}\"}}"),
            })
            .collect(),
    }
}

/// The (kind, data) of a stream's events, checking their numbers increase.
async fn kinds(store: &dyn ServiceStore, tenant: &str, stream: &str) -> Vec<(String, String)> {
    let events = store
        .events_after(tenant, "a", stream, 0, 100)
        .await
        .unwrap();
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "{events:?}");
    events.into_iter().map(|e| (e.kind, e.data)).collect()
}

async fn finished_calls(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str) {
    let u = &other(t);
    one.instance_put(&instance(t, "a", "i-1", None))
        .await
        .unwrap();
    one.instance_put(&instance(u, "a", "i-1", None))
        .await
        .unwrap();
    // Written before the batch, live: the batch's events come after it.
    let before = one
        .event_append(t, "a", "i-1", "progress", "{}")
        .await
        .unwrap();
    let mut wakeups = two.event_wakeups();
    // Nothing to write is not an error.
    one.calls_finished(&[]).await.unwrap();
    let batch = [
        finished(
            t,
            "f-1",
            Some("RUNNING"),
            &[("i-1", "log"), ("i-1", "receipt")],
        ),
        // The same status again: no `status` event.
        finished(t, "f-2", Some("RUNNING"), &[("i-1", "receipt")]),
        finished(
            t,
            "f-3",
            None,
            &[
                ("create:k", "log"),
                ("create:k", "receipt"),
                ("i-1", "receipt"),
            ],
        ),
        // Another tenant's call, same instance id and call id: its rows only.
        finished(u, "f-1", Some("FAILED"), &[("i-1", "receipt")]),
    ];
    one.calls_finished(&batch).await.unwrap();
    let call = |id: &str| format!("{{\"call\":\"{id}\"}}");
    let status = |id: &str, s: &str| format!("{{\"call\":\"{id}\",\"status\":\"{s}\"}}");
    let events = two.events_after(t, "a", "i-1", 0, 100).await.unwrap();
    assert_eq!(events.first().map(|e| e.seq), Some(before));
    let kind = |k: &str, d: String| (k.to_owned(), d);
    assert_eq!(
        kinds(two, t, "i-1").await[1..].to_vec(),
        vec![
            kind("status", status("f-1", "RUNNING")),
            kind("log", call("f-1")),
            kind("receipt", call("f-1")),
            kind("receipt", call("f-2")),
            kind("receipt", call("f-3")),
        ]
    );
    assert_eq!(
        kinds(two, t, "create:k").await,
        vec![kind("log", call("f-3")), kind("receipt", call("f-3"))]
    );
    assert_eq!(
        kinds(two, u, "i-1").await,
        vec![
            kind("status", status("f-1", "FAILED")),
            kind("receipt", call("f-1"))
        ]
    );
    let status_of = |tenant: &str| {
        let tenant = tenant.to_owned();
        async move {
            two.instance(&tenant, "a", "i-1")
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    assert_eq!(status_of(t).await.as_deref(), Some("RUNNING"));
    assert_eq!(status_of(u).await.as_deref(), Some("FAILED"));
    for id in ["f-1", "f-2", "f-3"] {
        assert_eq!(
            call_without_time(two, t, id).await,
            Some(call_record(t, id))
        );
    }
    assert_eq!(
        call_without_time(one, u, "f-1").await,
        Some(call_record(u, "f-1"))
    );
    // The appends woke their streams (on the other node too).
    loop {
        match next_wakeup(&mut wakeups).await {
            Wakeup::Appended {
                tenant,
                instance_id,
                ..
            } if tenant == *t && instance_id == "create:k" => break,
            _ => continue,
        }
    }
    // A later batch's events come after the earlier one's, from either node.
    two.calls_finished(&[finished(t, "f-4", Some("SUCCESS"), &[("i-1", "receipt")])])
        .await
        .unwrap();
    let last: Vec<(String, String)> = kinds(one, t, "i-1").await.split_off(6);
    assert_eq!(
        last,
        vec![
            kind("status", status("f-4", "SUCCESS")),
            kind("receipt", call("f-4"))
        ]
    );
}

async fn active_versions(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str) {
    let u = &other(t);
    assert_eq!(
        one.active_version(t, "a").await.unwrap(),
        ActiveVersion::NoAdapter
    );
    let first = new_version(t, "a", "1.0", b"active one");
    let second = new_version(t, "a", "2.0", b"active two");
    one.version_put(&first).await.unwrap();
    one.version_put(&second).await.unwrap();
    assert_eq!(
        two.active_version(t, "a").await.unwrap(),
        ActiveVersion::NoneChosen
    );
    assert!(one.set_active(t, "a", "2.0").await.unwrap());
    assert_eq!(
        two.active_version(t, "a").await.unwrap(),
        ActiveVersion::Active {
            version: "2.0".into(),
            sha256: second.sha256.clone()
        }
    );
    assert!(two.set_active(t, "a", "1.0").await.unwrap());
    assert_eq!(
        one.active_version(t, "a").await.unwrap(),
        ActiveVersion::Active {
            version: "1.0".into(),
            sha256: first.sha256.clone()
        }
    );
    // Another tenant naming the adapter has none.
    assert_eq!(
        one.active_version(u, "a").await.unwrap(),
        ActiveVersion::NoAdapter
    );
}

async fn purge(one: &dyn ServiceStore, two: &dyn ServiceStore, t: &str, age: Age<'_>) {
    let keep_events = Duration::from_secs(3600);
    let batch = 3;
    for n in 0..5 {
        one.event_append(t, "a", "i-1", "log", "{}").await.unwrap();
        two.call_put(
            &call_record(t, &format!("old-{n}")),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
    age(keep_events + Duration::from_secs(1)).await;
    let fresh = one.event_append(t, "a", "i-1", "log", "{}").await.unwrap();
    two.call_put(&call_record(t, "fresh"), Duration::from_secs(60))
        .await
        .unwrap();
    // At least `batch` old events and expired calls wait (earlier parts' too): a full
    // batch of each, then the rest batch by batch.
    assert_eq!(
        one.purge_service(keep_events, batch).await.unwrap(),
        u64::from(2 * batch)
    );
    let mut total = u64::from(2 * batch);
    loop {
        let purged = two.purge_service(keep_events, batch).await.unwrap();
        assert!(purged <= u64::from(2 * batch));
        if purged == 0 {
            break;
        }
        total += purged;
    }
    assert!(total >= 10, "{total}");
    let left: Vec<i64> = one
        .events_after(t, "a", "i-1", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, vec![fresh]);
    assert!(one.call(t, "fresh").await.unwrap().is_some());
    // The fresh rows are not purged by a later pass.
    assert_eq!(one.purge_service(keep_events, batch).await.unwrap(), 0);
}
