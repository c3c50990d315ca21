//! Draining replicas before a scale-down, over real sockets: only the
//! operator's token may ask; a drained replica leaves rotation at once, the
//! drain answers when its last request finishes, and a release (or the
//! hold running out) puts it back.

mod gateway_support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flint_api::drain::{ControlToken, DRAIN_PATH, DrainRequest, RELEASE_PATH};
use flint_api::function::Protocol;
use gateway_support::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

async fn admin(gw: &Running) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = gw.gateway.admin_router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn drain_request(pods: &[&str], timeout_seconds: u32) -> DrainRequest {
    DrainRequest {
        namespace: "ns".into(),
        function: "d".into(),
        revision: "d-00001".into(),
        pods: pods.iter().map(|p| (*p).to_owned()).collect(),
        timeout_seconds,
    }
}

async fn post(admin: SocketAddr, path: &str, token: Option<&str>, body: &DrainRequest) -> Answer {
    let mut req = Request::post(path)
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

#[tokio::test]
async fn only_the_control_token_may_drain() {
    let gw = gateway(config()).await;
    let admin = admin(&gw).await;
    let req = drain_request(&["p"], 1);

    // No token configured: draining is off, whoever asks.
    let (status, _, body) = post(admin, DRAIN_PATH, Some("anything"), &req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("FLINT_CONTROL_TOKEN"), "{body}");

    gw.gateway
        .set_control_token(ControlToken::new("right-token").unwrap());
    let (status, headers, body) = post(admin, DRAIN_PATH, None, &req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    assert!(body.contains("missing credential"), "{body}");
    let (status, _, body) = post(admin, DRAIN_PATH, Some("wrong-token"), &req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("wrong credential"), "{body}");
    let (status, _, _) = post(admin, RELEASE_PATH, Some("wrong-token"), &req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A revision this gateway never routed has nothing in flight.
    let (status, _, body) = post(admin, DRAIN_PATH, Some("right-token"), &req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"inFlight":0}"#);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_data_port_serves_no_admin_endpoint() {
    // Metrics, health and the control routes live on the admin listener
    // only: on the public port they are function paths like any other, and
    // a Host that names no Function gets 404 whatever the path.
    let gw = gateway(config()).await;
    gw.gateway
        .set_control_token(ControlToken::new("t").unwrap());
    let admin = admin(&gw).await;
    assert_eq!(get(admin, "admin", "/metrics").await.0, StatusCode::OK);
    for path in ["/metrics", "/healthz", "/readyz"] {
        for host in ["admin", &gw.addr.to_string(), "localhost"] {
            let (status, _, body) = get(gw.addr, host, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{host}{path}: {body}");
            assert!(!body.contains("flint_"), "{host}{path}: {body}");
        }
    }
    for path in [DRAIN_PATH, RELEASE_PATH] {
        let (status, _, body) = post(gw.addr, path, Some("t"), &drain_request(&["p"], 1)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_drained_replica_leaves_rotation_and_is_reported_when_its_requests_end() {
    let (one, two) = (
        app("one", Protocol::Http1).await,
        app("two", Protocol::Http1).await,
    );
    let gw = gateway(config()).await;
    gw.gateway
        .set_control_token(ControlToken::new("t").unwrap());
    let admin = admin(&gw).await;
    let key = gw.serve_single(
        "d",
        revision("d-00001", 0, 30),
        vec![ready("pod-one", one.addr), ready("pod-two", two.addr)],
    );
    // A long request on each replica.
    let held = gw.spawn_gets(2, "d.ns.localhost", "/hold");
    eventually(|| {
        one.stats
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
            && two
                .stats
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1
    })
    .await;

    let drain = tokio::spawn(async move {
        post(
            admin,
            DRAIN_PATH,
            Some("t"),
            &drain_request(&["pod-one"], 30),
        )
        .await
    });
    // Out of rotation at once: new requests all go to the other replica.
    let state = gw.gateway.revision(&key).unwrap();
    eventually(|| state.replicas() == 1).await;
    // (One permit for the request already waiting there, three for these.)
    two.gate.add_permits(4);
    for _ in 0..3 {
        assert_eq!(
            get(gw.addr, "d.ns.localhost", "/hold").await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        one.stats.served.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // The drain waits for pod-one's request...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !drain.is_finished(),
        "answered with a request still running"
    );
    // ...and answers once it ends, with nothing left in flight.
    one.gate.add_permits(1);
    let (status, _, body) = within(BOUND, drain).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"inFlight":0}"#);
    for h in held {
        assert_eq!(within(BOUND, h).await.0, StatusCode::OK);
    }

    // Called off: back into rotation.
    let (status, _, _) = post(
        admin,
        RELEASE_PATH,
        Some("t"),
        &drain_request(&["pod-one"], 30),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(state.replicas(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_drain_that_times_out_reports_what_is_left_and_its_hold_lapses() {
    let one = app("one", Protocol::Http1).await;
    let gw = gateway(config()).await;
    gw.gateway
        .set_control_token(ControlToken::new("t").unwrap());
    let admin = admin(&gw).await;
    let endpoints = vec![ready("pod-one", one.addr)];
    let key = gw.serve_single("d", revision("d-00001", 0, 30), endpoints.clone());
    let held = gw.spawn_gets(1, "d.ns.localhost", "/hold");
    eventually(|| {
        one.stats
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    let state = gw.gateway.revision(&key).unwrap();
    // A 1 s drain of a replica whose request does not end.
    let (status, _, body) = post(
        admin,
        DRAIN_PATH,
        Some("t"),
        &drain_request(&["pod-one"], 1),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"inFlight":1}"#);
    assert_eq!(state.replicas(), 0);
    // Endpoint updates do not bring a held replica back...
    gw.gateway.set_endpoints(&key, endpoints.clone());
    assert_eq!(state.replicas(), 0);
    one.gate.add_permits(1);
    for h in held {
        assert_eq!(within(BOUND, h).await.0, StatusCode::OK);
    }
    // ...until its hold runs out.
    let now = std::time::Instant::now();
    state.hold(
        &["pod-one".to_owned()],
        now + Duration::from_millis(100),
        now,
    );
    assert_eq!(state.replicas(), 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    gw.gateway.set_endpoints(&key, endpoints);
    assert_eq!(state.replicas(), 1);
    gw.shutdown().await;
}
