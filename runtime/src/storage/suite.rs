//! The behaviour every [`Storage`] backend must have, as one suite each backend's tests
//! run: `one` and `two` are two handles on the same database (two processes, or two
//! nodes), `age` moves every stored time into the past, as if that much time went by.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::*;

/// Moves every stored time of the database `by` into the past.
pub(crate) type Age<'a> = &'a (dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Sync);

fn request(scope: &Scope, key: &str, owner: &Owner) -> ClaimRequest {
    ClaimRequest {
        scope: scope.clone(),
        key: key.into(),
        input_hash: "hash".into(),
        owner: owner.clone(),
        lease: Duration::from_secs(60),
        window: Duration::from_secs(3600),
        take_over: None,
    }
}

fn won(claim: Claim) -> Lease {
    match claim {
        Claim::Won(lease) => lease,
        other => panic!("expected to win the claim, got {other:?}"),
    }
}

/// This run's part of every tenant name: a database reused between runs (PostgreSQL)
/// holds no rows of this run's tenants.
pub(crate) fn run_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Run the whole suite. Each part uses its own tenant, so the parts do not see each other
/// and a database reused between runs (PostgreSQL) starts each from nothing.
pub(crate) async fn run(one: &dyn Storage, two: &dyn Storage, age: Age<'_>) {
    let run_id = run_id();
    let tenant = |part: &str| format!("suite-{run_id}-{part}");
    state(one, two, &tenant("state"), age).await;
    namespaces(one, two, &tenant("ns")).await;
    claims(one, two, &tenant("claims"), age).await;
    destroy_records(one, two, &tenant("destroyed"), age).await;
    purge(one, &tenant("purge"), age).await;
    races(one, two, &tenant("races")).await;
}

/// Drive `futures` at once (interleaved on this task) and collect their outputs in order.
async fn all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// Two nodes racing: one claim wins a key, and a quota holds however the writes interleave.
async fn races(one: &dyn Storage, two: &dyn Storage, tenant: &str) {
    let scope = Scope::new(tenant, "a");
    let node = |i: usize| if i.is_multiple_of(2) { one } else { two };
    let owners: Vec<Owner> = (0..16)
        .map(|i| Owner::this_call(&format!("node-{}", i % 2)))
        .collect();
    let claims = all(owners
        .iter()
        .enumerate()
        .map(|(i, owner)| {
            let request = request(&scope, "contested", owner);
            Box::pin(async move { node(i).claim(&request).await.unwrap() }) as Pin<Box<_>>
        })
        .collect())
    .await;
    let winners = claims.iter().filter(|c| matches!(c, Claim::Won(_))).count();
    let busy = claims
        .iter()
        .filter(|c| matches!(c, Claim::Busy { epoch: 1, .. }))
        .count();
    assert_eq!((winners, busy), (1, 15), "{claims:?}");
    // All of them seeing the holder dead at once: one takes it over, the rest find the
    // claim moved on to the next epoch.
    let takers = all(owners
        .iter()
        .enumerate()
        .map(|(i, owner)| {
            let request = ClaimRequest {
                take_over: Some(1),
                ..request(&scope, "contested", owner)
            };
            Box::pin(async move { node(i).claim(&request).await.unwrap() }) as Pin<Box<_>>
        })
        .collect())
    .await;
    let resumed = takers
        .iter()
        .filter(|c| matches!(c, Claim::Won(lease) if lease.epoch == 2 && lease.resumed))
        .count();
    let busy = takers
        .iter()
        .filter(|c| matches!(c, Claim::Busy { epoch: 2, .. }))
        .count();
    assert_eq!((resumed, busy), (1, 15), "{takers:?}");

    // 16 new keys at once against a quota of 5: exactly 5 are written, whichever they are.
    let writes = all((0..16)
        .map(|i| {
            let scope = scope.clone();
            Box::pin(async move {
                node(i)
                    .state_set(&scope, &format!("k{i}"), b"x", None, 5)
                    .await
                    .unwrap()
            }) as Pin<Box<_>>
        })
        .collect())
    .await;
    assert_eq!(writes.iter().filter(|written| **written).count(), 5);
    let inserts = all((0..16)
        .map(|i| {
            let scope = Scope::new(tenant, "b");
            Box::pin(async move {
                node(i)
                    .state_insert_new(&scope, &format!("k{}", i % 8), b"x", None, 5)
                    .await
                    .unwrap()
            }) as Pin<Box<_>>
        })
        .collect())
    .await;
    // Eight keys, each tried twice: 5 inserted once, their second tries found them live,
    // and the other three keys were over the quota both times.
    let count = |want: Option<bool>| inserts.iter().filter(|got| **got == want).count();
    assert_eq!(
        (count(Some(true)), count(Some(false)), count(None)),
        (5, 5, 6),
        "{inserts:?}"
    );
}

