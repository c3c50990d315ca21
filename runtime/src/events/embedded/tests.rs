use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::events::invocation::new_id;

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flint-embedded-{name}-{}", new_id(0)))
}

fn invocation(id: &str) -> Invocation {
    Invocation {
        id: id.into(),
        target: FunctionKey::new("default", "hello"),
        method: "POST".into(),
        uri: "/function/default/hello/".into(),
        host: None,
        headers: vec![],
        callback_url: None,
        enqueued_at_ms: now_ms(),
        body: Bytes::from_static(b"body"),
    }
}

fn limits(max: usize) -> FetchLimits {
    FetchLimits {
        max,
        max_in_flight: 10,
        wait: Duration::from_millis(10),
        lease: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn lifecycle_survives_reopening() {
    let d = dir("lifecycle");
    let f = FunctionKey::new("default", "hello");
    {
        let q = EmbeddedQueue::open(&d).unwrap();
        for id in ["a", "b", "c"] {
            assert_eq!(q.enqueue(invocation(id)).await.unwrap(), Enqueued::New);
        }
        assert_eq!(
            q.enqueue(invocation("a")).await.unwrap(),
            Enqueued::Duplicate
        );
        let batch = q.fetch(&f, limits(10)).await.unwrap();
        assert_eq!(batch.len(), 3);
        assert!(batch.iter().all(|d| d.attempt == 1));
        // Leased: not handed out twice.
        assert!(q.fetch(&f, limits(10)).await.unwrap().is_empty());
        let mut batch = batch.into_iter();
        let a = batch.next().unwrap();
        q.complete(a.ticket).await.unwrap();
        let b = batch.next().unwrap();
        q.retry(b.ticket, Duration::ZERO).await.unwrap();
        let c = batch.next().unwrap();
        q.dead_letter(c, "gave up").await.unwrap();
        let again = q.fetch(&f, limits(10)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].invocation.id.as_str(), again[0].attempt),
            ("b", 2)
        );
        // Settled ids stay duplicates.
        assert_eq!(
            q.enqueue(invocation("a")).await.unwrap(),
            Enqueued::Duplicate
        );
        assert!(q.claim_tick("default.tick.0", 100).await.unwrap());
        assert!(!q.claim_tick("default.tick.0", 100).await.unwrap());
    }
    // After a restart, the unsettled invocation is due again (its lease was
    // in memory), the dead letter and the tick are remembered.
    let q = loop {
        match EmbeddedQueue::open(&d) {
            Ok(q) => break q,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let depth = q.depth().await.unwrap();
    assert_eq!(depth.len(), 1);
    assert_eq!(depth[0].1.pending, 1);
    let due = q.fetch(&f, limits(10)).await.unwrap();
    assert_eq!((due[0].invocation.id.as_str(), due[0].attempt), ("b", 2));
    assert_eq!(due[0].invocation.body, Bytes::from_static(b"body"));
    let dead = q.dead_letters(&f, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].invocation.id.as_str(), dead[0].reason.as_str()),
        ("c", "gave up")
    );
    assert!(!q.claim_tick("default.tick.0", 100).await.unwrap());
    assert!(!q.claim_tick("default.tick.0", 99).await.unwrap());
    assert!(q.claim_tick("default.tick.0", 160).await.unwrap());
    drop(q);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn retries_wait_for_their_delay() {
    let d = dir("delay");
    let f = FunctionKey::new("default", "hello");
    let q = EmbeddedQueue::open(&d).unwrap();
    q.enqueue(invocation("x")).await.unwrap();
    let first = q.fetch(&f, limits(1)).await.unwrap().remove(0);
    q.retry(first.ticket, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(q.fetch(&f, limits(1)).await.unwrap().is_empty());
    drop(q);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_fetch_waiting_on_an_empty_queue_is_woken_by_an_enqueue() {
    let d = dir("wake");
    let q = std::sync::Arc::new(EmbeddedQueue::open(&d).unwrap());
    let f = FunctionKey::new("default", "hello");
    // Nothing stored: the fetch sleeps until its wait ends or work arrives.
    let long = FetchLimits {
        wait: Duration::from_secs(60),
        ..limits(10)
    };
    let waiting = tokio::spawn({
        let (q, f) = (std::sync::Arc::clone(&q), f.clone());
        async move { q.fetch(&f, long).await }
    });
    tokio::task::yield_now().await;
    q.enqueue(invocation("late")).await.unwrap();
    // Far below the 60 s wait: only the enqueue's wake-up can end it here.
    let batch = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the fetch was not woken by the enqueue")
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].invocation.id, "late");
    drop(q);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn the_same_id_for_two_functions_makes_two_invocations() {
    let d = dir("per-function");
    let (a, b) = (FunctionKey::new("team", "a"), FunctionKey::new("team", "b"));
    let to = |target: &FunctionKey| Invocation {
        target: target.clone(),
        ..invocation("job-1")
    };
    let q = EmbeddedQueue::open(&d).unwrap();
    assert_eq!(q.enqueue(to(&a)).await.unwrap(), Enqueued::New);
    assert_eq!(q.enqueue(to(&b)).await.unwrap(), Enqueued::New);
    assert_eq!(q.enqueue(to(&b)).await.unwrap(), Enqueued::Duplicate);
    let from_a = q.fetch(&a, limits(10)).await.unwrap();
    let from_b = q.fetch(&b, limits(10)).await.unwrap();
    assert_eq!(from_a.len(), 1);
    assert_eq!(from_b.len(), 1);
    assert_eq!(from_a[0].invocation.target, a);
    assert_eq!(from_b[0].invocation.target, b);
    // Settling A's leaves B's pending, and A's settled marker does not
    // make a later submission to a third Function a duplicate.
    q.complete(from_a.into_iter().next().unwrap().ticket)
        .await
        .unwrap();
    assert_eq!(q.enqueue(to(&a)).await.unwrap(), Enqueued::Duplicate);
    let depth = q.depth().await.unwrap();
    assert_eq!(depth.len(), 1);
    assert_eq!((&depth[0].0, depth[0].1.pending), (&b, 1));
    let c = FunctionKey::new("team", "c");
    assert_eq!(q.enqueue(to(&c)).await.unwrap(), Enqueued::New);
    drop(q);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_store_keyed_by_bare_ids_is_rekeyed_and_old_settled_ids_are_forgotten() {
    use super::writer::{DUE, INVOCATIONS, SETTLED};
    let d = dir("rekey");
    std::fs::create_dir_all(&d).unwrap();
    let f = FunctionKey::new("default", "hello");
    {
        // As an earlier version left it: keys without their Function, and
        // a settled id of the same Function far past the window.
        let db = redb::Database::create(d.join("events.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut record = 0u32.to_be_bytes().to_vec();
            record.extend(invocation("old-1").encode().unwrap());
            let mut invocations = txn.open_table(INVOCATIONS).unwrap();
            invocations.insert("old-1", record.as_slice()).unwrap();
            let mut due = txn.open_table(DUE).unwrap();
            due.insert(super::due_key(&f, 1, "old-1").as_str(), ())
                .unwrap();
            let mut settled = txn.open_table(SETTLED).unwrap();
            settled.insert("default/hello/long-ago", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let q = EmbeddedQueue::open(&d).unwrap();
    let due = q.fetch(&f, limits(10)).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].invocation.id, "old-1");
    q.complete(due.into_iter().next().unwrap().ticket)
        .await
        .unwrap();
    assert!(
        q.depth().await.unwrap().is_empty(),
        "settled under its new key"
    );
    assert_eq!(
        q.enqueue(invocation("old-1")).await.unwrap(),
        Enqueued::Duplicate
    );
    assert_eq!(
        q.enqueue(invocation("long-ago")).await.unwrap(),
        Enqueued::New,
        "settled beyond the dedupe window"
    );
    drop(q);
    let _ = std::fs::remove_dir_all(&d);
}
