//! The NATS queue's fences, against a real nats-server: a client without
//! the server's token is refused; a flood fills the pending stream up to
//! its byte limit and is then answered 503 with `Retry-After` (the store
//! on disk stays within the budget), and room comes back as deliveries
//! settle; handing a leased invocation back, or losing it to an expired
//! lease, costs it no delivery attempt — only a failed attempt does.

mod events_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use events_support::*;
use flint_runtime::events::nats::{MIN_MAX_BYTES, NatsTicket, StreamBudget};
use flint_runtime::events::queue::{Delivery, FetchLimits};
use flint_runtime::events::{self, Invocation, NatsQueue, NatsSettings, Queue, QueueError};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

const TOKEN: &str = "s3cretT0kenForTests";

fn require_nats() {
    if !nats_available() {
        panic!("nats-server is not installed (apt-get install -y nats-server)");
    }
}

/// Bytes of every file under `dir`.
fn stored_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => stored_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_without_the_token_is_refused() {
    require_nats();
    let dir = TempDir::new("nats-auth");
    let nats = NatsServer::start_with_token(&dir.0, Some(TOKEN));
    // A plain client, as anything else in the cluster would connect.
    let anonymous = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(nats.url()))
        .await
        .expect("the server answers at once");
    let err = anonymous.expect_err("a client without a token is refused");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
    // The queue without the token, and with a wrong one.
    for settings in [
        NatsSettings::new(nats.url()),
        NatsSettings::new(nats.url()).with_token("wrong"),
    ] {
        let err = NatsQueue::connect(&settings)
            .await
            .expect_err("refused without the right token");
        assert!(
            matches!(&err, QueueError::NatsConnect(source) if source.to_string().contains("authorization")),
            "{err}"
        );
    }
    // With the token: connected, streams made, an invocation stored.
    let queue = NatsQueue::connect(&nats.settings()).await.unwrap();
    queue.enqueue(invocation("with-token", 10)).await.unwrap();
}

fn invocation(id: &str, body_bytes: usize) -> Invocation {
    Invocation {
        id: id.into(),
        target: function_id(),
        method: "POST".into(),
        uri: format!("/function/{NS}/{FUNCTION}/job"),
        host: None,
        headers: Vec::new(),
        callback_url: None,
        enqueued_at_ms: events::invocation::now_ms(),
        body: Bytes::from(vec![b'x'; body_bytes]),
    }
}

/// POSTs invocation `id` with a `body_bytes` body through the gateway.
async fn post(
    client: &HttpClient,
    gateway: &str,
    id: &str,
    body_bytes: usize,
) -> http::Response<Bytes> {
    let req = Request::post(format!("{gateway}/async-function/{NS}/{FUNCTION}/job"))
        .header("x-flint-invocation-id", id)
        .body(Full::new(Bytes::from(vec![b'x'; body_bytes])))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_is_answered_503_once_the_stream_is_full_and_the_store_stays_bounded() {
    require_nats();
    let dir = TempDir::new("nats-full");
    let nats = NatsServer::start_with_token(&dir.0, Some(TOKEN));
    let settings = nats.settings().with_max_bytes(MIN_MAX_BYTES);
    let budget = StreamBudget::split(MIN_MAX_BYTES);
    let function = function().await;
    let gw = gateway(function.addr).await;
    let config = flint_runtime::events::WorkerConfig {
        fetch_wait: Duration::from_millis(100),
        ..Default::default()
    };
    let cluster = events::nats(&settings, &gw.url(), config).await.unwrap();
    // Retries enough that every invocation is handled in the end.
    set_target(&cluster.targets, 20, 8);
    attach(&gw.gateway, cluster.intake);
    let client = client();
    const BODY: usize = 64 * 1024;
    // No worker yet: nothing drains, so the flood fills the stream.
    let mut accepted = 0usize;
    let mut refused = None;
    for n in 0..400 {
        let resp = post(&client, &gw.url(), &format!("flood-{n}"), BODY).await;
        match resp.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused.get_or_insert(resp);
            }
            other => panic!("unexpected {other}: {:?}", resp.body()),
        }
    }
    let refused = refused.expect("the flood was refused once the stream was full");
    let body = String::from_utf8_lossy(refused.body()).into_owned();
    assert!(
        body.contains("full") && body.contains("FLINT_ASYNC"),
        "the 503 names why: {body}"
    );
    assert_eq!(refused.headers()["retry-after"], "30");
    // The stream took what fitted, and no more.
    let fits = budget.pending as usize / BODY;
    assert!(
        accepted <= fits && accepted + 3 >= fits,
        "accepted {accepted}, room for about {fits}"
    );
    let text = metrics(&gw.gateway);
    assert!(
        sample(
            &text,
            "flint_async_refused_total{function=\"work\",namespace=\"default\",reason=\"full\"}"
        ) >= (400 - accepted) as f64,
        "{text}"
    );
    // The server's store holds the stream and its bookkeeping: within the
    // budget, however long the flood goes on.
    let stored = stored_bytes(&dir.0);
    assert!(
        stored <= MIN_MAX_BYTES,
        "{stored} bytes stored, over the budget of {MIN_MAX_BYTES}"
    );
    assert!(
        stored >= budget.pending * 9 / 10,
        "the stream was filled: {stored}"
    );
    // Deliveries make room: once the worker drains the queue, the intake
    // accepts again.
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(cluster.worker.run(stopped));
    assert!(
        wait_until(Duration::from_secs(60), || function.seen.handled_count()
            == accepted)
        .await,
        "handled {} of {accepted}",
        function.seen.handled_count()
    );
    let resp = post(&client, &gw.url(), "after-the-flood", BODY).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "{:?}", resp.body());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .unwrap()
        .unwrap();
    gw.shutdown().await;
}

