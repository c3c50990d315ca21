//! The asynchronous backlog end to end, over real sockets on 127.0.0.1: fake
//! gateways serve `flint_async_pending` in the gateway's exact format, the
//! direct source scrapes them, the autoscaler loop decides and writes through
//! an in-memory actuator; and a real Prometheus server (the test fails when
//! `prometheus` is absent) feeds the PromQL source.

#[path = "support/actuator.rs"]
mod actuator;
#[path = "support/autoscaler_loop.rs"]
mod autoscaler_loop;
#[path = "support/exporter.rs"]
mod exporter;
#[path = "support/prometheus.rs"]
mod prometheus_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actuator::Memory;
use autoscaler_loop::{Running, config};
use exporter::serve_metrics;
use flint_api::ScaleSpec;
use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use flint_operator::autoscaler::source::direct::DirectSource;
use flint_operator::autoscaler::source::{FunctionKey, MetricsSource, Pending};
use flint_operator::autoscaler::{Autoscaler, AutoscalerHandle, BacklogRoute};
use prometheus::{IntGaugeVec, Opts, Registry};
use prometheus_server::Prometheus;

/// The replica counts written for `key`, in order.
fn writes_of(actuator: &Memory, key: &RevisionKey) -> Vec<u32> {
    actuator
        .writes()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, n)| n)
        .collect()
}

/// Serves `/metrics` like a gateway with an async intake: the pending gauge
/// of `default/hello` (set through the returned handle) and of `default/other`
/// (fixed at 2).
async fn gateway(pending: i64) -> (SocketAddr, Arc<AtomicI64>) {
    let registry = Registry::new();
    let gauge = IntGaugeVec::new(
        Opts::new(
            names::ASYNC_PENDING,
            "Invocations accepted and not settled.",
        ),
        &[names::LABEL_NAMESPACE, names::LABEL_FUNCTION],
    )
    .unwrap();
    registry.register(Box::new(gauge.clone())).unwrap();
    let value = Arc::new(AtomicI64::new(pending));
    let shared = Arc::clone(&value);
    let refresh = move || {
        // Like the gateway: functions with nothing pending are absent.
        gauge.reset();
        let n = shared.load(Ordering::SeqCst);
        if n > 0 {
            gauge.with_label_values(&["default", "hello"]).set(n);
        }
        gauge.with_label_values(&["default", "other"]).set(2);
    };
    (serve_metrics(registry, refresh).await, value)
}

fn rev(name: &str) -> RevisionKey {
    RevisionKey::new("default", "hello", name)
}

fn hello() -> FunctionKey {
    FunctionKey::new("default", "hello")
}

/// Target 10 per replica at 100%, from zero, short windows so that a test
/// sees the way back to zero within seconds.
fn spec() -> ScaleSpec {
    ScaleSpec {
        initial: 0,
        max: 100,
        target: 10,
        target_utilization: 100,
        stable_window: flint_api::Duration::from_secs(6),
        scale_to_zero_grace_period: flint_api::Duration::from_secs(1),
        ..ScaleSpec::default()
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10 s");
}

/// Starts the loop over `gateways`, with `traffic` as the route of `hello`
/// (max 64 in flight); returns what the test needs, and the running loop.
fn start(
    gateways: &[SocketAddr],
    traffic: &[(&str, u32)],
) -> (Memory, AutoscalerHandle, Registry, Running) {
    let actuator = Memory::default();
    let source = DirectSource::new(
        gateways
            .iter()
            .map(|a| format!("http://{a}/metrics"))
            .collect(),
        Duration::from_secs(2),
    );
    let registry = Registry::new();
    let scaler = Autoscaler::new(actuator.clone(), source, config(), &registry).unwrap();
    let handle = scaler.handle();
    for &(name, _) in traffic {
        handle.upsert(rev(name), spec());
    }
    handle.set_backlog_routes(HashMap::from([(
        hello(),
        BacklogRoute {
            max_in_flight: 64,
            traffic: traffic.iter().map(|&(n, p)| (n.to_owned(), p)).collect(),
        },
    )]));
    (actuator, handle, registry, Running::spawn(scaler))
}

fn exported(registry: &Registry) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap()
}

