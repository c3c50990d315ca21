//! The autoscaler loop with an in-memory actuator and a source the test
//! controls: pokes scale from zero with one write, a failing source holds
//! the scale and is counted, and the HTTP poke route reaches the loop only
//! with the control token; no poke is believed beyond the gateway's queue.

#[path = "support/actuator.rs"]
mod actuator;
#[path = "support/autoscaler_loop.rs"]
mod autoscaler_loop;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actuator::Memory;
use autoscaler_loop::{Running, config};
use flint_api::ScaleSpec;
use flint_api::backend::{PokeSink, RevisionKey};
use flint_api::drain::ControlToken;
use flint_api::poke::ScalePoke;
use flint_operator::autoscaler::source::{MetricsSource, Reading, Readings, SourceError};
use flint_operator::autoscaler::{Autoscaler, poke_router};
use prometheus::Registry;

/// Reports a fixed load, or fails while `down` is set.
#[derive(Clone, Default)]
struct Scripted {
    load: Arc<Mutex<Option<Reading>>>,
}

impl MetricsSource for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        match *self.load.lock().unwrap() {
            Some(r) => Ok(revisions.iter().map(|k| (k.clone(), r)).collect()),
            None => Err(SourceError::Http {
                url: "scripted".into(),
                reason: "down".into(),
            }),
        }
    }
}

fn key() -> RevisionKey {
    RevisionKey::new("default", "hello", "hello-00001")
}

fn spec() -> ScaleSpec {
    ScaleSpec {
        initial: 0,
        ..ScaleSpec::default()
    }
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within 5 s");
}

fn poke(waiting: u32) -> ScalePoke {
    ScalePoke {
        namespace: "default".into(),
        function: "hello".into(),
        revision: "hello-00001".into(),
        waiting,
    }
}

