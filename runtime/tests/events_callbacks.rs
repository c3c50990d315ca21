//! Result callbacks: a callback URL that refuses connections is retried,
//! then dropped with a metric; callbacks that never get an answer hold up
//! no delivery. Callback URLs on loopback are refused at the intake unless
//! the gateway allows them. Every callback here targets loopback: no
//! request leaves this machine.

mod events_support;

use std::time::Duration;

use bytes::Bytes;
use events_support::*;
use flint_runtime::events::address::loopback;
use flint_runtime::events::callback::CallbackConfig;
use flint_runtime::events::policy::Backoff;
use flint_runtime::events::{self, AddressPolicy, WorkerConfig};
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
            // The endpoints are on loopback: allowed explicitly.
            addresses: AddressPolicy::new(loopback(), Vec::new()),
        },
        ..WorkerConfig::default()
    };
    let local = events::local_with(&dir.0, &gw.url(), config).unwrap();
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

/// A callback endpoint on 127.0.0.1 that records the outcome header of
/// each POST it gets.
async fn receiver() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let outcome = req
                        .headers()
                        .get("x-flint-outcome")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let _ = tx.send(outcome);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// Submits an invocation with `callback`; the status and body of the answer.
async fn submit_with_callback(
    gw: &RunningGateway,
    id: &str,
    callback: &str,
) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    let req = Request::post(format!("{}/async-function/{NS}/{FUNCTION}/x", gw.url()))
        .header("x-flint-invocation-id", id)
        .header("x-callback-url", callback)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_callbacks_are_refused_at_the_intake_unless_allowed() {
    let (addr, mut received) = receiver().await;
    let port = addr.port();
    let function = function().await;
    let refused = [
        format!("http://127.0.0.1:{port}/cb"),
        format!("http://[::1]:{port}/cb"),
        format!("http://[::ffff:127.0.0.1]:{port}/cb"),
        format!("http://localhost:{port}/cb"),
    ];
    // The default policy: loopback refused.
    {
        let dir = TempDir::new("events-callback-refused");
        let gw = gateway(function.addr).await;
        let local = events::local_with(&dir.0, &gw.url(), WorkerConfig::default()).unwrap();
        set_target(&local.targets, 0, 4);
        attach(&gw.gateway, local.intake);
        for (i, url) in refused.iter().enumerate() {
            let (status, body) = submit_with_callback(&gw, &format!("refused-{i}"), url).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
            assert!(body.contains(url.as_str()), "names the URL: {body}");
            assert!(
                body.contains("a loopback address"),
                "names the reason: {body}"
            );
        }
        assert_eq!(
            sample(
                &metrics(&gw.gateway),
                "flint_async_accepted_total{function=\"work\",namespace=\"default\"}"
            ),
            0.0,
            "nothing was accepted"
        );
        gw.shutdown().await;
    }
    // Allowed explicitly: accepted, delivered, and the callback arrives.
    let dir = TempDir::new("events-callback-allowed");
    let gw = gateway(function.addr).await;
    let mut config = WorkerConfig::default();
    config.callbacks.addresses = AddressPolicy::new(loopback(), Vec::new());
    let local = events::local_with(&dir.0, &gw.url(), config).unwrap();
    set_target(&local.targets, 20, 4);
    attach(&gw.gateway, local.intake);
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(local.worker.run(stopped));
    let (status, body) = submit_with_callback(&gw, "allowed-1", &refused[0]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let outcome = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("the callback arrived")
        .unwrap();
    assert_eq!(outcome, "delivered");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .unwrap()
        .unwrap();
}