async fn state(one: &dyn Storage, two: &dyn Storage, tenant: &str, age: Age<'_>) {
    let a = Scope::new(tenant, "adapter-a");
    assert_eq!(one.state_get(&a, "k").await.unwrap(), None);
    assert!(one.state_set(&a, "k", b"v1", None, 2).await.unwrap());
    // The other handle sees the write; other namespaces and other tenants do not.
    assert_eq!(two.state_get(&a, "k").await.unwrap(), Some(b"v1".to_vec()));
    assert_eq!(
        two.state_get(&Scope::new(tenant, "adapter-b"), "k")
            .await
            .unwrap(),
        None
    );
    let other_tenant = Scope::new(format!("{tenant}-other"), "adapter-a");
    assert_eq!(two.state_get(&other_tenant, "k").await.unwrap(), None);
    // Another tenant's quota is its own.
    assert!(
        two.state_set(&other_tenant, "x", b"1", None, 1)
            .await
            .unwrap()
    );
    // insert-new loses to a live key and wins on an absent one.
    assert_eq!(
        two.state_insert_new(&a, "k", b"x", None, 2).await.unwrap(),
        Some(false)
    );
    assert_eq!(
        two.state_insert_new(&a, "j", b"x", None, 2).await.unwrap(),
        Some(true)
    );
    // The quota counts live keys: a third is refused (by either call), an overwrite is not.
    assert!(!one.state_set(&a, "third", b"x", None, 2).await.unwrap());
    assert_eq!(
        one.state_insert_new(&a, "third", b"x", None, 2)
            .await
            .unwrap(),
        None
    );
    assert!(one.state_set(&a, "k", b"v2", None, 2).await.unwrap());
    assert_eq!(one.state_get(&a, "k").await.unwrap(), Some(b"v2".to_vec()));
    // A key with a TTL reads as absent once it has passed, frees its quota, and can be
    // claimed again with insert-new.
    let t = Scope::new(tenant, "ttl");
    assert!(
        one.state_set(&t, "short", b"x", Some(Duration::from_secs(30)), 1)
            .await
            .unwrap()
    );
    assert!(one.state_set(&t, "forever", b"x", None, 2).await.unwrap());
    assert_eq!(
        one.state_get(&t, "short").await.unwrap(),
        Some(b"x".to_vec())
    );
    let revived = Scope::new(tenant, "revived");
    assert!(
        one.state_set(&revived, "old", b"x", Some(Duration::from_secs(30)), 1)
            .await
            .unwrap()
    );
    age(Duration::from_secs(31)).await;
    // An expired key written again is a new key: it counts against the quota like any
    // other, or a guest could revive expired keys past `max_keys` until the next purge.
    assert!(two.state_set(&revived, "new", b"x", None, 1).await.unwrap());
    assert!(!one.state_set(&revived, "old", b"x", None, 1).await.unwrap());
    assert_eq!(one.state_get(&revived, "old").await.unwrap(), None);
    assert_eq!(two.state_get(&t, "short").await.unwrap(), None);
    assert_eq!(
        two.state_get(&t, "forever").await.unwrap(),
        Some(b"x".to_vec())
    );
    assert_eq!(
        two.state_insert_new(&t, "short", b"y", None, 2)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        one.state_get(&t, "short").await.unwrap(),
        Some(b"y".to_vec())
    );
    assert!(one.state_delete(&t, "short").await.unwrap());
    assert!(!two.state_delete(&t, "short").await.unwrap());
    assert_eq!(one.state_get(&t, "short").await.unwrap(), None);
}

