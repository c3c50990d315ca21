//! Asynchronous invocations end to end: accepted by a real gateway, queued
//! durably (embedded store; NATS JetStream with a real nats-server),
//! delivered through the gateway to a function that starts at zero and
//! fails 20% of its attempts — across a restart of the store and worker, and
//! a crash of nats-server. Every accepted invocation must be handled exactly
//! once or dead-lettered after its last retry. A crash of the gateway (its
//! delivery worker dies holding leases) loses none either.

mod events_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use events_support::*;
use flint_runtime::events::policy::Backoff;
use flint_runtime::events::{self, Queue, WorkerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Invocations per run. The acceptance target is 10,000; each test uses it
/// in full.
const N: usize = 10_000;
const MAX_RETRIES: u32 = 3;
const MAX_IN_FLIGHT: u32 = 64;
/// Bound on a whole run, so a bug fails instead of hanging.
const RUN_BOUND: Duration = Duration::from_secs(60);

fn fast() -> WorkerConfig {
    WorkerConfig {
        backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
        },
        fetch_wait: Duration::from_millis(200),
        lease_margin: Duration::from_secs(20),
        ..WorkerConfig::default()
    }
}

fn ids(prefix: &str) -> Vec<String> {
    (0..N).map(|i| format!("{prefix}-{i}")).collect()
}

async fn dead_ids(queue: &impl Queue) -> Vec<String> {
    let dead = queue.dead_letters(&function_id(), N).await.unwrap();
    for d in &dead {
        assert!(
            d.reason
                .starts_with(&format!("gave up after {} attempts", MAX_RETRIES + 1)),
            "{}",
            d.reason
        );
        assert!(d.reason.contains("status 503"), "{}", d.reason);
    }
    dead.into_iter().map(|d| d.invocation.id).collect()
}

/// The expected number of dead letters: ids whose every attempt fails.
fn expected_dead(ids: &[String]) -> usize {
    ids.iter()
        .filter(|id| (1..=MAX_RETRIES + 1).all(|a| fails(id, &a.to_string())))
        .count()
}

/// A gateway whose delivery worker takes from the NATS queue at `nats_url`.
struct NatsGateway {
    gw: RunningGateway,
    stop: watch::Sender<bool>,
    worker: JoinHandle<()>,
}

async fn nats_gateway(
    function: &Function,
    nats: &events::NatsSettings,
    config: WorkerConfig,
) -> NatsGateway {
    let gw = gateway(function.addr).await;
    let cluster = events::nats(nats, &gw.url(), config).await.unwrap();
    set_target(&cluster.targets, MAX_RETRIES, MAX_IN_FLIGHT);
    attach(&gw.gateway, cluster.intake);
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(cluster.worker.run(stopped));
    NatsGateway { gw, stop, worker }
}

/// Logs as `FLINT_LOG` asks.
fn start_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("FLINT_LOG").unwrap_or_default())
        .try_init();
}

/// Fails the test at once, saying what to install, without a nats-server.
fn require_nats() {
    if !nats_available() {
        panic!("nats-server is not installed (apt-get install -y nats-server)");
    }
}