/// Leases the next delivery of the test Function, waiting up to `within`.
async fn next(queue: &NatsQueue, lease: Duration, within: Duration) -> Delivery<NatsTicket> {
    let limits = FetchLimits {
        max: 1,
        max_in_flight: 1,
        wait: Duration::from_millis(200),
        lease,
    };
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut batch = queue.fetch(&function_id(), limits).await.unwrap();
        if let Some(delivery) = batch.pop() {
            assert!(batch.is_empty());
            return delivery;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing redelivered within {within:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handing_back_or_losing_a_lease_costs_no_attempt() {
    require_nats();
    let dir = TempDir::new("nats-hand-back");
    let nats = NatsServer::start_with_token(&dir.0, Some(TOKEN));
    let queue = Arc::new(NatsQueue::connect(&nats.settings()).await.unwrap());
    queue.enqueue(invocation("handed-back", 10)).await.unwrap();
    let lease = Duration::from_secs(30);
    let wait = Duration::from_secs(10);
    // Three hand-backs: still the first attempt.
    for _ in 0..3 {
        let delivery = next(&queue, lease, wait).await;
        assert_eq!(delivery.invocation.id, "handed-back");
        assert_eq!(delivery.attempt, 1, "a hand-back cost an attempt");
        queue.hand_back(vec![delivery]).await;
    }
    // A real failure counts.
    let delivery = next(&queue, lease, wait).await;
    assert_eq!(delivery.attempt, 1);
    queue
        .retry(delivery.ticket, Duration::from_millis(10))
        .await
        .unwrap();
    let delivery = next(&queue, lease, wait).await;
    assert_eq!(delivery.attempt, 2, "a failed attempt is counted");
    queue.hand_back(vec![delivery]).await;
    let delivery = next(&queue, lease, wait).await;
    assert_eq!(delivery.attempt, 2, "a hand-back after a failure");
    queue
        .retry(delivery.ticket, Duration::from_millis(10))
        .await
        .unwrap();
    // A lease that runs out (the worker vanished) does not count either.
    let short = Duration::from_secs(1);
    let lost = next(&queue, short, wait).await;
    assert_eq!(lost.attempt, 3);
    drop(lost);
    let delivery = next(&queue, short, wait).await;
    assert_eq!(delivery.attempt, 3, "an expired lease cost an attempt");
    // Once settled it is gone.
    queue.complete(delivery.ticket).await.unwrap();
    let limits = FetchLimits {
        max: 1,
        max_in_flight: 1,
        wait: Duration::from_millis(1500),
        lease: short,
    };
    assert!(
        queue
            .fetch(&function_id(), limits)
            .await
            .unwrap()
            .is_empty()
    );
}