async fn namespaces(one: &dyn Storage, two: &dyn Storage, tenant: &str) {
    let scope = Scope::new(tenant, "adapter");
    let bind = |storage: &'static str, path: Option<&'static str>, sha: &'static str, rebind| {
        let storage = if storage == "one" { one } else { two };
        let scope = scope.clone();
        async move {
            storage
                .bind_namespace(&scope, path, sha, rebind)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        bind("one", Some("/a/adapter.wasm"), "aaa", false).await,
        Ok(())
    );
    // The same file rebuilt, and the same component elsewhere, are the same adapter.
    assert_eq!(
        bind("two", Some("/a/adapter.wasm"), "aaa2", false).await,
        Ok(())
    );
    assert_eq!(
        bind("one", Some("/copy/adapter.wasm"), "aaa2", false).await,
        Ok(())
    );
    assert_eq!(bind("two", None, "aaa2", false).await, Ok(()));
    // Another component is refused, naming the one the namespace belongs to.
    let owner = NamespaceOwner {
        path: Some("/a/adapter.wasm".into()),
        sha256: "aaa2".into(),
    };
    assert_eq!(
        bind("one", Some("/b/adapter.wasm"), "bbb", false).await,
        Err(owner.clone())
    );
    assert_eq!(bind("two", None, "bbb", false).await, Err(owner));
    // A policy that names the namespace rebinds it.
    assert_eq!(
        bind("one", Some("/b/adapter.wasm"), "bbb", true).await,
        Ok(())
    );
    assert_eq!(
        bind("two", Some("/b/adapter.wasm"), "bbb", false).await,
        Ok(())
    );
    assert!(
        bind("one", Some("/a/adapter.wasm"), "aaa2", false)
            .await
            .is_err()
    );
    // Another tenant's namespace of the same name is its own.
    let elsewhere = Scope::new(format!("{tenant}-other"), "adapter");
    assert_eq!(
        one.bind_namespace(&elsewhere, Some("/a/adapter.wasm"), "aaa", false)
            .await
            .unwrap(),
        Ok(())
    );
}

async fn claims(one: &dyn Storage, two: &dyn Storage, tenant: &str, age: Age<'_>) {
    let scope = Scope::new(tenant, "a");
    let node_one = Owner::this_call("node-1");
    let node_two = Owner::this_call("node-2");

    // A new key: won at epoch 1; the same key from the other node is busy, naming the
    // holder; with other input it is refused.
    let first = won(one.claim(&request(&scope, "k", &node_one)).await.unwrap());
    assert_eq!((first.epoch, first.resumed), (1, false));
    assert_eq!(
        two.claim(&request(&scope, "k", &node_two)).await.unwrap(),
        Claim::Busy {
            holder: node_one.clone(),
            epoch: 1
        }
    );
    let other_input = ClaimRequest {
        input_hash: "other".into(),
        ..request(&scope, "k", &node_two)
    };
    assert_eq!(two.claim(&other_input).await.unwrap(), Claim::InputMismatch);
    // The same key under another tenant is another key.
    let elsewhere = Scope::new(format!("{tenant}-other"), "a");
    won(two
        .claim(&request(&elsewhere, "k", &node_two))
        .await
        .unwrap());

    // Renewed, then recorded; the other node then gets the record.
    assert!(one.renew(&first).await.unwrap());
    assert_eq!(
        one.complete(&first, "i-1", "{\"instanceId\":\"i-1\"}")
            .await
            .unwrap(),
        Completion::Recorded
    );
    assert_eq!(
        two.claim(&request(&scope, "k", &node_two)).await.unwrap(),
        Claim::Done {
            result: "{\"instanceId\":\"i-1\"}".into()
        }
    );
    // A done claim cannot be renewed, recorded again or released.
    assert!(!one.renew(&first).await.unwrap());
    assert_eq!(
        one.complete(&first, "i-2", "{}").await.unwrap(),
        Completion::Fenced {
            recorded: Some("{\"instanceId\":\"i-1\"}".into())
        }
    );
    one.release(&first).await.unwrap();
    assert!(matches!(
        two.claim(&request(&scope, "k", &node_two)).await.unwrap(),
        Claim::Done { .. }
    ));

    // A holder that stops heartbeating loses the key once its lease is over; the taker
    // holds the next epoch, and the stale holder's writes are all refused.
    let stale = won(one.claim(&request(&scope, "k2", &node_one)).await.unwrap());
    assert!(matches!(
        two.claim(&request(&scope, "k2", &node_two)).await.unwrap(),
        Claim::Busy { .. }
    ));
    age(Duration::from_secs(61)).await;
    let taker = won(two.claim(&request(&scope, "k2", &node_two)).await.unwrap());
    assert_eq!((taker.epoch, taker.resumed), (2, true));
    assert!(!one.renew(&stale).await.unwrap());
    assert_eq!(
        one.complete(&stale, "i-stale", "{\"stale\":true}")
            .await
            .unwrap(),
        Completion::Fenced { recorded: None }
    );
    one.release(&stale).await.unwrap();
    assert!(matches!(
        one.claim(&request(&scope, "k2", &node_one)).await.unwrap(),
        Claim::Busy { epoch: 2, .. }
    ));
    assert_eq!(
        two.complete(&taker, "i-2", "{\"taker\":true}")
            .await
            .unwrap(),
        Completion::Recorded
    );
    assert_eq!(
        one.complete(&stale, "i-stale", "{\"stale\":true}")
            .await
            .unwrap(),
        Completion::Fenced {
            recorded: Some("{\"taker\":true}".into())
        }
    );

    // A heartbeat keeps a claim past its first lease.
    let kept = won(one.claim(&request(&scope, "k3", &node_one)).await.unwrap());
    age(Duration::from_secs(40)).await;
    assert!(one.renew(&kept).await.unwrap());
    age(Duration::from_secs(40)).await;
    assert!(matches!(
        two.claim(&request(&scope, "k3", &node_two)).await.unwrap(),
        Claim::Busy { epoch: 1, .. }
    ));

    // A holder seen dead is taken over at once, at the epoch the caller saw; a take-over
    // naming an epoch that moved on since is only busy.
    let take = ClaimRequest {
        take_over: Some(1),
        ..request(&scope, "k3", &node_two)
    };
    let taken = won(two.claim(&take).await.unwrap());
    assert_eq!((taken.epoch, taken.resumed), (2, true));
    assert!(!one.renew(&kept).await.unwrap());
    assert!(matches!(
        one.claim(&ClaimRequest {
            take_over: Some(1),
            ..request(&scope, "k3", &node_one)
        })
        .await
        .unwrap(),
        Claim::Busy { epoch: 2, .. }
    ));

    // A released claim lets the next call run afresh.
    two.release(&taken).await.unwrap();
    let again = won(one.claim(&request(&scope, "k3", &node_one)).await.unwrap());
    assert!(!again.resumed);
    // The released holder's late writes do not touch the new claim.
    assert_eq!(
        two.complete(&taken, "i-late", "{}").await.unwrap(),
        Completion::Fenced { recorded: None }
    );
    assert!(one.renew(&again).await.unwrap());

    // Forgetting removes finished records, not running claims.
    let forgotten = one.forget_records(&scope).await.unwrap();
    assert_eq!(forgotten, 2, "k and k2 were done");
    assert!(matches!(
        two.claim(&request(&scope, "k", &node_two)).await.unwrap(),
        Claim::Won(_)
    ));
    assert!(matches!(
        two.claim(&request(&scope, "k3", &node_two)).await.unwrap(),
        Claim::Busy { .. }
    ));
    assert!(one.idempotency_rows().await.unwrap() >= 3);
}

