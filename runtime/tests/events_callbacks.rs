//! Result callbacks: a callback URL that refuses connections is retried,
//! then dropped with a metric; callbacks that never get an answer hold up
//! no delivery.

mod events_support;

use std::time::Duration;

use bytes::Bytes;
use events_support::*;
use flint_runtime::events::callback::CallbackConfig;
use flint_runtime::events::policy::Backoff;
use flint_runtime::events::{self, WorkerConfig};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::sync::watch;

const EACH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_callbacks_are_retried_then_dropped_without_blocking_deliveries() {
    let dir = TempDir::new("events-callbacks");
    let function = function().await;
    let gw = gateway(function.addr).await;
    // A callback endpoint that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    // A callback endpoint that refuses connections.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let config = WorkerConfig {
        backoff: Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
        },
        fetch_wait: Duration::from_millis(100),
        callbacks: CallbackConfig {
            attempts: 3,
            backoff: Backoff {
                base: Duration::from_millis(5),
                cap: Duration::from_millis(20),
            },
            timeout: Duration::from_secs(600),
            concurrency: 2 * EACH,
            backlog: 10 * EACH,
        },
        ..WorkerConfig::default()
    };
    let local = events::local_with(&dir.0, &gw.url(), "localhost", config).unwrap();
    // Enough retries that every invocation is delivered.
    set_target(&local.targets, 20, 16);
    attach(&gw.gateway, local.intake);
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(local.worker.run(stopped));

    let client = client();
    let mut ids = Vec::new();
    for (i, target) in [silent_addr, refused]
        .iter()
        .cycle()
        .take(2 * EACH)
        .enumerate()
    {
        let id = format!("cb-{i}");
        let req = Request::post(format!("{}/async-function/{NS}/{FUNCTION}/x", gw.url()))
            .header("x-flint-invocation-id", &id)
            .header("x-callback-url", format!("http://{target}/callback"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(
            client.request(req).await.unwrap().status(),
            StatusCode::ACCEPTED
        );
        ids.push(id);
    }
    let seen = std::sync::Arc::clone(&function.seen);
    assert!(wait_until(Duration::from_secs(60), || seen.handled_count() == 2 * EACH).await);
    let dropped =
        "flint_async_callbacks_total{function=\"work\",namespace=\"default\",result=\"dropped\"}";
    assert!(
        wait_until(Duration::from_secs(30), || sample(
            &metrics(&gw.gateway),
            dropped
        ) == EACH as f64)
        .await,
        "{}",
        metrics(&gw.gateway)
    );
    let text = metrics(&gw.gateway);
    assert_eq!(
        sample(
            &text,
            "flint_async_delivered_total{function=\"work\",namespace=\"default\"}"
        ),
        (2 * EACH) as f64,
        "every invocation delivered while half the callbacks hang"
    );
    assert_eq!(
        sample(
            &text,
            "flint_async_callbacks_total{function=\"work\",namespace=\"default\",result=\"retried\"}"
        ),
        (2 * EACH) as f64,
        "each refused callback tried three times"
    );
    assert_eq!(
        sample(
            &text,
            "flint_async_callbacks_total{function=\"work\",namespace=\"default\",result=\"delivered\"}"
        ),
        0.0
    );
    assert_each_settled_once(&function.seen, &ids, &[]);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .unwrap()
        .unwrap();
    held.abort();
}
