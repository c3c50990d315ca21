//! The proxy hop: safe retries, streamed bodies, upgrades, HTTP/2 to the
//! app, bounded request heads, exact request metrics, the admin endpoints
//! and the HTTP poke sink.

mod gateway_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use flint_api::Protocol;
use flint_api::backend::PokeSink;
use flint_api::poke::ScalePoke;
use flint_runtime::gateway::HttpPokeSink;
use gateway_support::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An address on 127.0.0.1 where nothing listens (bound, then closed).
async fn refused_addr() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn refused_connections_are_retried_on_another_replica() {
    let live = app("live", Protocol::Http1).await;
    let dead = refused_addr().await;
    let gw = gateway(config()).await;
    gw.serve_single(
        "r",
        revision("r-00001", 0, 10),
        vec![ready("dead", dead), ready("live", live.addr)],
    );
    for _ in 0..30 {
        let req = Request::post("/echo")
            .header("host", "r.ns.localhost")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let (status, _, body) = request(gw.addr, req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "payload");
    }
    assert_eq!(live.stats.served.load(Ordering::SeqCst), 30);
    gw.shutdown().await;
}

#[tokio::test]
async fn only_refusing_replicas_give_502() {
    let gw = gateway(config()).await;
    gw.serve_single(
        "d",
        revision("d-00001", 0, 10),
        vec![ready("dead", refused_addr().await)],
    );
    let (status, _, body) = get(gw.addr, "d.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.starts_with("could not connect to any replica of revision d-00001: "),
        "{body}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_waits_for_a_slot_on_a_replica_at_its_limit() {
    let live = app("live", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let rev = gw.serve_single(
        "q",
        revision("q-00001", 1, 10),
        vec![
            ready("dead", refused_addr().await),
            ready("live", live.addr),
        ],
    );
    let addr = gw.addr;
    let held = tokio::spawn(async move { get(addr, "q.ns.localhost", "/hold").await });
    eventually(|| live.stats.in_flight.load(Ordering::SeqCst) == 1).await;
    // The live replica is at its limit of 1: the next request takes the dead
    // replica's slot, is refused, and must wait for the live one.
    let waiting = tokio::spawn(async move { get(addr, "q.ns.localhost", "/").await });
    let state = gw.gateway.revision(&rev).unwrap();
    eventually(|| state.waiting() == 1).await;
    assert_eq!(live.stats.served.load(Ordering::SeqCst), 0);
    live.gate.add_permits(1);
    let (status, _, body) = held.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "live held"));
    let (status, _, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("live GET / "), "{body}");
    assert_eq!(live.stats.max_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(state.waiting(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    gw.serve_single(
        "big",
        revision("big-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    // Far larger than the gateway's 16 KiB per-connection buffer.
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let req = Request::post("/echo")
        .header("host", "big.ns.localhost")
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = within(BOUND, resp.into_body().collect()).await.to_bytes();
    assert_eq!(body.len(), payload.len());
    assert!(body == payload);
    gw.shutdown().await;
}

#[tokio::test]
async fn upgrades_are_tunnelled() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let k = gw.serve_single(
        "ws",
        revision("ws-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nhost: ws.ns.localhost\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    stream.write_all(b"ping over the tunnel").await.unwrap();
    let mut echoed = [0u8; 20];
    within(BOUND, stream.read_exact(&mut echoed)).await;
    assert_eq!(&echoed, b"ping over the tunnel");
    let state = gw.gateway.revision(&k).unwrap();
    assert_eq!(state.in_flight("p"), Some(1), "the tunnel holds its slot");
    drop(stream);
    eventually(|| state.in_flight("p") == Some(0)).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn h2c_apps_get_http2_from_http1_and_http2_clients() {
    let app = app("grpc", Protocol::H2c).await;
    let gw = gateway(config()).await;
    let mut rev = revision("g-00001", 0, 30);
    rev.protocol = Protocol::H2c;
    gw.serve_single("g", rev, vec![ready("p", app.addr)]);
    let (status, _, body) = get(gw.addr, "g.ns.localhost", "/pkg.Svc/Call").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("grpc GET /pkg.Svc/Call "), "{body}");
    assert!(body.ends_with("version=HTTP/2.0"), "{body}");

    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://g.ns.localhost/h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within(BOUND, sender.send_request(req)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"grpc GET /h2 "), "{body:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_request_heads_are_refused_with_431() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    gw.serve_single("h", revision("h-00001", 0, 10), vec![ready("p", app.addr)]);
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let big = "x".repeat(64 * 1024);
    let req = format!("GET / HTTP/1.1\r\nhost: h.ns.localhost\r\nx-big: {big}\r\n\r\n");
    // The gateway may close while we still write: only the answer matters.
    let _ = stream.write_all(req.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(app.stats.served.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_uris_are_refused_with_414() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    gw.serve_single("u", revision("u-00001", 0, 10), vec![ready("p", app.addr)]);
    let limit = flint_runtime::gateway::MAX_URI_BYTES;
    // At the limit it is served; one byte more, under the 16 KiB head
    // buffer, is refused with 414 and a body that says why.
    let at_limit = format!("/?q={}", "x".repeat(limit - 4));
    let (status, _, body) = get(gw.addr, "u.ns.localhost", &at_limit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let over = format!("/?q={}", "x".repeat(limit - 3));
    let (status, headers, body) = get(gw.addr, "u.ns.localhost", &over).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        body,
        format!(
            "request URI of {} bytes is longer than the {limit} bytes allowed\n",
            limit + 1
        )
    );
    assert_eq!(app.stats.served.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn admin_router_exports_exact_request_counts() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    gw.serve_single("m", revision("m-00001", 0, 10), vec![ready("p", app.addr)]);
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let router = gw.gateway.admin_router();
    tokio::spawn(async move { axum::serve(admin, router).await.unwrap() });

    let before = std::time::Instant::now();
    for _ in 0..7 {
        assert_eq!(get(gw.addr, "m.ns.localhost", "/").await.0, StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(
            get(gw.addr, "m.ns.localhost", "/other").await.0,
            StatusCode::OK
        );
    }
    let elapsed = before.elapsed().as_secs_f64();
    let (status, headers, text) = get(admin_addr, "admin", "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let requests = samples(&text, "flint_requests_total");
    let ok = "{code=\"200\",function=\"m\",namespace=\"ns\",revision=\"m-00001\"}";
    assert_eq!(requests[ok], 10.0);
    assert_eq!(requests.len(), 1);
    let labels = "{function=\"m\",namespace=\"ns\",revision=\"m-00001\"}";
    let integral = samples(&text, "flint_request_concurrency_seconds_total")[labels];
    // Requests ran one at a time inside the measured span: the integral is
    // positive and at most that span.
    assert!(
        integral > 0.0 && integral <= elapsed,
        "{integral} vs {elapsed}"
    );
    assert_eq!(samples(&text, "flint_requests_in_flight")[labels], 0.0);
    assert_eq!(
        samples(&text, "flint_request_duration_seconds_count")[labels],
        10.0
    );

    assert_eq!(get(admin_addr, "admin", "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(admin_addr, "admin", "/readyz").await.0, StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test]
async fn readyz_waits_for_the_routing_table() {
    let gw = gateway(config()).await;
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let router = gw.gateway.admin_router();
    tokio::spawn(async move { axum::serve(admin, router).await.unwrap() });
    assert_eq!(
        get(admin_addr, "admin", "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gw.gateway.set_routes(vec![]);
    assert_eq!(get(admin_addr, "admin", "/readyz").await.0, StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test]
async fn http_poke_sink_posts_json_once_while_pending() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(std::sync::Mutex::new(Vec::<(
        String,
        String,
        ScalePoke,
        Option<String>,
    )>::new()));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (r, gate) = (Arc::clone(&received), Arc::clone(&release));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, gate) = (Arc::clone(&r), Arc::clone(&gate));
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (r, gate) = (Arc::clone(&r), Arc::clone(&gate));
                async move {
                    let method = req.method().to_string();
                    let path = req.uri().path().to_owned();
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    r.lock().unwrap().push((
                        method,
                        path,
                        serde_json::from_slice(&body).unwrap(),
                        auth,
                    ));
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    let sink = HttpPokeSink::new(&format!("http://{addr}/")).unwrap();
    assert_eq!(sink.target().to_string(), format!("http://{addr}/v1/poke"));
    let poke = ScalePoke {
        namespace: "ns".into(),
        function: "f".into(),
        revision: "f-00001".into(),
        waiting: 2,
    };
    sink.poke(poke.clone());
    eventually(|| received.lock().unwrap().len() == 1).await;
    // Still pending: a second poke for the same revision is not sent.
    sink.poke(poke.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(received.lock().unwrap().len(), 1);
    release.add_permits(1);
    // Once the gateway has the control token, its pokes carry it.
    sink.present(&flint_api::drain::ControlToken::new("poke-token").unwrap());
    // Once answered, the next cold start pokes again.
    eventually(|| {
        sink.poke(poke.clone());
        received.lock().unwrap().len() == 2
    })
    .await;
    release.add_permits(10);
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got[0],
        ("POST".to_owned(), "/v1/poke".to_owned(), poke.clone(), None)
    );
    assert_eq!(got[1].3.as_deref(), Some("Bearer poke-token"));
    assert!(HttpPokeSink::new("ftp://x").is_err());
    assert!(HttpPokeSink::new("not a url").is_err());
}