async fn destroy_records(one: &dyn Storage, two: &dyn Storage, tenant: &str, age: Age<'_>) {
    let scope = Scope::new(tenant, "a");
    assert!(!one.is_destroyed(&scope, "i-1").await.unwrap());
    one.record_destroyed(&scope, "i-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(two.is_destroyed(&scope, "i-1").await.unwrap());
    assert!(
        !two.is_destroyed(&Scope::new(format!("{tenant}-other"), "a"), "i-1")
            .await
            .unwrap()
    );
    assert!(
        !two.is_destroyed(&Scope::new(tenant, "b"), "i-1")
            .await
            .unwrap()
    );
    age(Duration::from_secs(61)).await;
    assert!(!two.is_destroyed(&scope, "i-1").await.unwrap());
}

async fn purge(storage: &dyn Storage, tenant: &str, age: Age<'_>) {
    // Whatever earlier parts left expired goes first, so the counts below are this part's.
    age(Duration::from_secs(7200)).await;
    purge_in_batches(storage, 1000).await.unwrap();
    let scope = Scope::new(tenant, "a");
    let owner = Owner::this_call("node-1");
    for i in 0..25 {
        let key = format!("k{i}");
        assert!(
            storage
                .state_set(&scope, &key, b"x", Some(Duration::from_secs(1)), 100)
                .await
                .unwrap()
        );
        let lease = won(storage.claim(&request(&scope, &key, &owner)).await.unwrap());
        storage.complete(&lease, "i", "{}").await.unwrap();
        storage
            .record_destroyed(&scope, &format!("i{i}"), Duration::from_secs(1))
            .await
            .unwrap();
    }
    // A running claim past its window but inside its lease is kept.
    let running = won(storage
        .claim(&ClaimRequest {
            lease: Duration::from_secs(100_000),
            window: Duration::from_secs(1),
            ..request(&scope, "running", &owner)
        })
        .await
        .unwrap());
    assert_eq!(storage.purge_expired(10).await.unwrap(), Purged::default());
    age(Duration::from_secs(3601)).await;
    // The per-table counts: a sum of three tables compared with the batch size would stop
    // after the first batch (30 removed is not 10).
    assert_eq!(
        storage.purge_expired(10).await.unwrap(),
        Purged {
            state: 10,
            keys: 10,
            destroyed: 10
        }
    );
    assert_eq!(purge_in_batches(storage, 10).await.unwrap(), 45);
    assert_eq!(storage.purge_expired(10).await.unwrap(), Purged::default());
    assert!(storage.renew(&running).await.unwrap());
}
