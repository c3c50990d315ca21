//! The metrics sources against real HTTP servers on 127.0.0.1: a test
//! exporter that serves the gateway's two counters in the gateway's exact
//! format under a steady synthetic load, scraped directly and through a real
//! Prometheus server (the test fails when `prometheus` is absent).

#[path = "support/exporter.rs"]
mod exporter;
#[path = "support/prometheus.rs"]
mod prometheus_server;

use std::net::SocketAddr;
use std::time::Duration;

use exporter::serve_metrics;
use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use flint_operator::autoscaler::source::MetricsSource;
use flint_operator::autoscaler::source::direct::DirectSource;
use prometheus::{CounterVec, Opts, Registry};
use prometheus_server::{Prometheus, free_port, promql_source};

/// Concurrency and RPS the exporter's load generator produces.
const CONCURRENCY: f64 = 5.0;
const RPS: f64 = 100.0;

fn key() -> RevisionKey {
    RevisionKey::new("default", "hello", "hello-00001")
}

/// Serves `/metrics` like a gateway, with counters growing at a steady rate.
async fn exporter() -> SocketAddr {
    let registry = Registry::new();
    let requests = CounterVec::new(
        Opts::new(names::REQUESTS_TOTAL, "Requests answered, by status code."),
        &[
            names::LABEL_NAMESPACE,
            names::LABEL_FUNCTION,
            names::LABEL_REVISION,
            names::LABEL_CODE,
        ],
    )
    .unwrap();
    let conc = CounterVec::new(
        Opts::new(
            names::REQUEST_CONCURRENCY_SECONDS_TOTAL,
            "Time integral of in-flight requests.",
        ),
        &[
            names::LABEL_NAMESPACE,
            names::LABEL_FUNCTION,
            names::LABEL_REVISION,
        ],
    )
    .unwrap();
    registry.register(Box::new(requests.clone())).unwrap();
    registry.register(Box::new(conc.clone())).unwrap();
    // As the gateway does, the revision's series are exported at zero from
    // the start, before its first request: a first scrape then primes them
    // whenever it comes.
    for code in ["200", "503"] {
        requests.with_label_values(&["default", "hello", "hello-00001", code]);
    }
    conc.with_label_values(&["default", "hello", "hello-00001"]);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let start = tokio::time::Instant::now();
        let mut done = 0u64;
        loop {
            tick.tick().await;
            // Catch up on real elapsed time so the rates stay exact.
            let due = (start.elapsed().as_secs_f64() * RPS) as u64;
            while done < due {
                let code = if done.is_multiple_of(10) {
                    "503"
                } else {
                    "200"
                };
                requests
                    .with_label_values(&["default", "hello", "hello-00001", code])
                    .inc();
                conc.with_label_values(&["default", "hello", "hello-00001"])
                    .inc_by(CONCURRENCY / RPS);
                done += 1;
            }
        }
    });
    serve_metrics(registry, || {}).await
}

fn within(a: f64, b: f64, pct: f64) -> bool {
    (a - b).abs() <= b.abs() * pct / 100.0
}

#[tokio::test]
async fn direct_source_reports_rates_summed_over_gateways() {
    let (a, b) = (exporter().await, exporter().await);
    let mut src = DirectSource::new(
        vec![format!("http://{a}/metrics"), format!("http://{b}/metrics")],
        Duration::from_secs(2),
    );
    let idle = RevisionKey::new("default", "idle", "idle-00001");
    let keys = [key(), idle.clone()];
    // The first scrape only primes the counters.
    assert!(src.collect(&keys).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = src.collect(&keys).await.unwrap();
    let hello = r[&key()];
    assert!(within(hello.rps, 2.0 * RPS, 10.0), "{hello:?}");
    assert!(
        within(hello.concurrency, 2.0 * CONCURRENCY, 10.0),
        "{hello:?}"
    );
    // Every gateway answered and none has seen it: zero load, not missing.
    assert_eq!(r[&idle].rps, 0.0);
}

#[tokio::test]
async fn direct_source_fails_as_a_whole_when_one_gateway_is_down() {
    let a = exporter().await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut src = DirectSource::new(
        vec![
            format!("http://{a}/metrics"),
            format!("http://{dead_addr}/metrics"),
        ],
        Duration::from_secs(2),
    );
    let err = src.collect(&[key()]).await.unwrap_err();
    assert_eq!(err.metric_label(), "http");
    assert!(err.to_string().contains(&dead_addr.to_string()), "{err}");
}

#[tokio::test]
async fn promql_source_agrees_with_the_direct_source_within_ten_percent() {
    let addr = exporter().await;
    let prom = Prometheus::start(&[addr]);
    let mut promql = prom.source();
    let keys = [key()];
    // Wait (bounded) until Prometheus has enough samples for a rate.
    let mut reading = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(r) = promql.collect(&keys).await
            && r[&key()].rps > 0.0
        {
            tokio::time::sleep(Duration::from_secs(5)).await;
            reading = Some(promql.collect(&keys).await.unwrap()[&key()]);
            break;
        }
    }
    let from_prom = reading.expect("Prometheus never reported a rate within 30 s");
    let mut direct = DirectSource::new(
        vec![format!("http://{addr}/metrics")],
        Duration::from_secs(2),
    );
    direct.collect(&keys).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from_direct = direct.collect(&keys).await.unwrap()[&key()];
    assert!(
        within(from_prom.rps, from_direct.rps, 10.0),
        "{from_prom:?} vs {from_direct:?}"
    );
    assert!(
        within(from_prom.concurrency, from_direct.concurrency, 10.0),
        "{from_prom:?} vs {from_direct:?}"
    );
    assert!(within(from_direct.rps, RPS, 10.0), "{from_direct:?}");
}

#[tokio::test]
async fn promql_source_fails_when_prometheus_is_unreachable() {
    let port = free_port();
    let mut promql = promql_source(port, Duration::from_secs(1));
    assert_eq!(
        promql.collect(&[key()]).await.unwrap_err().metric_label(),
        "http"
    );
}
