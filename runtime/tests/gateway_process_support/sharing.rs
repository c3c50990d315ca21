//! Several gateway processes in front of one replica with `concurrency: 4`
//! under a backlog: the replica never has more than 4 requests in flight
//! from all of them together, and they serve as many requests per second
//! as one gateway does, whether the traffic is spread over every gateway
//! or all of it arrives at one (whose own share alone would be 1 or 2).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flint_api::backend::{PokeSink, RevisionKey};
use flint_api::drain::ControlToken;
use flint_api::poke::ScalePoke;
use flint_runtime::gateway::capacity::{DEFAULT_SETTLE, View};
use flint_runtime::gateway::{Gateway, GatewayConfig};
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{Child, Command, stdin_lines};
use crate::gateway_support::{get, ready, revision, single};

/// The control token the child gateways share.
const TOKEN: &str = "test-control-token";
/// The replica's hard limit.
const CONCURRENCY: u32 = 4;
/// How long the replica takes per request: long enough that throughput
/// measures capacity (4 / 40 ms = 100 requests per second), not CPU.
const SERVICE: Duration = Duration::from_millis(40);
/// Clients sending requests back to back: the backlog.
const CLIENTS: usize = 16;
/// Requests per measurement (about 3 s at full capacity).
const REQUESTS: usize = 300;
/// The replica's id, as every gateway knows it.
const REPLICA: &str = "app-0";
const HOST: &str = "sh.ns.localhost";

struct NoPoke;
impl PokeSink for NoPoke {
    fn poke(&self, _: ScalePoke) {}
}

/// A gateway (data and admin ports printed on one line) with the control
/// token, so it can share slots once told its peers.
pub async fn child_gateway() {
    let mut config = GatewayConfig::dev();
    config.domain = "localhost".into();
    config.queue_size = 200;
    config.max_buffered_bytes = 16 * 1024;
    let gateway = Gateway::new(config, Arc::new(NoPoke)).unwrap();
    gateway.set_control_token(ControlToken::new(TOKEN).unwrap());
    super::serve_child(gateway).await;
}

/// A replica whose `/work` takes [`SERVICE`]; `/max` tells the most
/// requests it ever had in flight at once and starts counting anew.
pub async fn counting_app() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (now, max) = (Arc::clone(&now), Arc::clone(&max));
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (now, max) = (Arc::clone(&now), Arc::clone(&max));
                async move {
                    let body = match req.uri().path() {
                        "/work" => {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(n, Ordering::SeqCst);
                            tokio::time::sleep(SERVICE).await;
                            now.fetch_sub(1, Ordering::SeqCst);
                            "done".to_owned()
                        }
                        "/max" => max.swap(0, Ordering::SeqCst).to_string(),
                        _ => "app".to_owned(),
                    };
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    let mut lines = stdin_lines();
    while lines.recv().await.is_some() {}
}

/// Starts `n` gateways routing to the replica at `app`; with `share`, each
/// is told the others (and the test waits for the split to settle).
async fn gateways(n: usize, app: SocketAddr, share: bool) -> Vec<Child> {
    let mut gws = Vec::new();
    for _ in 0..n {
        gws.push(Child::start("share-gateway", &[]).await);
    }
    let admins: Vec<SocketAddr> = gws.iter().map(|g| g.addrs[1]).collect();
    let key = RevisionKey::new("ns", "sh", "sh-00001");
    for gw in &mut gws {
        if share {
            gw.send(&Command::Peers(gw.addrs[1], admins.clone())).await;
        }
        let rev = revision("sh-00001", CONCURRENCY, 60);
        gw.send(&Command::Routes(vec![single("sh", rev)])).await;
        gw.send(&Command::Endpoints(key.clone(), vec![ready(REPLICA, app)]))
            .await;
    }
    if share {
        tokio::time::sleep(DEFAULT_SETTLE + Duration::from_millis(300)).await;
    }
    gws
}

/// One measurement: [`CLIENTS`] clients send [`REQUESTS`] requests in all,
/// back to back, client `i` to `targets[i % len]`.
struct Run {
    per_second: f64,
    max_in_flight: usize,
    /// Requests answered, per target.
    served: Vec<usize>,
}

