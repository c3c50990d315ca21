//! Sharing a replica's `concurrency` with other gateways, over real
//! sockets, the lender's side: only a peer with the control token may ask
//! for slots; an ask is bounded; a lender hands over only free slots and
//! takes them off its own limit before it answers; and a peer that is gone
//! does not hold up requests this gateway has slots for.

mod gateway_support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flint_api::drain::ControlToken;
use flint_api::function::Protocol;
use flint_runtime::gateway::PeerGateways;
use flint_runtime::gateway::capacity::wire::{
    CAPACITY_PATH, CapacityAsk, CapacityGrant, MAX_ASK_REPLICAS, ReplicaRef,
};
use flint_runtime::gateway::capacity::{DEFAULT_SETTLE, View};
use gateway_support::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

const TOKEN: &str = "right-token";

async fn admin(gw: &Running) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = gw.gateway.admin_router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// An address nobody listens on: a gateway that is gone.
async fn gone() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn ask(replicas: Vec<ReplicaRef>, want: u32) -> CapacityAsk {
    CapacityAsk {
        namespace: "ns".into(),
        function: "c".into(),
        revision: "c-00001".into(),
        want,
        replicas,
    }
}

async fn post(admin: SocketAddr, token: Option<&str>, body: &CapacityAsk) -> Answer {
    let mut req = Request::post(CAPACITY_PATH)
        .header("host", "admin")
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    request(admin, req).await
}

fn replica(id: &str, addr: SocketAddr) -> ReplicaRef {
    ReplicaRef {
        id: id.into(),
        addr,
    }
}

#[tokio::test]
async fn only_peers_with_the_control_token_may_ask_for_slots() {
    let gw = gateway(config()).await;
    let admin = admin(&gw).await;
    let one = ask(vec![replica("r0", "127.0.0.1:1".parse().unwrap())], 1);
    let (status, _, _) = post(admin, Some(TOKEN), &one).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token configured");

    gw.gateway
        .set_control_token(ControlToken::new(TOKEN).unwrap());
    let (status, headers, _) = post(admin, None, &one).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = post(admin, Some("wrong-token"), &one).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A revision this gateway does not know: nothing to give.
    let (status, _, body) = post(admin, Some(TOKEN), &one).await;
    assert_eq!(status, StatusCode::OK);
    let grant: CapacityGrant = serde_json::from_str(&body).unwrap();
    assert_eq!(grant, CapacityGrant::default());

    // An ask naming too many replicas is refused.
    let many = (0..=MAX_ASK_REPLICAS)
        .map(|i| replica(&format!("r{i}"), "127.0.0.1:1".parse().unwrap()))
        .collect();
    let (status, _, body) = post(admin, Some(TOKEN), &ask(many, 1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_gateway_that_shares_is_ready_only_once_it_knows_the_gateway_set() {
    let mut cfg = config();
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    cfg.peers = PeerGateways::Service {
        namespace: "flint".into(),
        name: "flint-gateway-admin".into(),
        me,
    };
    let gw = gateway(cfg).await;
    let admin = admin(&gw).await;
    gw.gateway.set_routes(vec![]);
    // Without the control token it cannot share: ready as a single gateway.
    let (status, _, _) = get(admin, "admin", "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    gw.gateway
        .set_control_token(ControlToken::new(TOKEN).unwrap());
    let (status, _, body) = get(admin, "admin", "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "waiting for the gateway set\n");
    gw.gateway.set_peers(me, vec![]);
    let (status, _, _) = get(admin, "admin", "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    gw.shutdown().await;

    // A set that cannot be learnt does not keep it unready.
    let mut cfg = config();
    cfg.peers = PeerGateways::Fixed { me, all: vec![me] };
    let gw = gateway(cfg).await;
    gw.gateway.set_routes(vec![]);
    gw.gateway
        .set_control_token(ControlToken::new(TOKEN).unwrap());
    assert!(!gw.gateway.is_ready());
    gw.gateway.peers_unavailable();
    assert!(gw.gateway.is_ready());
    gw.shutdown().await;
}

#[tokio::test]
async fn a_lender_gives_only_free_slots_and_no_longer_uses_them() {
    let app = app("c", Protocol::Http1).await;
    let mut cfg = config();
    cfg.queue_size = 10;
    let gw = gateway(cfg).await;
    let me = admin(&gw).await;
    let peer = gone().await;
    gw.gateway
        .set_control_token(ControlToken::new(TOKEN).unwrap());
    gw.gateway.set_peers(me, vec![me, peer]);
    gw.gateway
        .set_routes(vec![single("c", revision("c-00001", 4, 2))]);
    let key = key("c", "c-00001");
    gw.gateway.set_endpoints(&key, vec![ready("r0", app.addr)]);
    let share = View::new(me, vec![me, peer], 1, std::time::Instant::now()).share(4, "r0");
    assert!((1..4).contains(&share), "{share}");
    tokio::time::sleep(DEFAULT_SETTLE + Duration::from_millis(200)).await;

    // This gateway's own slots serve at once, though the other gateway is
    // gone (asking it fails); one more request waits.
    let held: Vec<_> = (0..=share)
        .map(|_| tokio::spawn(get(gw.addr, "c.ns.localhost", "/hold")))
        .collect();
    let state = gw.gateway.revision(&key).unwrap();
    let in_flight = || {
        app.stats
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    eventually(|| in_flight() == share as usize && state.waiting() == 1).await;
    // Busy, with a request waiting: nothing to lend, its share kept.
    let r0 = vec![replica("r0", app.addr)];
    let (status, _, body) = post(me, Some(TOKEN), &ask(r0.clone(), 4)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grant: CapacityGrant = serde_json::from_str(&body).unwrap();
    assert!(grant.grants.is_empty(), "{grant:?}");
    app.gate.add_permits(share as usize + 1);
    for h in held {
        assert_eq!(h.await.unwrap().0, StatusCode::OK);
    }

    // Idle: every free slot is handed over, and gone from this gateway
    // before the answer: the next request waits, although the replica
    // is idle, until its timeout (2 s).
    let (_, _, body) = post(me, Some(TOKEN), &ask(r0.clone(), 4)).await;
    let grant: CapacityGrant = serde_json::from_str(&body).unwrap();
    assert_eq!(grant.grants.len(), 1, "{grant:?}");
    assert_eq!(grant.grants[0].slots, share);
    let (_, _, body) = post(me, Some(TOKEN), &ask(r0, 4)).await;
    let again: CapacityGrant = serde_json::from_str(&body).unwrap();
    assert!(again.grants.is_empty(), "lent twice: {again:?}");
    // Counted: the slots lent, and the asks to the gone peer that failed.
    let (_, _, text) = get(me, "admin", "/metrics").await;
    let slots = samples(&text, "flint_capacity_slots_total");
    assert_eq!(
        slots.get(r#"{direction="lent"}"#),
        Some(&f64::from(share)),
        "{slots:?}"
    );
    let asks = samples(&text, "flint_capacity_asks_total");
    assert!(
        asks.get(r#"{result="failed"}"#).is_some_and(|n| *n >= 1.0),
        "{asks:?}"
    );
    app.gate.add_permits(1);
    let (status, _, _) = get(gw.addr, "c.ns.localhost", "/hold").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(in_flight(), 0);
    gw.shutdown().await;
}