#[tokio::test]
async fn repeated_pokes_during_one_cold_start_write_once() {
    let actuator = Memory::default();
    let source = Scripted::default();
    *source.load.lock().unwrap() = Some(Reading::default());
    let registry = Registry::new();
    let scaler = Autoscaler::new(actuator.clone(), source, config(), &registry).unwrap();
    let handle = scaler.handle();
    handle.upsert(key(), spec());
    let running = Running::spawn(scaler);
    // Let it settle at zero (initial 0: no write needed, but a first write of 0 is allowed).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = actuator.writes().len();
    for _ in 0..5 {
        handle.poke(poke(1));
    }
    wait_for(|| handle.desired(&key()) == Some(1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes = actuator.writes();
    assert_eq!(&writes[before..], &[(key(), 1)], "{writes:?}");
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("flint_autoscaler_decisions_total{reason=\"poke\"}"),
        "{text}"
    );
    assert!(text.contains("flint_autoscaler_desired_replicas{function=\"hello\",namespace=\"default\",revision=\"hello-00001\"} 1"), "{text}");
    running.stop().await;
}

#[tokio::test]
async fn a_failing_source_holds_the_scale_and_is_counted() {
    let actuator = Memory::default();
    let source = Scripted::default();
    *source.load.lock().unwrap() = Some(Reading {
        concurrency: 350.0,
        rps: 350.0,
    });
    let registry = Registry::new();
    let scaler = Autoscaler::new(actuator.clone(), source.clone(), config(), &registry).unwrap();
    let handle = scaler.handle();
    handle.upsert(
        key(),
        ScaleSpec {
            scale_to_zero_grace_period: flint_api::Duration::from_secs(1),
            ..spec()
        },
    );
    let running = Running::spawn(scaler);
    wait_for(|| handle.desired(&key()) == Some(5)).await;
    *source.load.lock().unwrap() = None;
    // Well past the staleness limit (5 s) and the grace period (1 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(handle.desired(&key()), Some(5));
    assert_eq!(actuator.replicas_of(&key()), 5);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(
            "flint_autoscaler_metrics_source_errors_total{kind=\"http\",source=\"scripted\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("flint_autoscaler_decisions_total{reason=\"no_data\"}"),
        "{text}"
    );
    running.stop().await;
}

const TOKEN: &str = "the-control-token";

/// Serves the poke route of `handle` (guarded by `token`) on a free port.
async fn serve_pokes(
    handle: flint_operator::autoscaler::AutoscalerHandle,
    token: Option<&str>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = poke_router(handle, token.and_then(ControlToken::new));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// POSTs `poke` with `authorization` (a whole header value) and returns the
/// answer's status line and body.
async fn post_poke(
    addr: std::net::SocketAddr,
    authorization: Option<&str>,
    poke: &ScalePoke,
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = serde_json::to_string(poke).unwrap();
    let auth = authorization
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{}",
        flint_api::poke::POKE_PATH,
        body.len(),
        body
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn the_http_poke_route_reaches_the_loop_with_the_control_token() {
    let actuator = Memory::default();
    let source = Scripted::default();
    *source.load.lock().unwrap() = Some(Reading::default());
    let scaler = Autoscaler::new(actuator.clone(), source, config(), &Registry::new()).unwrap();
    let handle = scaler.handle();
    handle.upsert(key(), spec());
    let addr = serve_pokes(handle, Some(TOKEN)).await;
    let running = Running::spawn(scaler);
    let (status, _) = post_poke(addr, Some(&format!("Bearer {TOKEN}")), &poke(3)).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status}");
    wait_for(|| actuator.replicas_of(&key()) == 1).await;
    running.stop().await;
}

#[tokio::test]
async fn a_poke_without_the_control_token_is_refused_and_scales_nothing() {
    let actuator = Memory::default();
    let source = Scripted::default();
    *source.load.lock().unwrap() = Some(Reading::default());
    let scaler = Autoscaler::new(actuator.clone(), source, config(), &Registry::new()).unwrap();
    let handle = scaler.handle();
    handle.upsert(key(), spec());
    let guarded = serve_pokes(handle.clone(), Some(TOKEN)).await;
    let unconfigured = serve_pokes(handle.clone(), None).await;
    let running = Running::spawn(scaler);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = actuator.writes();

    let (status, body) = post_poke(guarded, None, &poke(1_000_000)).await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(body.contains("missing credential"), "{body}");
    let (status, body) = post_poke(guarded, Some("Basic dXNlcjpwdw=="), &poke(5)).await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(body.contains("missing credential"), "{body}");
    let (status, body) = post_poke(guarded, Some("Bearer not-the-token"), &poke(5)).await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(body.contains("wrong credential"), "{body}");
    // A receiver without a token authenticates nobody, whatever is sent.
    let (status, body) = post_poke(unconfigured, Some(&format!("Bearer {TOKEN}")), &poke(5)).await;
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    assert!(body.contains("FLINT_CONTROL_TOKEN"), "{body}");

    // Several decisions later, nothing was scaled.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(actuator.writes(), before);
    assert_eq!(actuator.replicas_of(&key()), 0);
    assert_eq!(handle.desired(&key()), Some(0));
    running.stop().await;
}

#[tokio::test]
async fn a_poke_claiming_a_million_waiting_scales_only_as_far_as_the_queue_allows() {
    // Target 10 per replica: a full queue of 30 needs 3 replicas; the
    // million claimed would need max (100).
    let actuator = Memory::default();
    let source = Scripted::default();
    *source.load.lock().unwrap() = Some(Reading::default());
    let scaler = Autoscaler::new(
        actuator.clone(),
        source,
        flint_operator::autoscaler::AutoscalerConfig {
            max_waiting: 30,
            ..config()
        },
        &Registry::new(),
    )
    .unwrap();
    let handle = scaler.handle();
    handle.upsert(
        key(),
        ScaleSpec {
            target: 10,
            target_utilization: 100,
            max: 100,
            ..spec()
        },
    );
    let addr = serve_pokes(handle.clone(), Some(TOKEN)).await;
    let running = Running::spawn(scaler);
    let bearer = format!("Bearer {TOKEN}");
    for _ in 0..3 {
        let (status, _) = post_poke(addr, Some(&bearer), &poke(1_000_000)).await;
        assert!(status.starts_with("HTTP/1.1 202"), "{status}");
    }
    wait_for(|| actuator.replicas_of(&key()) == 3).await;
    // Re-poking holds it there, never higher.
    for _ in 0..3 {
        post_poke(addr, Some(&bearer), &poke(u32::MAX)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes = actuator.writes();
    assert!(writes.iter().all(|(_, n)| *n <= 3), "{writes:?}");
    assert_eq!(handle.desired(&key()), Some(3));
    running.stop().await;
}

/// Reports load only for the revisions it has load for, as the gateway's
/// `/metrics` shows only revisions with recent traffic; zeros for the
/// others asked for.
#[derive(Clone, Default)]
struct Sparse {
    load: Arc<Mutex<std::collections::HashMap<RevisionKey, Reading>>>,
    asked: Arc<Mutex<Vec<RevisionKey>>>,
}

impl MetricsSource for Sparse {
    fn name(&self) -> &'static str {
        "sparse"
    }
    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        *self.asked.lock().unwrap() = revisions.to_vec();
        let mut readings: Readings = self.load.lock().unwrap().clone();
        for key in revisions {
            readings.entry(key.clone()).or_default();
        }
        Ok(readings)
    }
}

#[tokio::test]
async fn an_idle_revision_at_zero_is_skipped_and_its_first_traffic_scales_it_up() {
    let actuator = Memory::default();
    let source = Sparse::default();
    let registry = Registry::new();
    let scaler = Autoscaler::new(actuator.clone(), source.clone(), config(), &registry).unwrap();
    let handle = scaler.handle();
    let warm = RevisionKey::new("default", "warm", "warm-00001");
    handle.upsert(key(), spec());
    handle.upsert(
        warm.clone(),
        ScaleSpec {
            min: 1,
            initial: 1,
            ..ScaleSpec::default()
        },
    );
    let running = Running::spawn(scaler);
    // Settled at zero, the idle revision leaves the ticks and the source's
    // list; the one with `min: 1` stays decided and warm.
    wait_for(|| !handle.awake().contains(&key())).await;
    wait_for(|| !source.asked.lock().unwrap().contains(&key())).await;
    assert!(handle.awake().contains(&warm));
    assert_eq!(handle.desired(&key()), Some(0));
    assert_eq!(handle.desired(&warm), Some(1));
    // Its first series (traffic the gateway now shows) wakes it.
    source.load.lock().unwrap().insert(
        key(),
        Reading {
            concurrency: 250.0,
            rps: 250.0,
        },
    );
    wait_for(|| handle.desired(&key()).is_some_and(|d| d >= 3)).await;
    assert!(handle.awake().contains(&key()));
    assert!(
        actuator
            .writes()
            .iter()
            .any(|(k, n)| *k == key() && *n >= 3)
    );
    running.stop().await;
}

#[tokio::test]
async fn a_dormant_revision_wakes_on_a_poke() {
    let actuator = Memory::default();
    let source = Sparse::default();
    let registry = Registry::new();
    let scaler = Autoscaler::new(actuator.clone(), source, config(), &registry).unwrap();
    let handle = scaler.handle();
    handle.upsert(key(), spec());
    let running = Running::spawn(scaler);
    wait_for(|| !handle.awake().contains(&key())).await;
    handle.poke(poke(1));
    wait_for(|| handle.desired(&key()) == Some(1)).await;
    // Kept by the keep-alive grace after the poke, not skipped.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(handle.desired(&key()), Some(1));
    assert!(handle.awake().contains(&key()));
    running.stop().await;
}