async fn run(targets: &[SocketAddr], app: SocketAddr) -> Run {
    run_n(targets, app, REQUESTS).await
}

/// [`run`] with `requests` requests.
async fn run_n(targets: &[SocketAddr], app: SocketAddr, requests: usize) -> Run {
    let (_, _, _) = get(app, "app", "/max").await; // start counting now
    let next = Arc::new(AtomicUsize::new(0));
    let served: Arc<Vec<AtomicUsize>> =
        Arc::new(targets.iter().map(|_| AtomicUsize::new(0)).collect());
    let began = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let target = targets[i % targets.len()];
            let (next, served) = (Arc::clone(&next), Arc::clone(&served));
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < requests {
                    let (status, _, body) = get(target, HOST, "/work").await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    served[i % served.len()].fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let elapsed = began.elapsed();
    let (_, _, max) = get(app, "app", "/max").await;
    Run {
        per_second: requests as f64 / elapsed.as_secs_f64(),
        max_in_flight: max.trim().parse().unwrap(),
        served: served.iter().map(|s| s.load(Ordering::SeqCst)).collect(),
    }
}

/// The gateway whose own share of the replica is smallest: all traffic
/// there is the hardest case for lending.
fn smallest_share(gws: &[Child]) -> SocketAddr {
    let admins: Vec<SocketAddr> = gws.iter().map(|g| g.addrs[1]).collect();
    let now = Instant::now();
    gws.iter()
        .min_by_key(|g| View::new(g.addrs[1], admins.clone(), 1, now).share(CONCURRENCY, REPLICA))
        .map(|g| g.addrs[0])
        .unwrap()
}

/// `n` gateways sharing one replica: spread and one-gateway traffic both
/// stay within `concurrency` and within 10 % of one gateway's throughput.
/// After the one-gateway run, that gateway holds every slot; when the
/// traffic spreads again the others get their shares back (each serves
/// its part), though it still has a backlog of its own.
pub async fn gateways_share_a_replica(n: usize) {
    let app = Child::start("counting-app", &[]).await;
    let app_addr = app.addrs[0];

    let solo = gateways(1, app_addr, false).await;
    let base = run(&[solo[0].addrs[0]], app_addr).await;
    drop(solo);
    println!(
        "one gateway: {:.1} req/s, max in flight {}",
        base.per_second, base.max_in_flight
    );
    assert!(base.max_in_flight <= CONCURRENCY as usize);
    assert!(
        base.per_second > 0.8 * f64::from(CONCURRENCY) / SERVICE.as_secs_f64(),
        "one gateway should nearly fill the replica: {:.1} req/s",
        base.per_second
    );

    let gws = gateways(n, app_addr, true).await;
    let all: Vec<SocketAddr> = gws.iter().map(|g| g.addrs[0]).collect();
    let spread = run(&all, app_addr).await;
    let one = run(&[smallest_share(&gws)], app_addr).await;
    let again = run(&all, app_addr).await;
    for (shape, r) in [
        ("spread", &spread),
        ("one gateway", &one),
        ("spread again", &again),
    ] {
        let ratio = r.per_second / base.per_second;
        println!(
            "{n} gateways, {shape}: {:.1} req/s ({ratio:.3} of one gateway's), max in flight {}",
            r.per_second, r.max_in_flight
        );
        assert!(
            r.max_in_flight <= CONCURRENCY as usize,
            "{n} gateways, {shape}: the replica had {} in flight",
            r.max_in_flight
        );
        assert!(
            ratio >= 0.9,
            "{n} gateways, {shape}: {:.1} req/s against {:.1} with one gateway",
            r.per_second,
            base.per_second
        );
    }
    for r in [&spread, &again] {
        println!("{n} gateways, requests served per gateway: {:?}", r.served);
        assert!(
            r.served.iter().all(|&s| s >= REQUESTS / (3 * n)),
            "every gateway gets its share: {:?}",
            r.served
        );
    }
}

/// The measurement can fail: two gateways told nothing of each other each
/// admit `concurrency`, and the replica sees more than 4 at once.
pub async fn without_sharing_the_limit_is_per_gateway() {
    let app = Child::start("counting-app", &[]).await;
    let gws = gateways(2, app.addrs[0], false).await;
    let all: Vec<SocketAddr> = gws.iter().map(|g| g.addrs[0]).collect();
    let r = run(&all, app.addrs[0]).await;
    println!("2 gateways, not sharing: max in flight {}", r.max_in_flight);
    assert!(
        r.max_in_flight > CONCURRENCY as usize,
        "{}",
        r.max_in_flight
    );
}

/// A gateway that dies costs only its share: the survivor goes on with its
/// own slots at once (asking the dead one fails fast and holds nothing
/// up), and once the gateway set drops the dead one and settles, it has
/// the whole replica again.
pub async fn a_dead_peer_costs_only_its_share_until_the_set_changes() {
    let app = Child::start("counting-app", &[]).await;
    let app_addr = app.addrs[0];
    let solo = gateways(1, app_addr, false).await;
    let base = run(&[solo[0].addrs[0]], app_addr).await;
    drop(solo);

    let mut gws = gateways(2, app_addr, true).await;
    let mut dead = gws.pop().unwrap();
    dead.process.kill().await.unwrap();
    let survivor = &mut gws[0];
    let alone = run(&[survivor.addrs[0]], app_addr).await;
    let ratio = alone.per_second / base.per_second;
    println!(
        "2 gateways, one dead: {:.1} req/s ({ratio:.3} of one gateway's), max in flight {}",
        alone.per_second, alone.max_in_flight
    );
    assert!(alone.max_in_flight <= CONCURRENCY as usize);
    assert!(
        (0.4..0.7).contains(&ratio),
        "its own share (2 of 4) serves, no more: {ratio:.3}"
    );

    survivor
        .send(&Command::Peers(survivor.addrs[1], vec![survivor.addrs[1]]))
        .await;
    tokio::time::sleep(DEFAULT_SETTLE + Duration::from_millis(300)).await;
    let whole = run(&[survivor.addrs[0]], app_addr).await;
    let ratio = whole.per_second / base.per_second;
    println!(
        "the dead gateway left the set: {:.1} req/s ({ratio:.3} of one gateway's), max in flight {}",
        whole.per_second, whole.max_in_flight
    );
    assert!(whole.max_in_flight <= CONCURRENCY as usize);
    assert!(ratio >= 0.9, "{ratio:.3}");
}

/// The gateway set changes under a backlog: a third gateway joins the two
/// serving it, then leaves again. Every gateway keeps at most its new
/// share at once and grows only once the change settled, so the replica
/// never has more than 4 in flight, and every request is served.
pub async fn a_gateway_joining_and_leaving_under_load_never_exceeds_concurrency() {
    let app = Child::start("counting-app", &[]).await;
    let app_addr = app.addrs[0];
    let mut gws = gateways(3, app_addr, false).await;
    let admins: Vec<SocketAddr> = gws.iter().map(|g| g.addrs[1]).collect();
    let (two, three) = (admins[..2].to_vec(), admins.clone());
    for gw in &mut gws {
        gw.send(&Command::Peers(gw.addrs[1], two.clone())).await;
    }
    tokio::time::sleep(DEFAULT_SETTLE + Duration::from_millis(300)).await;
    // The traffic goes to the first two; the third, once in the set,
    // lends its share to them.
    let targets: Vec<SocketAddr> = gws[..2].iter().map(|g| g.addrs[0]).collect();
    let load = tokio::spawn(async move { run_n(&targets, app_addr, 700).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for gw in &mut gws {
        gw.send(&Command::Peers(gw.addrs[1], three.clone())).await;
    }
    tokio::time::sleep(DEFAULT_SETTLE + Duration::from_millis(1000)).await;
    for gw in &mut gws {
        gw.send(&Command::Peers(gw.addrs[1], two.clone())).await;
    }
    let r = load.await.unwrap();
    println!(
        "a gateway joined and left under load: {:.1} req/s, max in flight {}, served {:?}",
        r.per_second, r.max_in_flight, r.served
    );
    assert!(
        r.max_in_flight <= CONCURRENCY as usize,
        "the replica had {} in flight",
        r.max_in_flight
    );
    assert_eq!(r.served.iter().sum::<usize>(), 700);
}
