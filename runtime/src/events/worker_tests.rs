//! The worker against a scripted queue and a function it can hold mid-request.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::any;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::*;
use crate::events::Invocation;
use crate::events::scripted::{Script, Scripted, ScriptedTicket};

/// Hands out the same invocation on its first two fetches, as a queue
/// server that crashed and forgot the first hand-out would, then nothing.
#[derive(Default)]
struct ForgetfulQueue {
    fetches: AtomicUsize,
    completes: AtomicUsize,
}

fn invocation() -> Invocation {
    Invocation {
        id: "inv-1".into(),
        target: FunctionKey::new("default", "work"),
        method: "POST".into(),
        uri: "/".into(),
        host: None,
        headers: Vec::new(),
        callback_url: None,
        enqueued_at_ms: now_ms(),
        body: Bytes::from_static(b"payload"),
    }
}

impl Script for ForgetfulQueue {
    fn fetch<'a>(
        &'a self,
        _: &'a FunctionKey,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery<ScriptedTicket>>, QueueError>> {
        Box::pin(async move {
            if self.fetches.fetch_add(1, Ordering::SeqCst) < 2 {
                let ticket = ScriptedTicket("k".into());
                return Ok(vec![Delivery {
                    invocation: invocation(),
                    attempt: 1,
                    ticket,
                }]);
            }
            tokio::time::sleep(limits.wait).await;
            Ok(Vec::new())
        })
    }
    fn complete(&self, _: ScriptedTicket) -> BoxFuture<'_, Result<(), QueueError>> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

/// A "gateway" that counts requests and answers each only once released.
async fn held_function(requests: Arc<AtomicUsize>, release: Arc<Semaphore>) -> String {
    let app = Router::new().fallback(any(move || {
        let (requests, release) = (Arc::clone(&requests), Arc::clone(&release));
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            let _ = release.acquire().await;
            "done"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn an_invocation_offered_again_while_still_held_is_delivered_once() {
    let queue = Arc::new(Scripted(ForgetfulQueue::default()));
    let requests = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let gateway = held_function(Arc::clone(&requests), Arc::clone(&release)).await;
    let targets = Targets::default();
    targets.set(HashMap::from([(
        FunctionKey::new("default", "work"),
        Target {
            max_retries: 3,
            max_age: Duration::from_secs(600),
            max_in_flight: 4,
            timeout: Duration::from_secs(10),
            store_credentials: false,
        },
    )]));
    let config = WorkerConfig {
        fetch_wait: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let worker = DeliveryWorker::new(
        Arc::clone(&queue),
        targets,
        &gateway,
        EventMetrics::new().unwrap(),
        config,
    );
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(worker.run(stopped));

    // The second copy has been fetched (a third fetch began) while the first
    // is still at the function.
    while queue.0.fetches.load(Ordering::SeqCst) < 3 || requests.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.add_permits(Semaphore::MAX_PERMITS);
    while queue.0.completes.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    run.await.unwrap();

    assert_eq!(requests.load(Ordering::SeqCst), 1, "delivered once");
    assert_eq!(queue.0.completes.load(Ordering::SeqCst), 1, "settled once");
}
