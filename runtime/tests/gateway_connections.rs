//! Client connections are bounded in time and number, over real sockets on
//! 127.0.0.1: a deadline on the first bytes (silent sockets and partial
//! HTTP/2 prefaces), a cap on open connections answered with 503, HTTP/2
//! idle and keep-alive timeouts, and TCP keep-alive.
//!
//! The deadline on the first bytes, measured on 2,000 sockets, has a test
//! binary of its own: `gateway_first_bytes.rs`.

mod gateway_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flint_api::Protocol;
use flint_runtime::gateway::{ClientSettings, GatewayConfig};
use gateway_support::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn settings(change: impl FnOnce(&mut ClientSettings)) -> GatewayConfig {
    let mut config = config();
    change(&mut config.clients);
    config
}

/// Whether the gateway closed `stream` (end of stream or reset) within
/// `limit`; bytes it sent first are skipped.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_closed() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(settings(|c| c.max_connections = 8)).await;
    gw.serve_single(
        "hello",
        revision("hello-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(gw.addr).await);
    }
    let mut over = connect(gw.addr).await;
    over.write_all(b"GET / HTTP/1.1\r\nhost: hello.ns.localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut over).await;
    assert!(head.starts_with("http/1.1 503 "), "{head}");
    assert!(head.contains("retry-after: 2\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    let mut body = String::new();
    within(BOUND, over.read_to_string(&mut body)).await;
    assert!(body.contains("limit of 8 open connections"), "{body}");
    // Once connections close, new ones are served again.
    drop(held);
    tokio::time::timeout(BOUND, async {
        loop {
            let (status, _, _) = get(gw.addr, "hello.ns.localhost", "/").await;
            if status == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_http2_connections_are_closed_and_busy_ones_are_not() {
    let idle = Duration::from_millis(400);
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(settings(|c| c.idle_timeout = idle)).await;
    let key = gw.serve_single(
        "hello",
        revision("hello-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(connect(gw.addr).await),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // A request in progress for several idle timeouts keeps its connection.
    let req = Request::get("http://hello.ns.localhost/hold")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let held = tokio::spawn(sender.send_request(req));
    let state = gw.gateway.revision(&key).unwrap();
    eventually(|| state.in_flight("p") == Some(1)).await;
    tokio::time::sleep(idle * 4).await;
    assert!(!conn.is_finished(), "a busy connection was closed");
    app.gate.add_permits(1);
    let resp = within(BOUND, held).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = within(BOUND, resp.into_body().collect()).await.to_bytes();
    assert_eq!(body, "app held");
    // Then, with nothing in progress, it is closed.
    let started = Instant::now();
    within(BOUND, conn).await.unwrap();
    assert!(
        started.elapsed() >= idle / 2,
        "closed after {:?}",
        started.elapsed()
    );
    gw.shutdown().await;
}

/// A raw HTTP/2 client that opens one stream to `/hold` and then neither
/// reads nor answers pings.
async fn silent_http2_stream(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame.
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // HEADERS on stream 1 (END_STREAM | END_HEADERS), HPACK: :method GET,
    // :scheme http, :path /hold, :authority hello.ns.localhost.
    let mut block = vec![0x82, 0x86, 0x44, 5];
    block.extend_from_slice(b"/hold");
    block.extend_from_slice(&[0x41, 18]);
    block.extend_from_slice(b"hello.ns.localhost");
    let len = block.len();
    out.extend_from_slice(&[0, 0, len as u8, 0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    stream.write_all(&out).await.unwrap();
    stream
}

#[tokio::test]
async fn http2_clients_that_stop_answering_pings_are_closed() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(settings(|c| {
        c.http2_keep_alive_interval = Some(Duration::from_millis(300));
        c.http2_keep_alive_timeout = Duration::from_millis(300);
    }))
    .await;
    let key = gw.serve_single(
        "hello",
        revision("hello-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    let mut stream = silent_http2_stream(gw.addr).await;
    let state = gw.gateway.revision(&key).unwrap();
    eventually(|| state.in_flight("p") == Some(1)).await;
    // The stream is in progress, so only the unanswered pings close it.
    assert!(closed_within(&mut stream, BOUND).await, "still open");
    eventually(|| state.in_flight("p") == Some(0)).await;
    app.gate.add_permits(1);
    gw.shutdown().await;
}

#[tokio::test]
async fn http2_keep_alive_is_off_when_unset() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(settings(|c| c.http2_keep_alive_interval = None)).await;
    let key = gw.serve_single(
        "hello",
        revision("hello-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    let mut stream = silent_http2_stream(gw.addr).await;
    let state = gw.gateway.revision(&key).unwrap();
    eventually(|| state.in_flight("p") == Some(1)).await;
    assert!(!closed_within(&mut stream, Duration::from_secs(1)).await);
    app.gate.add_permits(1);
    drop(stream);
    gw.shutdown().await;
}

/// The `tr` (timer) field of this process's socket from `local` to `peer`
/// in /proc/net/tcp: 2 while a keep-alive timer runs.
fn tcp_timer(local: SocketAddr, peer: SocketAddr) -> Option<u8> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => unreachable!("IPv4 only"),
    };
    let (local, peer) = (hex(local), hex(peer));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[1] == local && f[2] == peer).then(|| f[5].split(':').next().unwrap().parse().unwrap())
    })
}

#[tokio::test]
async fn client_sockets_get_tcp_keepalive() {
    let app = app("app", Protocol::Http1).await;
    for (keepalive, timer) in [(Some(Duration::from_secs(60)), 2), (None, 0)] {
        let gw = gateway(settings(|c| c.tcp_keepalive = keepalive)).await;
        gw.serve_single(
            "hello",
            revision("hello-00001", 0, 30),
            vec![ready("p", app.addr)],
        );
        let mut stream = connect(gw.addr).await;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: hello.ns.localhost\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        let gateway_side = tcp_timer(gw.addr, stream.local_addr().unwrap());
        assert_eq!(gateway_side, Some(timer), "keepalive {keepalive:?}");
        drop(stream);
        gw.shutdown().await;
    }
}
