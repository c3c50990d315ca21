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
        target: FunctionId::new("default", "hello"),
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
    let f = FunctionId::new("default", "hello");
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
    let f = FunctionId::new("default", "hello");
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
    let f = FunctionId::new("default", "hello");
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