#[tokio::test]
async fn a_scraped_pending_gauge_scales_from_zero_and_back_after_the_grace_period() {
    // Two gateway replicas, both reporting the shared queue's 1000.
    let ((a, pending_a), (b, pending_b)) = (gateway(1000).await, gateway(1000).await);
    let (actuator, handle, registry, running) = start(&[a, b], &[("hello-00001", 100)]);
    let key = rev("hello-00001");
    // ceil(min(1000, 64) / 10) = 7.
    wait_for("scaled to 7", || actuator.replicas_of(&key) == 7).await;
    let text = exported(&registry);
    assert!(
        text.contains(r#"flint_autoscaler_backlog{function="hello",namespace="default"} 1000"#),
        "{text}"
    );
    assert!(
        text.contains(r#"flint_autoscaler_decisions_total{reason="backlog"}"#),
        "{text}"
    );
    // Held while the backlog lasts (well past the 1 s grace period).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.desired(&key), Some(7));
    // The queue drains: the gauge disappears from both gateways.
    pending_a.store(0, Ordering::SeqCst);
    pending_b.store(0, Ordering::SeqCst);
    wait_for("back to zero", || actuator.replicas_of(&key) == 0).await;
    let text = exported(&registry);
    assert!(
        text.contains(r#"flint_autoscaler_backlog{function="hello",namespace="default"} 0"#),
        "{text}"
    );
    // Straight to 7 (never above), then down; a leading 0 is the loop's
    // first decision if it ran before the first scrape.
    let writes = writes_of(&actuator, &key);
    let from = writes.iter().position(|&n| n > 0).unwrap();
    assert_eq!(writes[from], 7, "{writes:?}");
    assert_eq!(writes.iter().max(), Some(&7), "{writes:?}");
    assert_eq!(writes.last(), Some(&0), "{writes:?}");
    running.stop().await;
}

#[tokio::test]
async fn gateway_replicas_reporting_one_queue_count_it_once() {
    // 30 pending, seen by three gateways: 3 replicas (a sum would give 9).
    let gateways = [
        gateway(30).await.0,
        gateway(30).await.0,
        gateway(30).await.0,
    ];
    let (actuator, _handle, registry, running) = start(&gateways, &[("hello-00001", 100)]);
    let key = rev("hello-00001");
    wait_for("scaled to 3", || actuator.replicas_of(&key) == 3).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(writes_of(&actuator, &key).iter().max(), Some(&3));
    let text = exported(&registry);
    assert!(
        text.contains(r#"flint_autoscaler_backlog{function="hello",namespace="default"} 30"#),
        "{text}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_50_50_split_scales_both_revisions_for_their_share() {
    let (a, _) = gateway(1000).await;
    let (actuator, _handle, _registry, running) =
        start(&[a], &[("hello-00002", 50), ("hello-00001", 50)]);
    // 64 in flight, 32 on each revision: 4 replicas each.
    for name in ["hello-00002", "hello-00001"] {
        let key = rev(name);
        wait_for(name, || actuator.replicas_of(&key) == 4).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for name in ["hello-00002", "hello-00001"] {
        assert_eq!(writes_of(&actuator, &rev(name)).iter().max(), Some(&4));
    }
    running.stop().await;
}

#[tokio::test]
async fn a_function_without_a_route_adds_no_backlog_demand() {
    let (a, _) = gateway(1000).await;
    let (actuator, handle, _registry, running) = start(&[a], &[("hello-00001", 100)]);
    handle.set_backlog_routes(HashMap::new());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(actuator.replicas_of(&rev("hello-00001")), 0);
    assert!(
        writes_of(&actuator, &rev("hello-00001"))
            .iter()
            .all(|&n| n == 0),
        "{:?}",
        writes_of(&actuator, &rev("hello-00001"))
    );
    running.stop().await;
}

#[tokio::test]
async fn promql_source_reads_the_backlog_as_the_max_over_gateways() {
    // One gateway a moment behind the other: 30 and 25 for the same queue.
    let (a, _) = gateway(30).await;
    let (b, _) = gateway(25).await;
    let prom = Prometheus::start(&[a, b]);
    let mut promql = prom.source();
    let keys = [rev("hello-00001")];
    let want = Pending::from([(hello(), 30), (FunctionKey::new("default", "other"), 2)]);
    // Wait (bounded) until Prometheus has scraped both gateways.
    let mut got = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if promql.collect(&keys).await.is_ok() {
            got = promql.take_pending();
            if got.as_ref() == Some(&want) {
                break;
            }
        }
    }
    assert_eq!(got, Some(want));
    // Handed out once per collect.
    assert_eq!(promql.take_pending(), None);
}