/// Tells the worker to stop and waits (bounded) for it to end.
async fn stop_worker(stop: &watch::Sender<bool>, worker: JoinHandle<()>) {
    stop.send(true).unwrap();
    tokio::time::timeout(RUN_BOUND, worker)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_every_invocation_settles_once_across_a_restart() {
    start_logging();
    let dir = TempDir::new("events-embedded");
    let function = function().await;
    let ids = ids("emb");

    // First run: accept everything, deliver part of it, then stop the
    // worker and the gateway as `flint dev` does on Ctrl-C.
    let gw = gateway(function.addr).await;
    let local = events::local_with(&dir.0, &gw.url(), fast()).unwrap();
    set_target(&local.targets, MAX_RETRIES, MAX_IN_FLIGHT);
    attach(&gw.gateway, local.intake);
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(local.worker.run(stopped));
    let refusals = submit_all(gw.url(), ids.clone(), 32, Duration::ZERO).await;
    assert_eq!(refusals, 0);
    let seen = Arc::clone(&function.seen);
    assert!(wait_until(RUN_BOUND, || seen.handled_count() >= N / 3).await);
    assert!(
        gw.pokes.load(Ordering::SeqCst) >= 1,
        "woken from zero by a poke"
    );
    stop_worker(&stop, worker).await;
    let text = metrics(&gw.gateway);
    assert_eq!(
        sample(
            &text,
            "flint_async_accepted_total{function=\"work\",namespace=\"default\"}"
        ),
        N as f64
    );
    gw.shutdown().await;
    drop(local.store);
    drop(local.targets);
    let handled_before = function.seen.handled_count();
    assert!(handled_before < N, "the restart must happen mid-run");

    // Second run on the same store: the rest is delivered.
    let gw = gateway(function.addr).await;
    let mut reopen = 0;
    let local = loop {
        match events::local_with(&dir.0, &gw.url(), fast()) {
            Ok(local) => break local,
            // The previous store's writer thread may still be closing the file.
            Err(err) => {
                reopen += 1;
                assert!(reopen < 100, "store not reopened: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        }
    };
    set_target(&local.targets, MAX_RETRIES, MAX_IN_FLIGHT);
    attach(&gw.gateway, local.intake);
    let (stop, stopped) = watch::channel(false);
    let store = local.store.clone();
    let worker = tokio::spawn(local.worker.run(stopped));
    let want_dead = expected_dead(&ids);
    let deadline = tokio::time::Instant::now() + RUN_BOUND;
    loop {
        let dead = store.dead_letters(&function_id(), N).await.unwrap().len();
        if function.seen.handled_count() + dead >= N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "handled {}, dead {dead}",
            function.seen.handled_count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last settles land, then check the pending gauge empties.
    let drained = wait_until(Duration::from_secs(10), || {
        let text = metrics(&gw.gateway);
        !text.contains("flint_async_pending{")
            || sample(
                &text,
                "flint_async_pending{function=\"work\",namespace=\"default\"}",
            ) == 0.0
    })
    .await;
    assert!(drained);
    stop_worker(&stop, worker).await;
    let dead = dead_ids(&store).await;
    assert_eq!(dead.len(), want_dead);
    assert_each_settled_once(&function.seen, &ids, &dead);
    assert!(
        function.seen.max_in_flight.load(Ordering::SeqCst) <= CONCURRENCY as usize,
        "the replica's concurrency limit held"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_every_invocation_settles_once_across_a_server_crash() {
    start_logging();
    require_nats();
    let dir = TempDir::new("events-nats");
    let mut nats = NatsServer::start(&dir.0);
    let function = function().await;
    let ids = ids("nats");
    let NatsGateway { gw, stop, worker } = nats_gateway(&function, &nats.settings(), fast()).await;
    let queue = flint_runtime::events::NatsQueue::connect(&nats.settings())
        .await
        .unwrap();
    let submitter = tokio::spawn(submit_all(
        gw.url(),
        ids.clone(),
        8,
        Duration::from_millis(2),
    ));

    // Crash nats-server while invocations are being accepted and delivered.
    let seen = Arc::clone(&function.seen);
    assert!(wait_until(RUN_BOUND, || seen.handled_count() >= N / 10).await);
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let handled_at_crash = function.seen.handled_count();
    nats.restart();
    let refusals = tokio::time::timeout(RUN_BOUND, submitter)
        .await
        .unwrap()
        .unwrap();
    assert!(handled_at_crash < N, "the crash must happen mid-run");

    let want_dead = expected_dead(&ids);
    let seen = Arc::clone(&function.seen);
    assert!(
        wait_until(RUN_BOUND, || seen.handled_count() + want_dead >= N).await,
        "handled {} of {}",
        function.seen.handled_count(),
        N - want_dead
    );
    let settled = wait_until(Duration::from_secs(30), || {
        let text = metrics(&gw.gateway);
        sample(&text, "flint_async_dead_letters_total{function=\"work\",namespace=\"default\",reason=\"max_retries\"}") >= want_dead as f64
    })
    .await;
    assert!(settled);
    stop_worker(&stop, worker).await;
    let dead = dead_ids(&queue).await;
    assert_eq!(dead.len(), want_dead);
    assert_each_settled_once(&function.seen, &ids, &dead);
    assert!(
        gw.pokes.load(Ordering::SeqCst) >= 1,
        "woken from zero by a poke"
    );
    assert!(function.seen.max_in_flight.load(Ordering::SeqCst) <= CONCURRENCY as usize);
    eprintln!(
        "nats run: {refusals} submissions refused while nats-server was down, {want_dead} dead letters"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_no_invocation_is_lost_across_a_gateway_crash() {
    start_logging();
    require_nats();
    let dir = TempDir::new("events-nats-gw");
    let nats = NatsServer::start(&dir.0);
    let function = function().await;
    let ids = ids("gw");
    // A short lease, so what the crashed worker held comes back soon.
    let config = WorkerConfig {
        lease_margin: Duration::from_secs(5),
        ..fast()
    };

    let NatsGateway {
        gw,
        stop: _stop,
        worker,
    } = nats_gateway(&function, &nats.settings(), config.clone()).await;
    let refusals = submit_all(gw.url(), ids.clone(), 32, Duration::ZERO).await;
    assert_eq!(refusals, 0);

    // The gateway crashes mid-run: its worker dies at once, holding
    // leases on invocations in flight; the data plane goes with it.
    let seen = Arc::clone(&function.seen);
    assert!(wait_until(RUN_BOUND, || seen.handled_count() >= N / 5).await);
    worker.abort();
    assert!(worker.await.unwrap_err().is_cancelled());
    gw.shutdown().await;
    let handled_at_crash = function.seen.handled_count();
    assert!(handled_at_crash < N, "the crash must happen mid-run");

    // A new gateway on the same queue takes over.
    let NatsGateway { gw, stop, worker } = nats_gateway(&function, &nats.settings(), config).await;
    let queue = flint_runtime::events::NatsQueue::connect(&nats.settings())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + RUN_BOUND;
    let dead = loop {
        let dead = dead_ids(&queue).await;
        let settled = {
            let handled = function.seen.handled.lock().unwrap();
            ids.iter()
                .filter(|id| handled.contains_key(*id) || dead.contains(id))
                .count()
        };
        if settled == N {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{settled} of {N} settled after the crash"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop_worker(&stop, worker).await;
    assert_none_lost(&function.seen, &ids, &dead, MAX_IN_FLIGHT as usize);
    // Each gateway holds the replica to its concurrency; the crashed one's
    // last requests may still be running when the new one starts.
    assert!(function.seen.max_in_flight.load(Ordering::SeqCst) <= 2 * CONCURRENCY as usize);
    eprintln!(
        "gateway crash: {handled_at_crash} handled before it, {} dead letters",
        dead.len()
    );
    gw.shutdown().await;
}
