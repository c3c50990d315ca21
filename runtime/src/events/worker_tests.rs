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

/// Runs a worker of `queue` for `targets`, delivering to `gateway`,
/// fetching with a short wait; its stop switch and its task.
fn start<Q: Queue>(
    queue: Arc<Q>,
    targets: Targets,
    gateway: &str,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let config = WorkerConfig {
        fetch_wait: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let worker = DeliveryWorker::new(
        queue,
        targets,
        gateway,
        EventMetrics::new().unwrap(),
        config,
    );
    let (stop, stopped) = watch::channel(false);
    (stop, tokio::spawn(worker.run(stopped)))
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
    let (stop, run) = start(Arc::clone(&queue), targets, &gateway);

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

/// The embedded queue, counting each Function's fetches.
struct CountingFetches {
    queue: crate::events::EmbeddedQueue,
    fetches: std::sync::Mutex<HashMap<FunctionKey, usize>>,
}

impl CountingFetches {
    fn of(&self, target: &FunctionKey) -> usize {
        self.fetches
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }
}

impl Queue for CountingFetches {
    type Ticket = <crate::events::EmbeddedQueue as Queue>::Ticket;

    fn enqueue(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'_, Result<crate::events::queue::Enqueued, QueueError>> {
        self.queue.enqueue(invocation)
    }
    fn fetch<'a>(
        &'a self,
        target: &'a FunctionKey,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery<Self::Ticket>>, QueueError>> {
        *self
            .fetches
            .lock()
            .unwrap()
            .entry(target.clone())
            .or_default() += 1;
        self.queue.fetch(target, limits)
    }
    fn complete(&self, ticket: Self::Ticket) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.complete(ticket)
    }
    fn retry(
        &self,
        ticket: Self::Ticket,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.retry(ticket, delay)
    }
    fn dead_letter<'a>(
        &'a self,
        delivery: Delivery<Self::Ticket>,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        self.queue.dead_letter(delivery, reason)
    }
    fn depth(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(FunctionKey, crate::events::queue::Depth)>, QueueError>> {
        self.queue.depth()
    }
    fn dead_letters<'a>(
        &'a self,
        target: &'a FunctionKey,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<crate::events::queue::DeadLetter>, QueueError>> {
        self.queue.dead_letters(target, limit)
    }
    fn may_have_work(&self, target: &FunctionKey) -> bool {
        self.queue.may_have_work(target)
    }
    fn work_arrivals(&self) -> Option<watch::Receiver<u64>> {
        self.queue.work_arrivals()
    }
    fn with_work(&self) -> Option<Vec<FunctionKey>> {
        self.queue.with_work()
    }
}

#[tokio::test]
async fn with_the_embedded_queue_a_loop_runs_only_while_its_function_has_work() {
    let dir = std::env::temp_dir().join(format!(
        "flint-worker-loops-{}",
        crate::events::invocation::new_id(0)
    ));
    let queue = Arc::new(CountingFetches {
        queue: crate::events::EmbeddedQueue::open(&dir).unwrap(),
        fetches: std::sync::Mutex::default(),
    });
    let requests = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    let gateway = held_function(Arc::clone(&requests), release).await;
    let (work, idle) = (
        FunctionKey::new("default", "work"),
        FunctionKey::new("default", "idle"),
    );
    let target = Target {
        max_retries: 3,
        max_age: Duration::from_secs(600),
        max_in_flight: 4,
        timeout: Duration::from_secs(10),
        store_credentials: false,
    };
    let targets = Targets::default();
    targets.set(HashMap::from([
        (work.clone(), target),
        (idle.clone(), target),
    ]));
    let (stop, run) = start(Arc::clone(&queue), targets, &gateway);
    let settle = || tokio::time::sleep(Duration::from_millis(300));

    // Nothing stored: no loop fetches for either Function.
    settle().await;
    assert_eq!((queue.of(&work), queue.of(&idle)), (0, 0));

    for round in 1..=2 {
        // An enqueue starts the loop of its Function, which delivers...
        let mut inv = invocation();
        inv.id = format!("inv-{round}");
        queue.enqueue(inv).await.unwrap();
        while requests.load(Ordering::SeqCst) < round || queue.may_have_work(&work) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // ...and, settled, ends: its fetches stop.
        settle().await;
        let fetched = queue.of(&work);
        assert!(fetched >= round, "round {round}: {fetched} fetches");
        settle().await;
        assert_eq!(queue.of(&work), fetched, "round {round}: the loop ended");
        assert_eq!(queue.of(&idle), 0, "an idle Function never fetches");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    stop.send(true).unwrap();
    run.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
